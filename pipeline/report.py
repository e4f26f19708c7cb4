"""results.json (DESIGN.md schema) and report.md: the cross-architecture table and the paper's analyses (gain per
student, lambda_front x lambda_rear, teacher epoch, teacher layer, loss mode, view policy), each with a PNG."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..core.io import save_figure

RUN_KEYS = (
    "cell",
    "student",
    "mode",
    "loss",
    "teacher_id",
    "teacher_epoch",
    "layer",
    "view_policy",
    "views",
    "student_split",
    "adapted",
    "rear_relu",
    "seed",
    "epochs",
    "lr",
    "status",
    "diverged",
    "test_acc",
    "train_seconds",
    "cache_key",
)
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
    provenance of every feature array the runs read."""
    runs = [{k: run.get(k) for k in RUN_KEYS} for run in runs]
    return {
        "elfdd_version": version,
        "config": config,
        "synthetic": synthetic,
        "reference": reference,
        "stores": stores or [],
        "runs": runs,
        "summary": summarize(runs),
    }


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


def _pct(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def gain_text(g: tuple[float, float, int]) -> str:
    return "–" if not g[2] else f"{100 * g[0]:+.2f} ± {100 * g[1]:.2f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _students(results: dict[str, Any]) -> list[str]:
    return list(dict.fromkeys(r["student"] for r in results["runs"]))


def _elf_mode(results: dict[str, Any]) -> str | None:
    """The loss mode the axis analyses use: ELF's three losses if in the grid, else the first feature mode."""
    modes = [axes_of(r)["loss_mode"] for r in results["runs"] if r["mode"] != "baseline"]
    return "front_rear_task" if "front_rear_task" in modes else (modes[0] if modes else None)


def figure1(results: dict[str, Any]) -> tuple[list[dict], list[str], list[str]]:
    """Figure 1's runs (every mode and view policy, the other axes at the reference), its columns and the columns
    with a gain over the baseline."""
    runs = [r for r in results["runs"] if at_reference(r, results["reference"], free=("view_policy",))]
    columns = list(dict.fromkeys(arm(r) for r in runs))
    gain_columns = [c for c in columns if c != "baseline"] if baselines(results) else []
    return runs, columns, gain_columns


def _in_column(runs: list[dict], student: str, column: str) -> list[dict]:
    return [r for r in runs if r["student"] == student and arm(r) == column]


def mean_accuracy(cell: list[dict]) -> tuple[float, float] | None:
    """Mean and std of the converged runs of ``cell``; None when there are none."""
    accs = [r["test_acc"] for r in cell if converged(r)]
    return (float(np.mean(accs)), float(np.std(accs))) if accs else None


def _cell_text(cell: list[dict], gain: tuple[float, float, int] | None = None) -> str:
    """A table cell: accuracy over the converged seeds (with the paired gain), and the diverged seeds by name of
    their fate, never as a number."""
    if not cell:
        return "–"
    accuracy = mean_accuracy(cell)
    diverged = sum(not converged(r) for r in cell)
    if accuracy is None:
        return f"**diverged** ({diverged} of {len(cell)})"
    text = f"{_pct(*accuracy)}" + (
        f" ({gain_text(gain)})" if gain is not None else f" (n={len(cell) - diverged})"
    )
    return text + (f", **{diverged} diverged**" if diverged else "")


def main_table(results: dict[str, Any]) -> list[str]:
    """Figure 1: every student under every mode and view policy, the other axes at the reference; gains paired."""
    runs, columns, gain_columns = figure1(results)
    paired = baselines(results)
    rows = []
    for student in _students(results):
        row = [student]
        for column in columns:
            row.append(_cell_text(_in_column(runs, student, column)))
        for column in gain_columns:
            row.append(gain_text(paired_gain(_in_column(runs, student, column), paired)))
        rows.append(row)
    return markdown_table(["student", *columns, *(f"gain {c}" for c in gain_columns)], rows)


def _elf_runs(results: dict[str, Any], free: tuple[str, ...]) -> list[dict]:
    """Runs of the ELF mode with every axis but ``free`` at the reference."""
    mode, ref = _elf_mode(results), results["reference"]
    return [r for r in results["runs"] if axes_of(r)["loss_mode"] == mode and at_reference(r, ref, free=free)]


def axis_study(results: dict[str, Any], axis: str) -> tuple[list[Any], dict[str, dict[Any, tuple]]] | None:
    """Per student and value of ``axis`` (the ELF mode, other axes at the reference): (mean, std, gain)."""
    runs = _elf_runs(results, (axis,))
    values = sorted({axes_of(r)[axis] for r in runs} - {None}, key=str)
    if len(values) < 2:
        return None
    paired = baselines(results)
    table: dict[str, dict[Any, tuple]] = {}
    for student in _students(results):
        for value in values:
            cell = [r for r in runs if r["student"] == student and axes_of(r)[axis] == value]
            if cell:
                table.setdefault(student, {})[value] = (cell, paired_gain(cell, paired))
    return values, table


def lambda_grid(results: dict[str, Any]) -> tuple[list[float], list[float], dict[tuple, list]] | None:
    """ELF Fig. 3: per (lambda_front, lambda_rear), the paired gain of every student."""
    runs = _elf_runs(results, ("lambda_front", "lambda_rear"))
    fronts = sorted({axes_of(r)["lambda_front"] for r in runs} - {None})
    rears = sorted({axes_of(r)["lambda_rear"] for r in runs} - {None})
    if len(fronts) * len(rears) < 2:
        return None
    paired = baselines(results)
    cells: dict[tuple, list] = {}
    for f in fronts:
        for r_ in rears:
            chosen = [r for r in runs if axes_of(r)["lambda_front"] == f and axes_of(r)["lambda_rear"] == r_]
            cells[(f, r_)] = [
                paired_gain([r for r in chosen if r["student"] == s], paired)[0] for s in _students(results)
            ]
    return fronts, rears, cells


def render_markdown(results: dict[str, Any], plots: dict[str, str]) -> str:
    cfg, syn, ref = results["config"], results["synthetic"], results["reference"]
    lines = [
        "# elfdd cross-architecture report",
        "",
        f"Synthetic set: {syn['method'].upper()}, IPC {syn['ipc']}, sha256 `{syn['sha256'][:16]}`; "
        f"dataset {cfg['data']['name']}; distilled with {cfg['distill']['arch']}. "
        f"{_teachers_text(cfg)}. Students trained {cfg['students']['epochs']} epochs (lr {cfg['students']['lr']}).",
        "",
        "Test accuracy (%) on the real test split, mean ± std over seeds (np.std); gain = paired difference per seed "
        "against the same student's baseline. Reference cell (every table varies one axis from it): "
        + ", ".join(f"{k} {_reference_text(v)}" for k, v in ref.items())
        + ". View policy clean: the teacher feature of the un-augmented image (the reference code); replay: the "
        "feature of exactly the augmented view the student sees.",
        "",
        "## Improvement over the baseline per student (ELF Fig. 1)",
        "",
        *main_table(results),
    ]
    for name in ("accuracy", "gains"):
        if name in plots:
            lines += ["", f"![{name}](plots/{plots[name]})"]
    grid = lambda_grid(results)
    if grid:
        fronts, rears, cells = grid
        lines += [
            "",
            "## λ_front x λ_rear (ELF Fig. 3)",
            "",
            "Mean over students of the paired gain (points) of the ELF mode; rows λ_front, columns λ_rear.",
            "",
            *markdown_table(
                ["λ_front \\ λ_rear", *map(str, rears)],
                [[str(f), *(f"{100 * np.nanmean(cells[(f, r)]):+.2f}" for r in rears)] for f in fronts],
            ),
        ]
        if "lambda_grid" in plots:
            lines += ["", f"![lambda grid](plots/{plots['lambda_grid']})"]
    for axis in ("teacher_epoch", "layer", "feature_loss", "view_policy"):
        study = axis_study(results, axis)
        if not study:
            continue
        values, table = study
        rows = [[s, *(_cell_text(*table[s][v]) if v in table[s] else "–" for v in values)] for s in table]
        lines += ["", f"## {AXIS_TITLES[axis]}", "", "Accuracy (gain over the baseline).", ""]
        lines += markdown_table(["student", *map(str, values)], rows)
        if axis in plots:
            lines += ["", f"![{axis}](plots/{plots[axis]})"]
    lines += pairing_section(results)
    lines += ["", *loss_mode_section(results)]
    lines += diverged_section(results)
    lines += provenance(results)
    return "\n".join(lines)


def _teachers_text(cfg: dict[str, Any]) -> str:
    teachers = cfg.get("teachers") or [cfg["teacher"]]
    described = [
        f"`{t['id']}` ({t['arch']}{''.join(f', {k} {v}' for k, v in t.get('arch_kwargs', {}).items())})"
        for t in teachers
    ]
    return ("Teacher " if len(described) == 1 else "Teachers ") + ", ".join(described)


def _reference_text(value: Any) -> str:
    """A reference value; one given per teacher shows once when all teachers share it."""
    if not isinstance(value, dict):
        return str(value)
    values = set(map(str, value.values()))
    return values.pop() if len(values) == 1 else ", ".join(f"{v} ({k})" for k, v in value.items())


def pairing_section(results: dict[str, Any]) -> list[str]:
    """Which teacher and split each student learned from (pipeline/pairing.py), and whether adapters were needed."""
    seen: dict[tuple, None] = {}
    for run in results["runs"]:
        if run.get("teacher_id") is not None:
            seen[
                (
                    run["student"],
                    run["teacher_id"],
                    run.get("student_split"),
                    run.get("adapted"),
                    run.get("rear_relu"),
                )
            ] = None
    if not seen:
        return []
    yes_no = {True: "yes", False: "no", None: "–"}
    rows = [[s, t, str(split), yes_no[adapted], yes_no[relu]] for s, t, split, adapted, relu in seen]
    return [
        "",
        "## Teacher pairing",
        "",
        "Each student learns from the teacher whose feature has exactly the shape of one of its split points (its "
        "default split first); else one of the same spatial size (1x1 adapters), else through learned adapters "
        "(pipeline/pairing.py). Rear ReLU: the teacher feature reaches the student's rear through a ReLU, as its own "
        "front's output does.",
        "",
        *markdown_table(["student", "teacher", "split", "adapters", "rear ReLU"], rows),
    ]


def loss_mode_section(results: dict[str, Any]) -> list[str]:
    """The loss-mode ablation: every loss mode of the grid, other axes at the reference."""
    ref = results["reference"]
    runs = [r for r in results["runs"] if at_reference(r, ref)]
    modes = list(dict.fromkeys(axes_of(r)["loss_mode"] for r in runs))
    if len(modes) < 3:
        return []
    paired = baselines(results)
    rows = []
    for student in _students(results):
        row = [student]
        for mode in modes:
            cell = [r for r in runs if r["student"] == student and axes_of(r)["loss_mode"] == mode]
            row.append(_cell_text(cell, paired_gain(cell, paired)))
        rows.append(row)
    return [
        "## Loss-mode ablation",
        "",
        "Accuracy (gain over the baseline).",
        "",
        *markdown_table(["student", *modes], rows),
        "",
    ]


def diverged_section(results: dict[str, Any]) -> list[str]:
    """Every run recorded as diverged, with the loss term and epoch that went NaN/Inf (none: no section)."""
    runs = [r for r in results["runs"] if not converged(r)]
    if not runs:
        return []
    rows = [
        [
            r["student"],
            arm(r),
            str(r["seed"]),
            (r.get("diverged") or {}).get("term", "?"),
            str((r.get("diverged") or {}).get("epoch", "?")),
            str(r["lr"]),
        ]
        for r in runs
    ]
    return [
        f"## Diverged runs ({len(runs)} of {len(results['runs'])})",
        "",
        "A loss term became NaN or Inf; the run has no test accuracy and is left out of every mean and gain above.",
        "",
        *markdown_table(["student", "arm", "seed", "loss term", "epoch", "lr"], rows),
        "",
    ]


def provenance(results: dict[str, Any]) -> list[str]:
    seconds = sum(r["train_seconds"] for r in results["runs"])
    lines = [
        "## Provenance",
        "",
        f"{len(results['runs'])} student runs, {seconds:.0f} s of student training in total. Every run in "
        "results.json carries its `cache_key`: the sha256 of its cell, training settings, test data and the store "
        "provenance below. Synthetic set sha256 `" + results["synthetic"]["sha256"] + "`.",
        "",
    ]
    if results["stores"]:
        lines += markdown_table(
            ["teacher", "epoch", "layer", "checkpoint sha256", "views", "dtype"],
            [
                [
                    s["teacher_id"],
                    str(s["epoch"]),
                    s["layer"],
                    f"`{s['checkpoint_sha256'][:16]}`",
                    str(s["views"]),
                    s["dtype"],
                ]
                for s in results["stores"]
            ],
        )
    students = results["config"].get("students", {})
    grid = {
        k: students.get(k)
        for k in (
            "archs",
            "modes",
            "view_policies",
            "feature_loss",
            "lambda_front",
            "lambda_rear",
            "teacher_epoch",
            "layer",
            "seeds",
        )
    }
    lines += ["", "Student grid of this report: " + "; ".join(f"{k} {v}" for k, v in grid.items()) + ".", ""]
    return lines


def _figure(path: Path, draw: Callable, size: tuple[float, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    draw(ax)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def _bar_positions(groups: int, series: int, i: int) -> tuple[np.ndarray, float]:
    width = 0.8 / max(1, series)
    return np.arange(groups) + (i - (series - 1) / 2) * width, width


def _bars(ax, groups: list[str], series: dict[str, tuple[list[float | None], list[float]]]) -> None:
    """Grouped bars; a None mean (every seed diverged) draws no bar (see :func:`_mark_diverged`)."""
    for i, (label, (means, stds)) in enumerate(series.items()):
        x, width = _bar_positions(len(groups), len(series), i)
        heights = [0.0 if m is None else m for m in means]
        ax.bar(x, heights, width, yerr=stds, capsize=3, label=label)
    ax.set_xticks(np.arange(len(groups)), groups, rotation=20, fontsize=8)
    ax.legend(fontsize=8)


def _mark_diverged(
    ax, series: dict[str, tuple[list[float | None], list[float]]], diverged: dict[str, list[int]], y: float
) -> None:
    """Name the diverged seeds on the plot: "diverged" where every seed of a cell diverged (no bar), "N diverged"
    above a bar that stands for the other seeds."""
    for i, (column, (means, stds)) in enumerate(series.items()):
        x, _ = _bar_positions(len(means), len(series), i)
        for position, mean, std, count in zip(x, means, stds, diverged[column], strict=True):
            if mean is None:
                ax.text(
                    position, y, "diverged", rotation=90, ha="center", va="bottom", fontsize=8, color="red"
                )
            elif count:
                top = min(mean + std, 99)
                ax.text(
                    position,
                    top,
                    f"{count} div.",
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    color="red",
                )


def write_plots(results: dict[str, Any], folder: Path) -> dict[str, str]:
    """Every PNG the report shows; returns {analysis: file name}."""
    written: dict[str, str] = {}
    students = _students(results)
    runs, columns, gain_columns = figure1(results)

    def accuracy(ax) -> None:
        series, diverged = {}, {}
        for column in columns:
            cells = [
                (_in_column(runs, s, column), mean_accuracy(_in_column(runs, s, column))) for s in students
            ]
            series[column] = (
                [100 * acc[0] if acc else (None if cell else 0.0) for cell, acc in cells],
                [100 * acc[1] if acc else 0.0 for _, acc in cells],
            )
            diverged[column] = [sum(not converged(r) for r in cell) for cell, _ in cells]
        _bars(ax, students, series)
        ax.set_ylabel("test accuracy (%)")
        low = min((m for means, _ in series.values() for m in means if m), default=0)
        _mark_diverged(ax, series, diverged, max(0, low - 10) + 1)
        ax.set_ylim(max(0, low - 10), 100)
        ax.set_title("Students on the synthetic set: baseline vs ELF")

    _figure(folder / "accuracy.png", accuracy, (1.6 * len(students) + 2, 3.6))
    written["accuracy"] = "accuracy.png"
    if gain_columns:
        paired = baselines(results)

        def gains(ax) -> None:
            series = {}
            for column in gain_columns:
                g = [paired_gain(_in_column(runs, s, column), paired) for s in students]
                series[column] = ([100 * x[0] if x[2] else 0 for x in g], [100 * x[1] for x in g])
            _bars(ax, students, series)
            ax.axhline(0, color="black", linewidth=0.8)
            ax.set_ylabel("gain over baseline (points)")
            ax.set_title("What ELF buys each student")

        _figure(folder / "gains.png", gains, (1.6 * len(students) + 2, 3.6))
        written["gains"] = "gains.png"
    grid = lambda_grid(results)
    if grid:
        fronts, rears, cells = grid

        def heatmap(ax) -> None:
            values = np.array([[100 * np.nanmean(cells[(f, r)]) for r in rears] for f in fronts])
            image = ax.imshow(values, cmap="RdYlGn", aspect="auto")
            ax.set_xticks(range(len(rears)), [str(r) for r in rears])
            ax.set_yticks(range(len(fronts)), [str(f) for f in fronts])
            ax.set_xlabel("λ_rear")
            ax.set_ylabel("λ_front")
            for i in range(len(fronts)):
                for j in range(len(rears)):
                    ax.text(j, i, f"{values[i, j]:+.1f}", ha="center", va="center", fontsize=8)
            ax.figure.colorbar(image, ax=ax, label="mean gain (points)")
            ax.set_title("ELF gain over λ_front x λ_rear")

        _figure(folder / "lambda_grid.png", heatmap, (5, 4))
        written["lambda_grid"] = "lambda_grid.png"
    for axis in ("teacher_epoch", "layer", "feature_loss", "view_policy"):
        study = axis_study(results, axis)
        if not study:
            continue
        values, table = study

        def lines(ax, values=values, table=table, axis=axis) -> None:
            for student, per_value in table.items():
                means = {i: mean_accuracy(per_value[v][0]) for i, v in enumerate(values) if v in per_value}
                xs = [i for i, acc in means.items() if acc is not None]
                ax.plot(xs, [100 * means[i][0] for i in xs], marker="o", label=student)
            ax.set_xticks(range(len(values)), [str(v) for v in values])
            ax.set_xlabel(axis)
            ax.set_ylabel("test accuracy (%)")
            ax.legend(fontsize=8)
            ax.set_title(AXIS_TITLES[axis].split(" (")[0])

        _figure(folder / f"{axis}.png", lines, (5, 3.6))
        written[axis] = f"{axis}.png"
    return written
