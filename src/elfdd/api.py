"""elfdd from Python (a notebook, a training script): every stage in this process, without Prefect.

    import elfdd.api as elfdd

    table = elfdd.evaluate("runs/mine", set_files=["sets/mtt_ipc10"], config="study",
                           students=["convnet", "resnet18", "vgg11"], seeds=[0, 1, 2])
    table                      # a pandas DataFrame: student x arm, accuracy, gain, scores
    elfdd.read_results("runs/mine")          # the same table from a finished run directory
    elfdd.open_store("runs/mine/store.zarr", "convnet", 5, "block3")   # one feature array as xarray

``evaluate`` writes the usual run directory (config.yaml, synthetic.pt, checkpoints, store.zarr, students/,
results.json, report.md) and keeps what is there while its inputs are unchanged, as ``elfdd run`` does; it prints a
line per stage and per finished cell (``progress=False``: silent).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.console import Countdown, console_handler
from .pipeline import stages
from .pipeline.config import RunConfig, load_config
from .pipeline.config.load import apply_overrides, validate_config
from .pipeline.students import outcome

if TYPE_CHECKING:
    import pandas as pd
    import xarray as xr

_LOG = logging.getLogger("elfdd.api")


def _config(config: str | Path | RunConfig | None, overrides: list[str]) -> RunConfig:
    if isinstance(config, RunConfig):  # the overrides on top of it, as load_config applies them to a file's
        return validate_config(apply_overrides(config.model_dump(mode="json"), overrides))
    return load_config(config, overrides)


def evaluate(
    run_dir: str | Path,
    *,
    config: str | Path | RunConfig | None = None,
    set_files: Sequence[str | Path] | None = None,
    students: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> pd.DataFrame:
    """Distil (or import ``set_files``: a set in any format ``elfdd import-synthetic`` reads), train the teachers,
    extract their features, train every student cell and write the report, in ``run_dir``; returns
    :func:`read_results` of it. ``config``: a YAML file, a packaged config's name (``smoke``, ``study``) or a
    RunConfig; ``students``/``seeds``/``overrides`` change it (``overrides`` as ``--set``: ``KEY=VALUE``)."""
    extra = list(overrides)
    if set_files:
        extra += ["distill.method=file", f"distill.source.paths={json.dumps([str(p) for p in set_files])}"]
    if students:
        extra.append(f"students.archs={json.dumps(list(students))}")
    if seeds:
        extra.append(f"students.seeds={json.dumps(list(seeds))}")
    run = stages.prepare_run(Path(run_dir), _config(config, extra))
    countdown: list[Countdown] = []  # started with the grid (after distill, teachers, extract, yardstick)

    def finished(path: Path) -> None:
        record = json.loads(path.read_text())
        countdown[-1].done(f"{record['cell']}: {outcome(record, digits=2)}")

    with _progress(progress):
        _LOG.info("run %s: distill, teachers, extract, students, report", run.dir.root)
        report = stages.stage_run(
            run, on_cell=finished, on_grid=lambda total: countdown.append(Countdown("cell", total, _LOG))
        )
        _LOG.info("report %s", report)
    return read_results(run.dir.root)


def read_results(run_dir: str | Path) -> pd.DataFrame:
    """A finished run's results.json as a table: one row per student and arm (at the reference cell), with the mean
    and std of the test accuracy over seeds (fractions), the seeds, the paired gain over the baseline, and every
    score the run has (``architecture_gap``, ``ior``, ``hlr``, ``lrs``: their means)."""
    import pandas as pd

    from .pipeline.report import arm, at_reference, baselines, paired_gain

    results = json.loads(stages.RunDir(Path(run_dir)).results.read_text())
    paired = baselines(results)
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in results["summary"]:
        if not at_reference(entry, results["reference"], ("view_policy",)):
            continue
        column = arm(entry)
        runs = [
            r
            for r in results["runs"]
            if r["student"] == entry["student"]
            and arm(r) == column
            and at_reference(r, results["reference"], ("view_policy",))
        ]
        gain = paired_gain(runs, paired) if column != "baseline" else (None, None, 0)
        rows[(entry["student"], column)] = {
            "student": entry["student"],
            "arm": column,
            "accuracy": entry["mean"],
            "std": entry["std"],
            "seeds": entry["n"],
            "gain": gain[0],
            "gain_std": gain[1],
        }
    for score, entries in results.get("scores", {}).items():
        for e in entries:
            if (e["student"], e["arm"]) in rows:
                rows[(e["student"], e["arm"])][score] = e["mean"]
    return pd.DataFrame(list(rows.values()))


def open_store(store: str | Path, teacher_id: str, epoch: int, layer: str) -> xr.DataArray:
    """One feature array of a store, lazily, as xarray (dims sample, view, channel, y, x; a label coordinate)."""
    from .store.inspect import open_features

    return open_features(store, teacher_id, epoch, layer)


class _progress:
    """elfdd's progress lines (the stages' and this module's) on stdout while a call runs, unless the caller's
    logging already shows them."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.handler: logging.Handler | None = None

    def __enter__(self) -> _progress:
        target = logging.getLogger("elfdd")
        if self.enabled and not target.hasHandlers():
            self.handler = console_handler("auto", sys.stdout)  # bars in a notebook or a terminal, else lines
            target.addHandler(self.handler)
            self.level = target.level
            target.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handler is not None:
            target = logging.getLogger("elfdd")
            target.removeHandler(self.handler)
            self.handler.close()
            target.setLevel(self.level)
