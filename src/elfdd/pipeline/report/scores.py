"""The scores of results.json (``scores``), each per student and arm at the reference cell, paired by seed:

    architecture_gap   elfdd's: the distillation architecture's baseline minus the student under the arm
    ior                DD-Ranking's improvement over random: the set minus the random real subset of the same IPC
                       under the same student, arm and seed (``students.yardstick: random``)
    hlr                DD-Ranking's hard-label recovery: the student's full-data accuracy minus its baseline (hard
                       labels) on the set (``students.full_data``)
    lrs                DD-Ranking's label-robust score from the arm's IOR and the student's HLR

DD-Ranking (github.com/NUS-HPC-AI-Lab/DD-Ranking, ddranking/metrics/hard_label.py and soft_label.py,
``compute_metrics``): per evaluation ``hlr = full - syn_hard``, ``ior = syn_any - random_any``,
``alpha = w * ior - (1 - w) * hlr`` (w = ``lrs_lambda``, 0.5), ``lrs = (e^alpha - e^-1) / (e - e^-1)``, then mean and
np.std over the evaluations. Here an evaluation is a seed. Accuracies are fractions, so that alpha lies in [-1, 1]
and LRS in [0, 1] as DD-Ranking's README defines them (its code passes percentages, which puts alpha outside
[-1, 1]); its hard_label.py appends each LRS twice, which is not repeated here. Every entry is
``{student, arm, mean, std, n}`` in fractions of accuracy (LRS: a score in [0, 1]).
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from .results import arm, at_reference, converged

LRS_WEIGHT = 0.5  # DD-Ranking's lrs_lambda (its leaderboard's w)


def per_seed(results: dict[str, Any]) -> dict[tuple[str, str, int], float]:
    """Test accuracy by (student, arm, seed) of the converged runs at the reference cell (any view policy)."""
    return {
        (r["student"], arm(r), r["seed"]): r["test_acc"]
        for r in results["runs"]
        if converged(r) and at_reference(r, results["reference"], ("view_policy",))
    }


def _entries(values: dict[tuple[str, str], list[float]]) -> list[dict[str, Any]]:
    return [
        {"student": s, "arm": a, "mean": float(np.mean(v)), "std": float(np.std(v)), "n": len(v)}
        for (s, a), v in values.items()
        if v
    ]


def architecture_gaps(results: dict[str, Any]) -> list[dict[str, Any]]:
    """gap = (the distillation architecture's baseline accuracy) - (the student's accuracy under the arm), paired by
    seed. 0 or below: the set no longer favours its distillation architecture (the ELF paper's "unfettered"
    evaluation). Empty when the distillation architecture is not among the students."""
    accs = per_seed(results)
    distilled_with = results["config"].get("distill", {}).get("arch")
    own = {seed: acc for (s, a, seed), acc in accs.items() if s == distilled_with and a == "baseline"}
    gaps: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (student, column, seed), acc in accs.items():
        if seed in own:
            gaps[(student, column)].append(own[seed] - acc)
    return _entries(gaps)


def improvement_over_random(results: dict[str, Any], yardstick: dict[str, Any]) -> list[dict[str, Any]]:
    """IOR = (the set's accuracy) - (the random subset's) under the same student, arm and seed."""
    random_accs = per_seed(yardstick)
    ior: dict[tuple[str, str], list[float]] = defaultdict(list)
    for key, acc in per_seed(results).items():
        if key in random_accs:
            ior[key[:2]].append(acc - random_accs[key])
    return _entries(ior)


def hard_label_recovery(results: dict[str, Any], full_data: dict[str, float]) -> list[dict[str, Any]]:
    """HLR = (the student's accuracy trained on the whole training set) - (its baseline on the set), per seed; the
    arm is always ``baseline`` (hard labels)."""
    hlr: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (student, column, _), acc in per_seed(results).items():
        if column == "baseline" and student in full_data:
            hlr[(student, column)].append(full_data[student] - acc)
    return _entries(hlr)


def label_robust_scores(
    results: dict[str, Any],
    yardstick: dict[str, Any],
    full_data: dict[str, float],
    weight: float = LRS_WEIGHT,
) -> list[dict[str, Any]]:
    """LRS per student and arm: per seed alpha = w IOR(arm) - (1 - w) HLR, LRS = (e^alpha - e^-1) / (e - e^-1)."""
    accs, random_accs = per_seed(results), per_seed(yardstick)
    lrs: dict[tuple[str, str], list[float]] = defaultdict(list)
    for (student, column, seed), acc in accs.items():
        hard = accs.get((student, "baseline", seed))
        rand = random_accs.get((student, column, seed))
        if student not in full_data or hard is None or rand is None:
            continue
        alpha = weight * (acc - rand) - (1 - weight) * (full_data[student] - hard)
        lrs[(student, column)].append((math.exp(alpha) - math.exp(-1)) / (math.e - math.exp(-1)))
    return _entries(lrs)


def scores(
    results: dict[str, Any],
    yardstick: dict[str, Any] | None = None,
    full_data: dict[str, float] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Every score the run's cells allow: the gap always, IOR with a yardstick, HLR with full-data accuracies, LRS
    with both."""
    out = {"architecture_gap": architecture_gaps(results)}
    if yardstick is not None:
        out["ior"] = improvement_over_random(results, yardstick)
    if full_data:
        out["hlr"] = hard_label_recovery(results, full_data)
    if yardstick is not None and full_data:
        out["lrs"] = label_robust_scores(results, yardstick, full_data)
    return out
