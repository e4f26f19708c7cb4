"""The config section of one teacher (``teacher`` or each entry of ``teachers``): trained on the run's data or
imported (pipeline/teachers/imported.py)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import Name, Strict, check_arch, listed


class TeacherConfig(Strict):
    id: Name = "teacher"
    """The teacher's name in the store and the pairing (a-z, 0-9, _)."""
    arch: str = "convnet"
    """The teacher architecture (a registered name)."""
    arch_kwargs: dict[str, Any] = {}
    """Its keyword arguments, e.g. {widths: [64, 128, 512]}."""
    epochs: int = Field(default=4, ge=1)
    """Training epochs on the real data (lr x0.1 at half)."""
    checkpoint_epochs: list[int] = [2, 4]
    """Epochs whose weights are kept and extracted (0: the initial weights)."""
    train_subset: int | None = Field(default=None, gt=0)
    """Train on a random subset of this many images (default: data.train_subset)."""
    lr: float = Field(default=0.01, gt=0)
    """The teacher's SGD learning rate."""
    momentum: float = Field(default=0.9, ge=0, lt=1)
    """The teacher's SGD momentum."""
    weight_decay: float = Field(default=5e-4, ge=0)
    """The teacher's weight decay."""
    batch_size: int = Field(default=256, gt=0)
    """The teacher's batch size."""
    dsa: bool = True
    """DSA on the teacher's batches."""
    source: Literal["train", "checkpoint", "mtt_buffer"] = "train"
    """Train: on the run's data; checkpoint: one state_dict file per checkpoint_epochs entry (default epochs
    1..len(paths)); mtt_buffer: an MTT expert buffer (paths: the one replay_buffer_N.pt), checkpoint_epochs
    are indices into its trajectory number ``trajectory`` (0: the initial weights). See
    pipeline/teachers/imported.py.
    """
    paths: list[str] = []
    """An imported teacher's files: a state_dict per checkpoint epoch, or the one MTT buffer."""
    trajectory: int = Field(default=0, ge=0)
    """Mtt_buffer: which trajectory of the buffer."""

    _arch = field_validator("arch")(check_arch)
    _paths = field_validator("paths", mode="before")(listed)

    @model_validator(mode="before")
    @classmethod
    def _imported_epochs(cls, values: Any) -> Any:
        """An imported checkpoint file per epoch 1..n unless checkpoint_epochs says otherwise; ``epochs`` (which
        nothing trains) defaults to the last of them."""
        if not isinstance(values, dict) or values.get("source") not in ("checkpoint", "mtt_buffer"):
            return values
        values = dict(values)
        paths = listed(values.get("paths")) or []
        if values["source"] == "checkpoint" and "checkpoint_epochs" not in values:
            values["checkpoint_epochs"] = list(range(1, len(paths) + 1))
        epochs = values.get("checkpoint_epochs", TeacherConfig.model_fields["checkpoint_epochs"].default)
        if "epochs" not in values and epochs and all(isinstance(e, int) for e in epochs):
            values["epochs"] = max(1, *epochs)
        return values

    @model_validator(mode="after")
    def _source_paths(self) -> TeacherConfig:
        if self.source == "train" and self.paths:
            raise ValueError(
                "teacher.paths is for an imported teacher: set teacher.source checkpoint or mtt_buffer"
            )
        if self.source == "checkpoint" and len(self.paths) != len(self.checkpoint_epochs):
            raise ValueError(
                f"teacher.source checkpoint: {len(self.paths)} files in teacher.paths for "
                f"{len(self.checkpoint_epochs)} teacher.checkpoint_epochs {self.checkpoint_epochs}"
            )
        if self.source == "mtt_buffer" and len(self.paths) != 1:
            raise ValueError(
                "teacher.source mtt_buffer: teacher.paths names the one buffer file (replay_buffer_N.pt)"
            )
        return self

    @model_validator(mode="after")
    def _epochs_in_range(self) -> TeacherConfig:
        top = self.epochs if self.source == "train" else None  # an imported teacher's range is its files'
        bad = [e for e in self.checkpoint_epochs if e < 0 or (top is not None and e > top)]
        if bad or not self.checkpoint_epochs:
            within = f"within 0..{top}" if top is not None else "at least 0"
            raise ValueError(
                f"teacher.checkpoint_epochs must be non-empty and {within}, got {self.checkpoint_epochs}"
            )
        return self
