"""Typed, validated run configuration (one pydantic model per stage), loaded from YAML plus ``--set`` overrides."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from ..core.errors import BadInput

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$", max_length=64)]
LossMode = Literal["task", "front_rear_task", "front_task", "rear_task", "front_rear"]
# clean: the feature of the un-augmented image (the reference); replay: the stored feature of exactly the augmented
# view the student sees; online: the teacher run on exactly the augmented batch every step (no cache).
ViewPolicy = Literal["clean", "replay", "online"]
Lambda = Annotated[float, Field(ge=0)]


def _listed(value: Any) -> Any:
    """A grid axis given as one value means a one-value list (``feature_loss: ce`` == ``feature_loss: [ce]``)."""
    return value if value is None or isinstance(value, list) else [value]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_arch(name: str) -> str:
    from ..models import list_models

    if name not in list_models():
        raise ValueError(f"unknown architecture {name!r}; registered: {', '.join(list_models())}")
    return name


def _teacher_splits(teacher: TeacherConfig) -> tuple[tuple[str, ...], str]:
    from ..models import split_points

    try:
        return split_points(teacher.arch, **teacher.arch_kwargs)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"teacher.arch_kwargs: {exc}") from None


class DataConfig(Strict):
    name: str = "fashion_mnist"  # a name of pipeline.data.register_dataset
    root: str | None = None  # folder with the files; default: $ELFDD_DATA, then the Debian path
    path: str | None = None  # the .npz file when name == npz
    train_subset: int | None = Field(default=None, gt=0)
    test_subset: int | None = Field(default=None, gt=0)
    zca: bool = False  # ZCA whitening fitted on the training split, applied to train and test
    zca_eps: float = Field(default=0.1, gt=0)

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        from .data import list_datasets

        if name not in list_datasets():
            raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(list_datasets())}")
        return name

    @model_validator(mode="after")
    def _npz_needs_path(self) -> DataConfig:
        if self.name == "npz" and not self.path:
            raise ValueError("data.path is required when data.name is npz")
        return self


class MTTConfig(Strict):
    """Trajectory matching: experts from the teacher loop in expert mode, then the unrolled-student matching."""

    experts: int = Field(default=2, ge=1)
    expert_epochs: int = Field(default=6, ge=1)
    expert_lr: float = Field(default=0.01, gt=0)
    expert_batch: int = Field(default=256, gt=0)
    expert_subset: int | None = Field(default=None, gt=0)
    syn_steps: int = Field(default=20, ge=1)  # N: unrolled student steps on synthetic data
    expert_steps: int = Field(default=2, ge=1)  # M: expert epochs the N steps must cover
    max_start_epoch: int = Field(default=4, ge=0)  # T+
    syn_lr_init: float = Field(default=0.01, gt=0)
    lr_lr: float = Field(default=1e-5, gt=0)
    batch_syn: int | None = Field(default=None, gt=0)  # default: the whole synthetic set per step

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
    archs: list[str] = ["resnet18", "vgg11", "alexnet"]
    aux_epochs: int = Field(default=1, ge=1)
    aux_subset: int = Field(default=2000, gt=0)
    weight_ai: float = Field(default=1.0, ge=0)
    weight_var: float = Field(default=1.0, ge=0)

    @field_validator("archs")
    @classmethod
    def _archs(cls, archs: list[str]) -> list[str]:
        if not archs:
            raise ValueError("distill.metadd.archs must name at least one architecture")
        return [_check_arch(a) for a in archs]


class DistillConfig(Strict):
    method: str = "dm"  # a name of pipeline.distill.register_method: dm, dsa (gradient matching), mtt
    arch: str = "convnet"
    arch_kwargs: dict[str, Any] = {}
    ipc: int = Field(default=10, gt=0)
    iterations: int = Field(default=200, ge=0)
    lr_img: float | None = Field(default=None, gt=0)  # default: the method's (DM 1, DSA 0.1, MTT 100)
    momentum: float = Field(default=0.5, ge=0, lt=1)
    batch_real: int = Field(default=64, gt=0)
    init: Literal["real", "noise"] = "real"
    dsa: bool = True
    # DSA (gradient matching)
    lr_net: float = Field(default=0.01, gt=0)
    outer_loop: int | None = Field(default=None, ge=1)  # default by IPC, as the reference
    inner_loop: int | None = Field(default=None, ge=0)
    distance: Literal["ours", "mse", "cos"] = "ours"
    mtt: MTTConfig = MTTConfig()
    metadd: MetaDDConfig = MetaDDConfig()
    resume_every: int = Field(default=10, ge=1)  # iterations between resume points (no effect on the result)

    _arch = field_validator("arch")(_check_arch)

    @field_validator("method")
    @classmethod
    def _registered(cls, method: str) -> str:
        from .distill import list_methods

        if method not in list_methods():
            raise ValueError(
                f"unknown distillation method {method!r}; registered: {', '.join(list_methods())}"
            )
        return method

    @property
    def image_lr(self) -> float:
        from .distill import METHODS

        return self.lr_img if self.lr_img is not None else METHODS[self.method].lr_img


class TeacherConfig(Strict):
    id: Name = "teacher"
    arch: str = "convnet"
    arch_kwargs: dict[str, Any] = {}
    epochs: int = Field(default=4, ge=1)
    checkpoint_epochs: list[int] = [2, 4]
    train_subset: int | None = Field(default=None, gt=0)  # defaults to data.train_subset
    lr: float = Field(default=0.01, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=5e-4, ge=0)
    batch_size: int = Field(default=256, gt=0)
    dsa: bool = True

    _arch = field_validator("arch")(_check_arch)

    @model_validator(mode="after")
    def _epochs_in_range(self) -> TeacherConfig:
        bad = [e for e in self.checkpoint_epochs if not 0 <= e <= self.epochs]
        if bad or not self.checkpoint_epochs:
            raise ValueError(
                f"teacher.checkpoint_epochs must be non-empty and within 0..{self.epochs}, got {self.checkpoint_epochs}"
            )
        return self


class ExtractConfig(Strict):
    teacher_epochs: list[int] | None = None  # default: every checkpointed epoch
    layers: list[Name] | None = None  # default: the teacher's default split point
    dtype: Literal["float16", "float32"] = "float16"
    clevel: int = Field(default=5, ge=1, le=9)
    bitround_keepbits: int | None = Field(default=None, ge=1)  # lossy: keep this many mantissa bits
    quantize_digits: int | None = Field(default=None, ge=0, le=10)  # lossy: keep this many decimal digits
    views: int = Field(default=1, ge=1, le=1024)  # V; > 1 stores augmented views for view_policy replay
    view_seed: int = 0
    view_strategy: str = "color_crop_cutout_flip_scale_rotate"
    # per_image: every image of every view draws its own DSA op and parameters; per_view: one op for all images of
    # a view (as one DSA call on a batch), per-image parameters.
    view_ops: Literal["per_image", "per_view"] = "per_image"
    # At most this many images per forward pass; on the CPU at most 16 (training.inference_batch, measured).
    batch_size: int = Field(default=256, gt=0)

    @field_validator("view_strategy")
    @classmethod
    def _strategy(cls, strategy: str) -> str:
        from .augment import parse_strategy

        parse_strategy(strategy)
        return strategy

    @model_validator(mode="after")
    def _codec(self) -> ExtractConfig:
        self.codec.check(self.dtype)
        return self

    @property
    def codec(self):
        from ..store.codecs import CodecSpec

        return CodecSpec(self.clevel, self.bitround_keepbits, self.quantize_digits)


class StudentsConfig(Strict):
    archs: list[str] = ["convnet", "resnet18", "vgg11", "alexnet", "mlp"]
    arch_kwargs: dict[str, dict[str, Any]] = {}
    modes: list[LossMode] = ["task", "front_rear_task"]
    # Grid axes: each takes one value or a list; the first value is the reference the analyses vary one axis from.
    feature_loss: list[str] = ["ce"]  # names of pipeline.losses.register_feature_loss
    lambda_front: list[Lambda] = [1.0]
    lambda_rear: list[Lambda] = [1.0]
    teacher_epoch: list[int] | None = None  # default: the last extracted epoch
    layer: list[Name] | None = None  # default: the first extracted layer
    epochs: int = Field(default=300, ge=1)
    lr: float = Field(default=0.01, gt=0)
    # A learning rate per architecture where ``lr`` does not suit it (e.g. {alexnet: 0.005}).
    arch_lr: dict[str, Annotated[float, Field(gt=0)]] = {}
    # The teacher (by id) each architecture learns from; the others are paired by shape (pipeline/pairing.py).
    teacher: dict[str, Name] = {}
    split: dict[str, Name] = {}  # the split point per architecture where the pairing rule's does not suit it
    # What the rear loss feeds the student's rear: match_front ends the teacher->student adapter in a ReLU where the
    # student's own front ends in one (its rear never sees negative input); linear: the adapter alone (the old path).
    rear_path: Literal["match_front", "linear"] = "match_front"
    momentum: float = Field(default=0.9, ge=0, lt=1)
    weight_decay: float = Field(default=5e-4, ge=0)
    batch_size: int = Field(default=256, gt=0)
    # Clip the L2 norm of the whole gradient (student and adapters) to this value each step; null: no clipping.
    grad_clip: float | None = Field(default=None, gt=0)
    feature_temperature: float = Field(default=1.0, gt=0)  # T of feature_loss kl
    # A cell whose loss becomes NaN/Inf: record it as diverged and go on (exit 3 once the report is written), or
    # fail the stage at once (exit 2).
    on_diverge: Literal["record", "fail"] = "record"
    seeds: list[int] = [0, 1]
    dsa: bool = True
    view_policies: list[ViewPolicy] = ["clean"]  # replay needs a store with extract.views > 1
    # Replay draws among the store's first max_views views (view 0 is the clean image); null: all of them.
    max_views: int | None = Field(default=None, ge=1)
    loader_workers: int = Field(default=0, ge=0)  # DataLoader worker processes reading the store
    cache_mb: int = Field(default=256, ge=1)  # decoded store chunks kept per reader
    store: str | None = None  # an existing store to train from; default: DIR/store.zarr
    lr_from_synthetic: bool = False  # train with the lr learned by MTT (saved with the synthetic set)

    @field_validator("archs")
    @classmethod
    def _archs(cls, archs: list[str]) -> list[str]:
        if not archs:
            raise ValueError("students.archs must name at least one architecture")
        return [_check_arch(a) for a in archs]

    @field_validator("feature_loss")
    @classmethod
    def _feature_losses(cls, names: list[str]) -> list[str]:
        from .losses import list_feature_losses

        unknown = [n for n in names if n not in list_feature_losses()]
        if unknown:
            raise ValueError(
                f"unknown feature loss {unknown[0]!r}; registered: {', '.join(list_feature_losses())}"
            )
        return names

    @field_validator("arch_lr", "teacher", "split")
    @classmethod
    def _per_arch(cls, per_arch: dict[str, Any]) -> dict[str, Any]:
        for arch in per_arch:
            _check_arch(arch)
        return per_arch

    def lr_for(self, arch: str) -> float:
        """The learning rate a student of ``arch`` trains with."""
        return self.arch_lr.get(arch, self.lr)

    _as_list = field_validator(
        "feature_loss", "lambda_front", "lambda_rear", "teacher_epoch", "layer", "seeds", mode="before"
    )(_listed)

    @field_validator("seeds", "modes", "view_policies", "feature_loss", "lambda_front", "lambda_rear")
    @classmethod
    def _non_empty(cls, value: list) -> list:
        if not value:
            raise ValueError("must not be empty")
        return value


class RunConfig(Strict):
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where the hardware has it
    threads: int = Field(default=0, ge=0)  # 0: leave torch's default (each local worker: cores // workers)
    # Student cells trained at once in local worker processes; 0: one per core (flows.runner.LocalPool). 1 by
    # default: on the 2-core CPU the pool was slower (docs/benchmarks.md).
    workers: int = Field(default=1, ge=0)
    data: DataConfig = DataConfig()
    distill: DistillConfig = DistillConfig()
    # One teacher (``teacher``) or several (``teachers``, e.g. a 128- and a 512-wide ConvNet): all are trained,
    # checkpointed and extracted into the same store; each student is paired with one (pipeline/pairing.py).
    teacher: TeacherConfig | None = None
    teachers: list[TeacherConfig] | None = None
    extract: ExtractConfig = ExtractConfig()
    students: StudentsConfig = StudentsConfig()

    @model_validator(mode="before")
    @classmethod
    def _one_teacher_key(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        has_one, has_many = raw.get("teacher") is not None, raw.get("teachers") is not None
        if has_one and has_many:
            raise ValueError("set either teacher (one teacher) or teachers (a list), not both")
        return raw if has_one or has_many else {**raw, "teacher": {}}

    @model_validator(mode="after")
    def _cross_stage(self) -> RunConfig:
        pool = self.teacher_pool
        if not pool:
            raise ValueError("teachers must name at least one teacher")
        ids = [t.id for t in pool]
        if len(set(ids)) != len(ids):
            raise ValueError(f"teachers: ids must be unique, got {ids}")
        unknown = sorted(set(self.students.teacher.values()) - set(ids))
        if unknown:
            raise ValueError(f"students.teacher names teachers {unknown} that are not configured: {ids}")
        for teacher in pool:
            self._check_teacher(teacher)
        if "replay" in self.students.view_policies and self.extract.views < 2 and not self.students.store:
            raise ValueError(
                "students.view_policies has replay but extract.views is 1; set extract.views >= 2"
            )
        return self

    def _check_teacher(self, teacher: TeacherConfig) -> None:
        checkpointed = set(teacher.checkpoint_epochs)
        epochs = self.extract_epochs_of(teacher)
        missing = sorted(set(epochs) - checkpointed)
        if missing:
            raise ValueError(
                f"extract.teacher_epochs {missing} are not in teacher {teacher.id}'s checkpoint_epochs "
                f"{sorted(checkpointed)}"
            )
        points, _ = _teacher_splits(teacher)
        layers = self.extract_layers_of(teacher)
        unknown = sorted(set(layers) - set(points))
        if unknown:
            raise ValueError(
                f"extract.layers {unknown} are not split points of teacher {teacher.id} ({teacher.arch}): "
                f"{list(points)}"
            )
        not_extracted = sorted(set(self.students.teacher_epoch or []) - set(epochs))
        if not_extracted and not self.students.store:
            raise ValueError(
                f"students.teacher_epoch {not_extracted} not extracted for teacher {teacher.id} "
                f"(extract.teacher_epochs: {epochs})"
            )
        not_extracted = sorted(set(self.students.layer or []) - set(layers))
        if not_extracted and not self.students.store:
            raise ValueError(f"students.layer {not_extracted} not extracted (extract.layers: {layers})")

    # Resolved views of the defaults, so every stage agrees on them.
    @property
    def teacher_pool(self) -> list[TeacherConfig]:
        """Every configured teacher, in config order (the first is the primary one)."""
        return list(self.teachers) if self.teachers is not None else [self.teacher or TeacherConfig()]

    @property
    def primary_teacher(self) -> TeacherConfig:
        return self.teacher_pool[0]

    def teacher_config(self, teacher_id: str) -> TeacherConfig:
        for teacher in self.teacher_pool:
            if teacher.id == teacher_id:
                return teacher
        raise BadInput(
            f"teacher {teacher_id!r} is not configured (teachers: {[t.id for t in self.teacher_pool]})"
        )

    def extract_epochs_of(self, teacher: TeacherConfig) -> list[int]:
        return sorted(self.extract.teacher_epochs or teacher.checkpoint_epochs)

    def extract_layers_of(self, teacher: TeacherConfig) -> list[str]:
        return list(self.extract.layers or [_teacher_splits(teacher)[1]])

    def student_epochs_of(self, teacher: TeacherConfig) -> list[int]:
        """The teacher epochs of the student grid for ``teacher`` (default: its last extracted one)."""
        return list(self.students.teacher_epoch or [self.extract_epochs_of(teacher)[-1]])

    def student_layers_of(self, teacher: TeacherConfig) -> list[str]:
        return list(self.students.layer or [self.extract_layers_of(teacher)[0]])

    @property
    def extract_epochs(self) -> list[int]:
        """The primary teacher's extracted epochs."""
        return self.extract_epochs_of(self.primary_teacher)

    @property
    def extract_layers(self) -> list[str]:
        return self.extract_layers_of(self.primary_teacher)

    @property
    def student_teacher_epochs(self) -> list[int]:
        return self.student_epochs_of(self.primary_teacher)

    @property
    def student_layers(self) -> list[str]:
        return self.student_layers_of(self.primary_teacher)

    @property
    def student_teacher_epoch(self) -> int:
        """The primary teacher's reference epoch (the first of the grid)."""
        return self.student_teacher_epochs[0]

    @property
    def student_layer(self) -> str:
        """The primary teacher's reference layer (the first of the grid)."""
        return self.student_layers[0]


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides with dotted keys; values are parsed as YAML (``[a,b]``, ``1e-3``, ``null``)."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadInput(f"--set expects KEY=VALUE, got {item!r}")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise BadInput(f"--set {key}: {part} is not a section")
            node = child
        node[parts[-1]] = parsed
    return raw


def _one_line(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"config{' ' + where if where else ''}: {message}{more}"


def validate_config(raw: dict[str, Any]) -> RunConfig:
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise BadInput(_one_line(exc)) from None


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (or the defaults when ``path`` is None), apply overrides and validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise BadInput(f"config file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise BadInput(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise BadInput(f"config file {path} must hold a mapping at the top level")
    return validate_config(apply_overrides(raw, overrides or []))


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
