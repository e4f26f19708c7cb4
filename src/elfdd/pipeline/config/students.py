"""The ``students`` section: the student grid (architectures, loss modes, the feature axes, seeds) and how each cell
trains."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import CompileBackend, Lambda, LossMode, Name, Strict, ViewPolicy, check_arch, listed
from .protocols import Protocol, apply_protocol


class FullDataConfig(Strict):
    """The full-data reference of every student architecture (DD-Ranking's full-data accuracy, for its HLR and LRS):
    each trained once on the whole training set with the teachers' recipe (SGD, momentum 0.9, weight decay 5e-4,
    lr x0.1 at half), kept in ``dir`` under a key of the data and this recipe, so that runs pointing at one folder
    train each architecture once."""

    epochs: int = Field(default=10, ge=1)
    """Epochs of each full-data training."""
    lr: float = Field(default=0.01, gt=0)
    """Its SGD learning rate (x0.1 at half)."""
    batch_size: int = Field(default=256, gt=0)
    """Its batch size."""
    dsa: bool = True
    """DSA on its batches."""
    dir: str | None = None
    """Where the references are kept, shareable by runs (default: DIR/full_data)."""


class StudentsConfig(Strict):
    protocol: Protocol = "elfdd"
    """How the public code bases train a student on a set (config/protocols.py): its epochs, lr, batch,
    optimiser, augmentation and seeds, each overridden by a key given explicitly.
    """
    archs: list[str] = ["convnet", "resnet18", "vgg11", "alexnet", "mlp"]
    """The student architectures (registered names)."""
    arch_kwargs: dict[str, dict[str, Any]] = {}
    """Keyword arguments per student architecture."""
    loss_modes: list[LossMode] = ["task", "front_rear_task"]
    """Loss modes of the grid: task (baseline), front_rear_task (ELF), front_task, rear_task, front_rear, logit,
    logit_task (kd), front_rear_logit_task (elf_kd).
    """
    # Grid axes: each takes one value or a list; the first value is the reference the analyses vary one axis from.
    feature_losses: list[str] = ["ce"]
    """Feature losses of the front term (names of pipeline.losses.register_feature_loss: ce, kl, l2, l1, cosine);
    a list is a grid axis."""
    lambda_front: list[Lambda] = [1.0]
    """Weight of the front (feature-matching) loss; a list is a grid axis."""
    lambda_rear: list[Lambda] = [1.0]
    """Weight of the rear (classify the teacher feature) loss; a list is a grid axis."""
    teacher_epochs: list[int] | None = None
    """Teacher epochs whose features the students read; a list is a grid axis (default: the last extracted)."""
    layers: list[Name] | None = None
    """Teacher layers whose features the students read; a list is a grid axis (default: the first extracted)."""
    epochs: int = Field(default=300, ge=1)
    """Training epochs of every student (lr x0.1 at half)."""
    lr: float = Field(default=0.01, gt=0)
    """The students' SGD learning rate."""
    arch_lr: dict[str, Annotated[float, Field(gt=0)]] = {}
    """A learning rate per architecture where ``lr`` does not suit it (e.g. {alexnet: 0.005})."""
    teacher: dict[str, Name] = {}
    """The teacher (by id) each architecture learns from; the others are paired by shape
    (pipeline/students/pairing.py).
    """
    split: dict[str, Name] = {}
    """The split point per architecture where the pairing rule's does not suit it."""
    rear_path: Literal["match_front", "linear"] = "match_front"
    """What the rear loss feeds the student's rear: match_front ends the teacher->student adapter in a ReLU where
    the student's own front ends in one (its rear never sees negative input); linear: the adapter alone.
    """
    vector_front_scale: float = Field(default=0.1, gt=0)
    """The rule for students without a spatial stage (the MLP: its front ends in a vector, which a linear adapter
    maps onto the teacher's C x H x W map): their front loss is weighted lambda_front x this (the study's
    vector_front_1 arm measures the alternative: docs/results.md).
    """
    rear_bn_stats: Literal["front", "all"] = "front"
    """Which passes update a batch-norm student's running statistics (those it is tested with): front (its own
    images only; the rear pass normalises with its batch's statistics and leaves the running ones alone) or
    all (also the rear loss's pass on teacher features, as the reference; the study's rear_bn_all arm:
    docs/results.md).
    """
    momentum: float = Field(default=0.9, ge=0, lt=1)
    """The students' SGD momentum."""
    weight_decay: float = Field(default=5e-4, ge=0)
    """The students' weight decay."""
    batch_size: int = Field(default=256, gt=0)
    """The students' batch size."""
    grad_clip: float | None = Field(default=None, gt=0)
    """Clip the L2 norm of the whole gradient (student and adapters) to this value each step; null: no clipping.
    """
    feature_temperature: float = Field(default=1.0, gt=0)
    """T of feature loss kl."""
    logit_temperature: float = Field(default=4.0, gt=0)
    """The soft-label term (loss modes logit, logit_task, front_rear_logit_task): its T and weight."""
    lambda_logit: float = Field(default=1.0, ge=0)
    """Weight of the soft-label term."""
    on_diverge: Literal["record", "fail"] = "record"
    """A cell whose loss becomes NaN/Inf: record it as diverged and go on (exit 3 once the report is written), or
    fail the stage at once (exit 2).
    """
    seeds: list[int] = [0, 1]
    """Seeds of every cell (one evaluation each)."""
    dsa: bool = True
    """DSA on the students' batches."""
    view_policies: list[ViewPolicy] = ["clean"]
    """Replay needs a store with extract.views > 1."""
    max_views: int | None = Field(default=None, ge=1)
    """Replay draws among the store's first max_views views (view 0 is the clean image); null: all of them."""
    batching: Literal["auto"] | bool = "auto"
    """Train cells of one architecture that differ only in seed, lambda, teacher epoch or view policy as one
    batched model (pipeline/students/batched.py): auto where bench/perf.py measured it faster
    (BATCHED_BY_DEFAULT), true for every architecture without batch norm or dropout, false for one cell at a
    time. max_group caps the cells per model.
    """
    max_group: int = Field(default=16, ge=1)
    """At most this many cells in one batched model."""
    compile: CompileBackend | dict[str, CompileBackend] | None = None
    """torch.compile a cell's step (the student's and adapters' forward and the loss terms; the backward follows)
    with this backend: inductor (generated kernels; compiling takes tens of seconds, cached across processes) or
    aot_eager (traced, no code generation: checks the path); a mapping (e.g. {convnet: inductor}) compiles only
    those architectures; null: eager. Cells trained alone only (a batched group stays eager); part of the key of a
    compiled cell. bench/perf.py --compile-cells measures whole cells."""
    loader_workers: int = Field(default=0, ge=0)
    """DataLoader worker processes reading the store."""
    cache_mb: int = Field(default=256, ge=1)
    """Decoded store chunks kept per reader."""
    store: str | None = None
    """An existing store to train from; default: DIR/store.zarr."""
    lr_from_synthetic: bool = False
    """Train with the lr learned by MTT (saved with the synthetic set)."""
    yardstick: Literal["random"] | None = None
    """The yardstick (DD-Ranking's IOR): random trains the same grid on a class-balanced random real subset of
    the set's IPC (its own run in DIR/yardstick/, from this run's teacher checkpoints); the report pairs the
    two.
    """
    full_data: FullDataConfig | None = None
    """HLR and LRS need each student's full-data accuracy (costly: opt-in)."""

    @model_validator(mode="before")
    @classmethod
    def _protocol(cls, raw: Any) -> Any:
        return apply_protocol(raw) if isinstance(raw, dict) else raw

    @field_validator("archs")
    @classmethod
    def _archs(cls, archs: list[str]) -> list[str]:
        if not archs:
            raise ValueError("students.archs must name at least one architecture")
        return [check_arch(a) for a in archs]

    @field_validator("feature_losses")
    @classmethod
    def _feature_losses(cls, names: list[str]) -> list[str]:
        from ..losses import FEATURE_LOSSES

        return [FEATURE_LOSSES.check(n) for n in names]

    @field_validator("arch_lr", "teacher", "split", "compile")
    @classmethod
    def _per_arch(cls, per_arch: Any) -> Any:
        if not isinstance(per_arch, dict):
            return per_arch
        for arch in per_arch:
            check_arch(arch)
        return per_arch

    def lr_for(self, arch: str) -> float:
        """The learning rate a student of ``arch`` trains with."""
        return self.arch_lr.get(arch, self.lr)

    def compile_for(self, arch: str) -> CompileBackend | None:
        """The torch.compile backend of a cell of ``arch`` trained alone; None: eager."""
        return self.compile.get(arch) if isinstance(self.compile, dict) else self.compile

    _as_list = field_validator(
        "feature_losses", "lambda_front", "lambda_rear", "teacher_epochs", "layers", "seeds", mode="before"
    )(listed)

    @field_validator("seeds", "loss_modes", "view_policies", "feature_losses", "lambda_front", "lambda_rear")
    @classmethod
    def _non_empty(cls, value: list) -> list:
        if not value:
            raise ValueError("must not be empty")
        return value
