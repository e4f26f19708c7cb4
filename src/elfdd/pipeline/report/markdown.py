"""report.md: the tables and sections in the order a reader needs them."""

from __future__ import annotations

from typing import Any

import numpy as np

from .results import AXIS_TITLES
from .sections import (
    diverged_section,
    loss_mode_section,
    pairing_section,
    protocol_text,
    provenance,
    reference_text,
    scores_section,
    source_text,
    teachers_text,
)
from .tables import axis_study, cell_text, lambda_grid, main_table, markdown_table


def render_markdown(results: dict[str, Any], plots: dict[str, str]) -> str:
    cfg, syn, ref = results["config"], results["synthetic"], results["reference"]
    lines = [
        "# elfdd cross-architecture report",
        "",
        f"Synthetic set: {syn['method'].upper()}, IPC {syn['ipc']}, sha256 `{syn['sha256'][:16]}`; "
        f"dataset {cfg['data']['name']}; distilled with {cfg['distill']['arch']}. "
        f"{teachers_text(cfg)}. {protocol_text(results)}{source_text(syn)}",
        "",
        "Test accuracy (%) on the real test split, mean ± std over seeds (np.std); gain = paired difference per seed "
        "against the same student's baseline. Reference cell (every table varies one axis from it): "
        + ", ".join(f"{k} {reference_text(v)}" for k, v in ref.items())
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
        rows = [[s, *(cell_text(*table[s][v]) if v in table[s] else "–" for v in values)] for s in table]
        lines += ["", f"## {AXIS_TITLES[axis]}", "", "Accuracy (gain over the baseline).", ""]
        lines += markdown_table(["student", *map(str, values)], rows)
        if axis in plots:
            lines += ["", f"![{axis}](plots/{plots[axis]})"]
    lines += scores_section(results)
    lines += pairing_section(results)
    lines += ["", *loss_mode_section(results)]
    lines += diverged_section(results)
    lines += provenance(results)
    return "\n".join(lines)
