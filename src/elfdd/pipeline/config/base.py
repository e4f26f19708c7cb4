"""What every section of the config shares: strict models (an unknown key is bad input), the name and value types,
and the checks against the model registry."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

if TYPE_CHECKING:
    from .teacher import TeacherConfig

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]+$", max_length=64)]
LossMode = Literal[
    "task",
    "front_rear_task",
    "front_task",
    "rear_task",
    "front_rear",
    "logit",
    "logit_task",
    "front_rear_logit_task",
]


# clean: the feature of the un-augmented image (the reference); replay: the stored feature of exactly the augmented
# view the student sees; online: the teacher run on exactly the augmented batch every step (no cache).
ViewPolicy = Literal["clean", "replay", "online"]
CompileBackend = Literal["inductor", "aot_eager"]


Lambda = Annotated[float, Field(ge=0)]


def listed(value: Any) -> Any:
    """A grid axis given as one value means a one-value list (``feature_loss: ce`` == ``feature_loss: [ce]``)."""
    return value if value is None or isinstance(value, list) else [value]


class Strict(BaseModel):
    # No NaN or Inf in any number of the config: `teacher.lr=.inf` is refused here, not after hours of work. Each
    # field's docstring is its description (the JSON schema's, so a deployment's run form shows it).
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, allow_inf_nan=False, use_attribute_docstrings=True
    )


def check_arch(name: str) -> str:
    from ...models.registry import MODELS

    return MODELS.check(name)


def teacher_splits(teacher: TeacherConfig) -> tuple[tuple[str, ...], str]:
    from ...models import split_points

    try:
        return split_points(teacher.arch, **teacher.arch_kwargs)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"teacher.arch_kwargs: {exc}") from None
