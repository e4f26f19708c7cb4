"""report.md's tables: the cross-architecture table (baseline vs ELF per student with paired gains), one table per
varied grid axis and the lambda_front x lambda_rear grid."""

from __future__ import annotations

from typing import Any

from .results import (
    arm,
    at_reference,
    axes_of,
    baselines,
    converged,
    elf_runs,
    in_column,
    mean_accuracy,
    paired_gain,
    students_of,
)


def pct(mean: float, std: float, n: int = 2) -> str:
    """An accuracy in percent with its spread; one seed has none to show."""
    return f"{100 * mean:.2f}" if n == 1 else f"{100 * mean:.2f} ± {100 * std:.2f}"


def gain_text(g: tuple[float, float, int]) -> str:
    if not g[2]:
        return "–"
    return f"{100 * g[0]:+.2f}" if g[2] == 1 else f"{100 * g[0]:+.2f} ± {100 * g[1]:.2f}"


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def figure1(results: dict[str, Any]) -> tuple[list[dict], list[str], list[str]]:
    """Figure 1's runs (every mode and view policy, the other axes at the reference), its columns and the columns
    with a gain over the baseline."""
    runs = [r for r in results["runs"] if at_reference(r, results["reference"], free=("view_policy",))]
    columns = list(dict.fromkeys(arm(r) for r in runs))
    gain_columns = [c for c in columns if c != "baseline"] if baselines(results) else []
    return runs, columns, gain_columns


def cell_text(cell: list[dict], gain: tuple[float, float, int] | None = None) -> str:
    """A table cell: accuracy over the converged seeds (with the paired gain), and the diverged seeds by name of
    their fate, never as a number."""
    if not cell:
        return "–"
    accuracy = mean_accuracy(cell)
    diverged = sum(not converged(r) for r in cell)
    if accuracy is None:
        return f"**diverged** ({diverged} of {len(cell)})"
    text = f"{pct(*accuracy, len(cell) - diverged)}" + (
        f" ({gain_text(gain)})" if gain is not None else f" (n={len(cell) - diverged})"
    )
    return text + (f", **{diverged} diverged**" if diverged else "")


def main_table(results: dict[str, Any]) -> list[str]:
    """Figure 1: every student under every mode and view policy, the other axes at the reference; gains paired."""
    runs, columns, gain_columns = figure1(results)
    paired = baselines(results)
    rows = []
    for student in students_of(results):
        row = [student]
        for column in columns:
            row.append(cell_text(in_column(runs, student, column)))
        for column in gain_columns:
            row.append(gain_text(paired_gain(in_column(runs, student, column), paired)))
        rows.append(row)
    return markdown_table(["student", *columns, *(f"gain {c}" for c in gain_columns)], rows)


def axis_study(results: dict[str, Any], axis: str) -> tuple[list[Any], dict[str, dict[Any, tuple]]] | None:
    """Per student and value of ``axis`` (the ELF mode, other axes at the reference): (mean, std, gain)."""
    runs = elf_runs(results, (axis,))
    values = sorted({axes_of(r)[axis] for r in runs} - {None}, key=str)
    if len(values) < 2:
        return None
    paired = baselines(results)
    table: dict[str, dict[Any, tuple]] = {}
    for student in students_of(results):
        for value in values:
            cell = [r for r in runs if r["student"] == student and axes_of(r)[axis] == value]
            if cell:
                table.setdefault(student, {})[value] = (cell, paired_gain(cell, paired))
    return values, table


def lambda_grid(results: dict[str, Any]) -> tuple[list[float], list[float], dict[tuple, list]] | None:
    """ELF Fig. 3: per (lambda_front, lambda_rear), the paired gain of every student."""
    runs = elf_runs(results, ("lambda_front", "lambda_rear"))
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
                paired_gain([r for r in chosen if r["student"] == s], paired)[0] for s in students_of(results)
            ]
    return fronts, rears, cells
