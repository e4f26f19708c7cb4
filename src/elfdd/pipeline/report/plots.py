"""The report's PNG plots: accuracy per student and arm, and one per varied grid axis, diverged runs marked."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ...core.io import save_figure
from .results import AXIS_TITLES, baselines, converged, in_column, mean_accuracy, paired_gain, students_of
from .tables import axis_study, figure1, lambda_grid

NUMERIC_AXES = ("teacher_epoch",)  # drawn as lines; the other axes' values are categories (bars)


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


def arm_colours(arms: Sequence[str]) -> dict[str, Any]:
    """One colour per arm (its place in ``arms``: every column of the report), the same in every plot."""
    import matplotlib

    palette = matplotlib.colormaps["tab10"]
    return {a: palette(i % 10) for i, a in enumerate(arms)}


def _bars(
    ax,
    groups: list[str],
    series: Mapping[str, tuple[Sequence[float | None], Sequence[float]]],
    colours: Mapping[str, Any] | None = None,
) -> None:
    """Grouped bars, coloured by ``colours`` where given; a None mean (every seed diverged) draws no bar (see
    :func:`_mark_diverged`)."""
    for i, (label, (means, stds)) in enumerate(series.items()):
        x, width = _bar_positions(len(groups), len(series), i)
        heights = [0.0 if m is None else m for m in means]
        colour = colours.get(label) if colours else None
        ax.bar(x, heights, width, yerr=stds, capsize=3, label=label, color=colour)
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
    students = students_of(results)
    runs, columns, gain_columns = figure1(results)
    colours = arm_colours(columns)
    classes = results["synthetic"].get("num_classes")

    def accuracy(ax) -> None:
        series, diverged = {}, {}
        for column in columns:
            cells = [
                (in_column(runs, s, column), mean_accuracy(in_column(runs, s, column))) for s in students
            ]
            series[column] = (
                [100 * acc[0] if acc else (None if cell else 0.0) for cell, acc in cells],
                [100 * acc[1] if acc else 0.0 for _, acc in cells],
            )
            diverged[column] = [sum(not converged(r) for r in cell) for cell, _ in cells]
        _bars(ax, students, series, colours)
        ax.set_ylabel("test accuracy (%)")
        low = min((m for means, _ in series.values() for m in means if m), default=0)
        if classes:  # chance: a student that learned nothing
            ax.axhline(100 / classes, color="grey", linestyle="--", linewidth=0.8)
            ax.text(len(students) - 0.5, 100 / classes, "chance", ha="right", va="bottom", fontsize=7)
            low = min(low, 100 / classes)
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
                g = [paired_gain(in_column(runs, s, column), paired) for s in students]
                series[column] = ([100 * x[0] if x[2] else 0 for x in g], [100 * x[1] for x in g])
            _bars(ax, students, series, colours)
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
    gaps = results.get("scores", {}).get("architecture_gap", [])
    if gaps:
        size = (3 + 2.2 * len({g["arm"] for g in gaps}), 1.2 + 0.5 * len({g["student"] for g in gaps}))
        _figure(folder / "architecture_gap.png", lambda ax: _gap_map(ax, gaps), size)
        written["architecture_gap"] = "architecture_gap.png"
    for axis in ("teacher_epoch", "layer", "feature_loss", "view_policy"):
        study = axis_study(results, axis)
        if not study:
            continue
        values, table = study

        def axis_plot(ax, values=values, table=table, axis=axis) -> None:
            """A numeric axis (the teacher epoch) as lines over its values; a categorical one as grouped bars."""
            accs = {
                student: [mean_accuracy(per_value[v][0]) if v in per_value else None for v in values]
                for student, per_value in table.items()
            }
            if axis in NUMERIC_AXES:
                for student, held in accs.items():
                    known = [(i, 100 * a[0]) for i, a in enumerate(held) if a is not None]
                    ax.plot([i for i, _ in known], [y for _, y in known], marker="o", label=student)
                ax.set_xticks(range(len(values)), [str(v) for v in values])
                ax.set_xlabel(axis)
                ax.legend(fontsize=8)
            else:
                series: dict[str, tuple[list[float | None], list[float]]] = {}
                for j, v in enumerate(values):
                    at_value = [held[j] for held in accs.values()]
                    series[str(v)] = (
                        [100 * a[0] if a else None for a in at_value],
                        [100 * a[1] if a else 0.0 for a in at_value],
                    )
                _bars(ax, list(accs), series)
            ax.set_title(AXIS_TITLES[axis].split(" (")[0])

        _figure(folder / f"{axis}.png", axis_plot, (5, 3.6))
        written[axis] = f"{axis}.png"
    return written


def _gap_map(ax, gaps: list[dict[str, Any]]) -> None:
    """Students x arms coloured by the architecture gap (points; green: at or above the distillation
    architecture), each cell with its number."""
    students = list(dict.fromkeys(g["student"] for g in gaps))
    arms = list(dict.fromkeys(g["arm"] for g in gaps))
    table = {(g["student"], g["arm"]): 100 * g["mean"] for g in gaps}
    values = np.array([[table.get((s, a), np.nan) for a in arms] for s in students])
    limit = max(1.0, float(np.nanmax(np.abs(values))))
    image = ax.imshow(values, cmap="RdYlGn_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(arms)), arms, fontsize=8)
    ax.set_yticks(range(len(students)), students, fontsize=8)
    for i in range(len(students)):
        for j in range(len(arms)):
            if not np.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:+.1f}", ha="center", va="center", fontsize=8)
    ax.figure.colorbar(image, ax=ax, label="gap (points)")
    ax.set_title("Architecture gap: distillation architecture's baseline minus the student")
