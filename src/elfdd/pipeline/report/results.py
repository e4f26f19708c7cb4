"""results.json (schema in docs/design.md): the records of a run's cells, their summary per cell over seeds, and the
analyses every table is built from (arms, the reference cell, paired gains, convergence)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from ..students import RUN_KEYS

# The grid axes of a run besides the student and the seed (None where the loss mode does not use the axis).
AXES = (
    "loss_mode",
    "view_policy",
    "feature_loss",
    "lambda_front",
    "lambda_rear",
    "teacher",
    "teacher_epoch",
    "layer",
)


AXIS_TITLES = {
    "view_policy": "View policy",
    "feature_loss": "Feature loss",
    "teacher_epoch": "Teacher checkpoint epoch the features came from (ELF Fig. 4)",
    "layer": "Teacher layer the features came from (ELF Fig. 5)",
}


def axes_of(run: dict[str, Any]) -> dict[str, Any]:
    """The grid axes of a run record (or of a summary entry, which carries them flat)."""
    if "loss" not in run:
        return {a: run.get(a) for a in AXES}
    loss = run["loss"] or {}
    return {
        "loss_mode": loss.get("mode"),
        "view_policy": run.get("view_policy"),
        "feature_loss": loss.get("feature_loss"),
        "lambda_front": loss.get("lambda_front"),
        "lambda_rear": loss.get("lambda_rear"),
        "teacher": run.get("teacher_id"),
        "teacher_epoch": run.get("teacher_epoch"),
        "layer": run.get("layer"),
    }


def arm(entry: dict[str, Any]) -> str:
    """A report column: the mode, with the view policy for modes that use teacher features ("elf (replay)")."""
    policy = entry.get("view_policy")
    return entry["mode"] if policy is None else f"{entry['mode']} ({policy})"


def converged(run: dict[str, Any]) -> bool:
    """Whether a run finished with a test accuracy (not recorded as diverged; older records have no status)."""
    return run.get("status", "ok") == "ok" and run.get("test_acc") is not None


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and population std (np.std, as the reference reports) of test accuracy per grid cell over the seeds
    that did not diverge (``n``); ``diverged`` counts the others. A cell whose seeds all diverged has no mean."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run in runs:
        groups[(run["student"], run["mode"], *axes_of(run).values())].append(run)
    summary = []
    for key, group in groups.items():
        accs = [r["test_acc"] for r in group if converged(r)]
        summary.append(
            {
                "student": key[0],
                "mode": key[1],
                **dict(zip(AXES, key[2:], strict=True)),
                "mean": float(np.mean(accs)) if accs else None,
                "std": float(np.std(accs)) if accs else None,
                "n": len(accs),
                "diverged": len(group) - len(accs),
            }
        )
    return summary


def summary_value(entry: dict[str, Any]) -> str:
    """A summary entry as text: its mean accuracy, and how many seeds diverged."""
    diverged = entry.get("diverged", 0)
    if entry["mean"] is None:
        return f"diverged ({diverged} of {diverged})"
    suffix = f" ({diverged} diverged)" if diverged else ""
    return f"{100 * entry['mean']:.1f}%{suffix}"


def build_results(
    version: str,
    config: dict[str, Any],
    synthetic: dict[str, Any],
    runs: list[dict[str, Any]],
    reference: dict[str, Any],
    stores: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """``reference``: the grid's first value of every axis (the analyses vary one axis from it); ``stores``: the
    provenance of every feature array the runs read. The scores (report/scores.py) are added by the caller."""
    runs = [{k: run.get(k) for k in RUN_KEYS} for run in runs]
    results = {
        "elfdd_version": version,
        "config": config,
        "synthetic": synthetic,
        "reference": reference,
        "stores": stores or [],
        "runs": runs,
        "summary": summarize(runs),
    }
    return results


def at_reference(run: dict[str, Any], reference: dict[str, Any], free: tuple[str, ...] = ()) -> bool:
    """Whether every axis of ``run`` except ``free`` is at the reference value (or unused by its loss mode). A
    reference given per teacher id (the teacher epoch and layer) is the one of the run's teacher."""
    axes = axes_of(run)

    def value(a: str) -> Any:
        ref = reference[a]
        return ref.get(axes["teacher"]) if isinstance(ref, dict) else ref

    return all(axes[a] is None or a in free or a not in reference or axes[a] == value(a) for a in AXES[1:])


def paired_gain(
    runs: list[dict[str, Any]], baseline_acc: dict[tuple[str, int], float]
) -> tuple[float, float, int]:
    """Mean and std over seeds of (run - the same student's baseline at the same seed); NaN if none pairs."""
    gains = [
        r["test_acc"] - baseline_acc[(r["student"], r["seed"])]
        for r in runs
        if converged(r) and (r["student"], r["seed"]) in baseline_acc
    ]
    return (float(np.mean(gains)), float(np.std(gains)), len(gains)) if gains else (float("nan"), 0.0, 0)


def baselines(results: dict[str, Any]) -> dict[tuple[str, int], float]:
    """Baseline test accuracy by (student, seed), what :func:`paired_gain` pairs with (diverged ones left out)."""
    return {
        (r["student"], r["seed"]): r["test_acc"]
        for r in results["runs"]
        if r["mode"] == "baseline" and converged(r)
    }


def mean_accuracy(cell: list[dict]) -> tuple[float, float] | None:
    """Mean and std of the converged runs of ``cell``; None when there are none."""
    accs = [r["test_acc"] for r in cell if converged(r)]
    return (float(np.mean(accs)), float(np.std(accs))) if accs else None


def students_of(results: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(r["student"] for r in results["runs"]))


def elf_mode(results: dict[str, Any]) -> str | None:
    """The loss mode the axis analyses use: ELF's three losses if in the grid, else the first feature mode."""
    modes = [axes_of(r)["loss_mode"] for r in results["runs"] if r["mode"] != "baseline"]
    return "front_rear_task" if "front_rear_task" in modes else (modes[0] if modes else None)


def in_column(runs: list[dict], student: str, column: str) -> list[dict]:
    return [r for r in runs if r["student"] == student and arm(r) == column]


def elf_runs(results: dict[str, Any], free: tuple[str, ...]) -> list[dict]:
    """Runs of the ELF mode with every axis but ``free`` at the reference."""
    mode, ref = elf_mode(results), results["reference"]
    return [r for r in results["runs"] if axes_of(r)["loss_mode"] == mode and at_reference(r, ref, free=free)]
