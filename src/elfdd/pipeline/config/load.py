"""Configs from YAML files and ``--set KEY=VALUE`` overrides; a bad one is bad input naming the key (exit 2)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from ...core.errors import BadInput
from .run import RunConfig


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


def packaged_configs() -> dict[str, Path]:
    """The configs shipped inside the package (``elfdd/configs/<name>.yaml``) by name: default, smoke, study."""
    folder = Path(__file__).resolve().parents[2] / "configs"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def config_path(path: str | Path) -> Path:
    """``path`` as given, or a packaged config's file when ``path`` is one's bare name (``smoke``) and no such file
    exists here."""
    given = Path(path)
    if given.exists() or given.suffix or len(given.parts) != 1:
        return given
    packaged = packaged_configs()
    if str(path) not in packaged:
        raise BadInput(
            f"config {path}: no such file, and no packaged config of that name ({', '.join(packaged)})"
        )
    return packaged[str(path)]


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config (a file, or a packaged config by name: ``smoke``; the defaults when ``path`` is None),
    apply overrides and validate."""
    raw: dict[str, Any] = {}
    if path is not None:
        path = config_path(path)
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise BadInput(f"config file not found: {path}") from None
        except IsADirectoryError:
            raise BadInput(f"config file {path} is a directory; pass a YAML file") from None
        except UnicodeDecodeError as exc:
            raise BadInput(
                f"config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
            ) from None
        except OSError as exc:
            raise BadInput(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise BadInput(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise BadInput(f"config file {path} must hold a mapping at the top level")
    return validate_config(apply_overrides(raw, overrides or []))


def dump_config(config: RunConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
