"""The config sections of the stages before the students: data, distillation (with MTT and MetaDD), the
feature extraction."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from .base import Name, Strict, check_arch, listed


class DataConfig(Strict):
    name: str = "fashion_mnist"
    """A name of pipeline.data.register_dataset."""
    root: str | None = None
    """Folder with the files; default: $ELFDD_DATA, then the Debian path."""
    path: str | None = None
    """The .npz file when name == npz."""
    train_subset: int | None = Field(default=None, gt=0)
    """Use a seeded random subset of this many training images (default: all)."""
    test_subset: int | None = Field(default=None, gt=0)
    """Evaluate on a seeded random subset of this many test images (default: all)."""
    zca: bool = False
    """ZCA whitening fitted on the training split, applied to train and test."""
    zca_eps: float = Field(default=0.1, gt=0)
    """Regularisation of the ZCA whitening (added to the eigenvalues)."""

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from ..data import DATASETS

        return DATASETS.check(name)

    @model_validator(mode="after")
    def _npz_needs_path(self) -> DataConfig:
        if self.name == "npz" and not self.path:
            raise ValueError("data.path is required when data.name is npz")
        return self


class MTTConfig(Strict):
    """Trajectory matching: experts from the teacher loop in expert mode, then the unrolled-student matching."""

    experts: int = Field(default=2, ge=1)
    """Expert trajectories to record on the real data."""
    expert_epochs: int = Field(default=6, ge=1)
    """Epochs each expert trains (at least max_start_epoch + expert_steps)."""
    expert_lr: float = Field(default=0.01, gt=0)
    """The experts' SGD learning rate."""
    expert_batch: int = Field(default=256, gt=0)
    """The experts' batch size."""
    expert_subset: int | None = Field(default=None, gt=0)
    """Record the experts on a random subset of this many training images (default: all)."""
    syn_steps: int = Field(default=20, ge=1)
    """N: the unrolled student's steps on synthetic data per iteration."""
    expert_steps: int = Field(default=2, ge=1)
    """M: the expert epochs the N steps must match."""
    max_start_epoch: int = Field(default=4, ge=0)
    """T+: the latest expert epoch a matching may start from."""
    syn_lr_init: float = Field(default=0.01, gt=0)
    """Initial value of the learned student learning rate."""
    lr_lr: float = Field(default=1e-5, gt=0)
    """Learning rate of the learned student learning rate."""
    batch_syn: int | None = Field(default=None, gt=0)
    """Synthetic images per unrolled step (default: the whole set)."""

    @model_validator(mode="after")
    def _steps_fit(self) -> MTTConfig:
        if self.expert_steps > self.expert_epochs:
            raise ValueError(
                f"distill.mtt.expert_steps {self.expert_steps} exceeds expert_epochs {self.expert_epochs}"
            )
        return self


class MetaDDConfig(Strict):
    """The MetaDD regulariser (architecture-invariant loss + Grad-CAM variance over frozen auxiliaries)."""

    enabled: bool = False
    """Add the MetaDD regulariser to the distillation loss."""
    archs: list[str] = ["resnet18", "vgg11", "alexnet"]
    """The frozen auxiliary architectures whose Grad-CAMs and outputs the loss compares."""
    aux_epochs: int = Field(default=1, ge=1)
    """Epochs each auxiliary trains on real images before it is frozen."""
    aux_subset: int = Field(default=2000, gt=0)
    """Real training images the auxiliaries train on."""
    weight_ai: float = Field(default=1.0, ge=0)
    """Weight of the architecture-invariant loss (CE plus KL to the backbone)."""
    weight_var: float = Field(default=1.0, ge=0)
    """Weight of the Grad-CAM variance across the auxiliaries."""

    @field_validator("archs")
    @classmethod
    def _archs(cls, archs: list[str]) -> list[str]:
        if not archs:
            raise ValueError("distill.metadd.archs must name at least one architecture")
        return [check_arch(a) for a in archs]


class SourceConfig(Strict):
    """A synthetic set made elsewhere (``distill.method: file``; pipeline/formats)."""

    paths: list[str] = []
    """Its files (or the folder holding them)."""
    format: str = "auto"
    """A name of pipeline.formats.register_format (mtt, dc, npz, png), or auto."""
    space: Literal["auto", "pixel", "normalized", "zca"] = "auto"
    """Auto: the format's convention."""
    zca: str | None = None
    """Space zca: the statistics file (zca.pt) the images were whitened with."""
    experiment: int = Field(default=0, ge=0)
    """Dc: which experiment of the result file."""

    @field_validator("format")
    @classmethod
    def _registered(cls, name: str) -> str:
        from ..formats import FORMATS

        return FORMATS.check(name, "auto")


