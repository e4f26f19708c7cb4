"""Work keyed by the sha256 of its inputs. Every artifact that a later run may keep instead of recomputing records
the key of the inputs it was made from: a stage marker (``stages/<stage>.json``, field ``key``), a student cell's
record (``cache_key``), the MTT experts' manifest (``key``), a resume point (``key``, in a torch file) and an
extraction's partial epoch (the ``build_key`` attribute in the store). The work is kept only while the key of its
current inputs is the same; anything else about the file (missing, other key, unreadable) means "recompute"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .io import json_sha256, load_json

# The version of what keys cover. A key is the hash of this and of the whole normalised config section(s) and input
# digests its output depends on, nothing added or left out to keep older keys: when what a key covers changes, this
# number goes up, and every run directory made before recomputes once.
KEY_SCHEMA = 2


def key_of(*parts: Any) -> str:
    """sha256 of KEY_SCHEMA and the inputs ``parts`` (configs as their JSON dump, fingerprints, runtime), canonical
    JSON."""
    return json_sha256([KEY_SCHEMA, *parts])


def keyed_record(path: Path, key: str, field: str = "key", what: str = "record") -> dict[str, Any] | None:
    """The JSON file ``path`` when it exists and records ``key`` in ``field``, else None (a damaged file is bad
    input)."""
    if not Path(path).exists():
        return None
    record = load_json(path, what)
    return record if record.get(field) == key else None


def holds_key(path: Path, key: str, field: str = "key", what: str = "record") -> bool:
    """Whether the JSON file ``path`` exists and records ``key`` in ``field``."""
    return keyed_record(path, key, field, what) is not None
