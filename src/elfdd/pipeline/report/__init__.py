"""results.json and report.md: the cross-architecture table and the paper's analyses (gain per student,
lambda_front x lambda_rear, teacher epoch, teacher layer, loss mode, view policy), each with a PNG.

    results   the schema of results.json, summaries and the analyses (arms, paired gains, convergence)
    scores    the architecture gap and DD-Ranking's IOR, HLR and LRS
    tables    the markdown tables
    sections  the prose sections (teachers and pairing, loss modes, diverged runs, provenance)
    markdown  report.md in reading order
    plots     the PNGs
"""

from .markdown import render_markdown
from .plots import write_plots
from .results import (
    AXES,
    RUN_KEYS,
    arm,
    at_reference,
    baselines,
    build_results,
    converged,
    mean_accuracy,
    paired_gain,
    summary_value,
)
from .scores import scores
from .tables import figure1, gain_text, markdown_table

__all__ = [
    "AXES",
    "RUN_KEYS",
    "arm",
    "at_reference",
    "baselines",
    "build_results",
    "converged",
    "figure1",
    "gain_text",
    "markdown_table",
    "mean_accuracy",
    "paired_gain",
    "render_markdown",
    "scores",
    "summary_value",
    "write_plots",
]
