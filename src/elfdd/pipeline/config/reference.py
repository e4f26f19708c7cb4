"""The config reference (docs/config.md): every field of RunConfig with its type, default and description, from the
model itself, so the page cannot drift from the code (tests/test_config.py compares them).

    python -m elfdd.pipeline.config.reference > docs/config.md"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from .run import RunConfig


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation is or may be (``X``, ``X | None``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _type_name(annotation: Any) -> str:
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    return text.replace("typing.", "").replace("NoneType", "None").replace("|", "\\|")


def _default(field: Any) -> str:
    if field.default is PydanticUndefined:
        return "required" if field.default_factory is None else repr(field.default_factory())
    value = field.default.model_dump(mode="json") if isinstance(field.default, BaseModel) else field.default
    return "none" if value is None else f"`{value!r}`" if not isinstance(value, dict) else "(section)"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        nested = _models_in(field.annotation)
        if nested:
            optional = type(None) in typing.get_args(field.annotation)
            note = "optional section (none: off)" if optional else "section"
            rows.append(f"| `{key}` | {note} | {_default(field)} | {description} |")
            for sub in nested:
                rows += _rows(sub, f"{key}.")
        else:
            rows.append(f"| `{key}` | {_type_name(field.annotation)} | {_default(field)} | {description} |")
    return rows


def config_reference() -> str:
    rows = _rows(RunConfig, "")
    return "\n".join(
        [
            "# Configuration reference",
            "",
            "<!-- written by `python -m elfdd.pipeline.config.reference > docs/config.md`; tests/test_config.py "
            "checks it is current -->",
            "",
            "Every field of a run's config (a YAML file, a packaged config's name such as `smoke`, or `--set "
            "KEY=VALUE` on the command line; the same descriptions appear in a Prefect deployment's run form). "
            f"{len([r for r in rows if 'section' not in r.split('|')[2]])} settings.",
            "",
            "| key | type | default | description |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )


if __name__ == "__main__":
    print(config_reference(), end="")
