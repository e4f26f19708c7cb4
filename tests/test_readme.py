"""Every command of the README is checked (issue 36: "every command in it is run by a test"): each fenced block is
marked ``<!-- readme-check: KIND -->`` and this file checks it by its kind:

- ``cli``: the ``elfdd`` lines run, in order, in a fresh folder holding the ``my_set.npz`` they name, each with this
  suite's tiny budget appended (``--set``: a few hundred images, two epochs);
- ``python``: the block runs as it is, in a fresh folder;
- ``make``: each target exists, and the ``elfdd`` command of ``make smoke``/``make run`` is a valid one (CI runs
  ``make test``; the CLI tests run the smoke config);
- ``pip``: each extra named exists in pyproject.toml and the constraints file it names exists;
- ``toml``: the entry-point group is the one elfdd loads."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib

import numpy as np
import pytest
from helpers import ROOT

README = (ROOT / "README.md").read_text()
BLOCK = re.compile(r"(?:<!-- readme-check: (\w+) -->\n)?```(\w*)\n(.*?)```", re.S)
TINY = [
    "data.train_subset=600",
    "data.test_subset=200",
    "teacher.epochs=1",
    "teacher.checkpoint_epochs=[0,1]",
    "extract.teacher_epochs=[0,1]",
    "students.epochs=2",
]


def blocks(kind: str) -> list[str]:
    return [body for check, _, body in BLOCK.findall(README) if check == kind]


def commands(kind: str, program: str) -> list[list[str]]:
    """The lines of the ``kind`` blocks that call ``program``, as argument lists (comments dropped)."""
    found = []
    for body in blocks(kind):
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == program:
                found.append(words)
    return found


def test_every_block_is_marked_with_how_it_is_checked():
    for check, language, body in BLOCK.findall(README):
        assert check in ("cli", "python", "make", "pip", "toml"), (
            f"unchecked README block:\n```{language}\n{body}```"
        )


@pytest.mark.slow
def test_the_cli_block_runs(tmp_path, fashion_mnist_available):
    """Import a set, run the rest of the pipeline with the yardstick, verify, inspect: as the README writes them."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 2)
    np.savez(
        tmp_path / "my_set.npz", images=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), labels=labels
    )
    lines = commands("cli", "elfdd")
    assert [words[1] for words in lines] == ["import-synthetic", "run", "verify", "inspect"]
    for words in lines:
        tiny = (
            [a for item in TINY for a in ("--set", item)] if "--set" in words or "--config" in words else []
        )
        if words[1] == "import-synthetic":  # the import's config is the run's: the tiny budget goes in there
            tiny = [a for item in TINY for a in ("--set", item)]
        result = subprocess.run(
            [sys.executable, "-m", "elfdd.flows", *words[1:], *tiny],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=900,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        assert result.returncode == 0, f"{' '.join(words)}:\n{result.stderr[-3000:]}"
    assert (tmp_path / "runs/mine/yardstick/results.json").exists()


@pytest.mark.slow
def test_the_python_block_runs(tmp_path, fashion_mnist_available):
    (code,) = blocks("python")
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "architecture_gap" in result.stdout


def test_the_make_targets_exist_and_their_commands_are_valid():
    from elfdd.flows.cli import _parser
    from elfdd.pipeline.config import load_config

    makefile = (ROOT / "Makefile").read_text()
    targets = [words[1] for words in commands("make", "make")]
    assert {"smoke", "run", "test"} <= set(targets)
    for target in targets:
        assert re.search(rf"^{target}:", makefile, re.M), f"make {target}: no such target"
    for target in ("smoke", "run"):
        recipe = re.search(rf"^{target}:.*\n\t(.*)", makefile, re.M).group(1)
        words = shlex.split(
            recipe.replace("$(VENV)/bin/", "").replace("$(OUT)", "runs/x").replace("$(ARGS)", "")
        )
        args = _parser().parse_args(words[1:])
        load_config(args.config, args.set)


def test_the_pip_lines_name_real_extras():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = commands("pip", "pip")
    assert lines
    for words in lines:
        target = words[-1]
        extras = re.fullmatch(r"\.(?:\[([\w,]+)\])?", target)
        assert extras, f"pip line installs {target!r}, not this package"
        for extra in (extras.group(1) or "").split(","):
            assert not extra or extra in project["optional-dependencies"], f"no extra {extra!r}"
        if "-c" in words:
            assert (ROOT / words[words.index("-c") + 1]).exists()


def test_the_entry_point_group_is_the_one_elfdd_loads():
    from elfdd.core.plugins import GROUP

    (toml,) = blocks("toml")
    groups = tomllib.loads(toml)["project"]["entry-points"]
    assert list(groups) == [GROUP]