class DistillConfig(Strict):
    method: str = "dm"
    """A name of pipeline.distill.register_method: dm, dsa (gradient matching), mtt, random (the class-balanced
    random real subset: the yardstick), file.
    """
    arch: str = "convnet"
    """The distillation network (a registered architecture)."""
    arch_kwargs: dict[str, Any] = {}
    """Keyword arguments of the distillation network (e.g. {width: 256})."""
    ipc: int = Field(default=10, gt=0)
    """Synthetic images per class."""
    iterations: int = Field(default=200, ge=0)
    """Distillation iterations (image updates)."""
    lr_img: float | None = Field(default=None, gt=0)
    """Learning rate of the synthetic images (default: the method's: DM 1, DSA 0.1, MTT 100)."""
    momentum: float = Field(default=0.5, ge=0, lt=1)
    """Momentum of the images' SGD."""
    batch_real: int = Field(default=64, gt=0)
    """Real images per class per iteration."""
    init: Literal["real", "noise"] = "real"
    """Start the synthetic images from random real images or from noise."""
    dsa: bool = True
    """Differentiable Siamese augmentation of real and synthetic batches alike."""
    lr_net: float = Field(default=0.01, gt=0)
    """DSA (gradient matching): the network's learning rate between image updates."""
    outer_loop: int | None = Field(default=None, ge=1)
    """DSA: image updates per iteration (default by IPC, as the reference)."""
    inner_loop: int | None = Field(default=None, ge=0)
    """DSA: network steps between image updates (default by IPC, as the reference)."""
    distance: Literal["ours", "mse", "cos"] = "ours"
    """DSA: the gradient distance (ours: the reference's layer-wise one, mse, cos)."""
    mtt: MTTConfig = MTTConfig()
    """Trajectory matching (distill.method mtt)."""
    metadd: MetaDDConfig = MetaDDConfig()
    """The MetaDD regulariser (any method)."""
    resume_every: int = Field(default=10, ge=1)
    """Iterations between resume points (no effect on the result)."""
    source: SourceConfig = SourceConfig()
    """Method file: the set to import."""

    _arch = field_validator("arch")(check_arch)

    @model_validator(mode="before")
    @classmethod
    def _path_shorthand(cls, values: Any) -> Any:
        """``distill.path: FILE`` (or a list) is ``distill.source.paths``."""
        if not isinstance(values, dict) or "path" not in values:
            return values
        values = dict(values)
        source = dict(values.get("source") or {})
        if source.get("paths"):
            raise ValueError("give the set's files once: distill.path or distill.source.paths, not both")
        source["paths"] = listed(values.pop("path"))
        return {**values, "source": source}

    @model_validator(mode="after")
    def _source_given(self) -> DistillConfig:
        if self.method == "file" and not self.source.paths:
            raise ValueError(
                "distill.method file needs distill.source.paths (the files of the set to import)"
            )
        return self

    @field_validator("method")
    @classmethod
    def _registered(cls, method: str) -> str:
        from ..distill import METHODS

        return METHODS.check(method)

    @property
    def image_lr(self) -> float:
        from ..distill import METHODS

        default = METHODS[self.method].lr_img
        return self.lr_img if self.lr_img is not None else float(default or 0)


class ExtractConfig(Strict):
    teacher_epochs: list[int] | None = None
    """Teacher checkpoint epochs extracted (default: every checkpointed epoch)."""
    layers: list[Name] | None = None
    """Teacher layers extracted (default: the teacher's default split point)."""
    dtype: Literal["float16", "float32"] = "float16"
    """Stored precision of the features."""
    clevel: int = Field(default=5, ge=1, le=9)
    """Compression level of the lossless codec."""
    bitround_keepbits: int | None = Field(default=None, ge=1)
    """Lossy: keep this many mantissa bits."""
    quantize_digits: int | None = Field(default=None, ge=0, le=10)
    """Lossy: keep this many decimal digits."""
    views: int = Field(default=1, ge=1, le=1024)
    """Stored views per image (view 0 clean); more than 1 stores augmented views for view policy replay."""
    view_seed: int = 0
    """Seed of the stored views' augmentations."""
    view_strategy: str = "color_crop_cutout_flip_scale_rotate"
    """The DSA operations the stored views draw from."""
    view_ops: Literal["per_image", "per_view"] = "per_image"
    """Per_image: every image of every view draws its own DSA op and parameters; per_view: one op for all images
    of a view (as one DSA call on a batch), per-image parameters.
    """
    batch_size: int = Field(default=256, gt=0)
    """At most this many images per forward pass; on the CPU at most the machine's measured inference batch
    (pipeline/inference.py).
    """

    @field_validator("view_strategy")
    @classmethod
    def _strategy(cls, strategy: str) -> str:
        from ..augment import parse_strategy

        parse_strategy(strategy)
        return strategy

    @model_validator(mode="after")
    def _codec(self) -> ExtractConfig:
        self.codec.check(self.dtype)
        return self

    @property
    def codec(self):
        from ...store.codecs import CodecSpec

        return CodecSpec(self.clevel, self.bitround_keepbits, self.quantize_digits)
