"""Rendered sections of one markdown file: several bench scripts write into docs/results.md, each only its own part.

A section is the text between ``<!-- section NAME: written by SCRIPT; do not edit by hand -->`` and
``<!-- /section NAME -->``. Writing a section replaces that text where the markers are and appends it (after the
other sections) where they are not, so each script renders its part again without touching the others'.
"""

from __future__ import annotations

import re
from pathlib import Path


def write_section(path: Path, name: str, writer: str, lines: list[str]) -> None:
    """Put `lines` in section `name` of `path` (created if missing), written by `writer` (a script's path)."""
    begin = f"<!-- section {name}: written by {writer}; do not edit by hand -->"
    end = f"<!-- /section {name} -->"
    block = "\n".join([begin, *lines, end])
    text = path.read_text() if path.exists() else ""
    pattern = re.compile(
        rf"<!-- section {re.escape(name)}:.*?-->.*?<!-- /section {re.escape(name)} -->", re.S
    )
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text.rstrip("\n") + "\n")
    tmp.replace(path)  # whole or not at all
