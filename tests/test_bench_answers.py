"""bench/methods.py answers the cross-method study's questions from the finished sets' results: seed-paired means
over ResNet18, VGG11 and AlexNet, and a verdict that says no where seed noise covers the difference."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))  # bench/methods.py imports its siblings by name
import methods  # noqa: E402


def _results(per_mode: dict[str, list[float]]) -> dict:
    """Runs of the three students x 3 seeds: ``per_mode[mode][seed]`` is each student's accuracy at that seed."""
    runs = [
        {"student": student, "mode": mode, "seed": seed, "test_acc": acc, "status": "ok"}
        for mode, by_seed in per_mode.items()
        for seed, acc in enumerate(by_seed)
        for student in methods.HARD
    ]
    return {"runs": runs}


def test_paired_means_and_verdicts():
    dm = _results({"baseline": [0.70, 0.71, 0.72], "elf": [0.72, 0.73, 0.74]})  # +2 points each seed
    mtt = _results({"baseline": [0.60, 0.65, 0.70], "elf": [0.66, 0.71, 0.76]})  # +6 points each seed
    gain = methods.mean_gain(mtt, "elf")
    assert gain[0] == pytest.approx(0.06) and gain[1] == pytest.approx(0.0, abs=1e-12) and gain[2] == 3
    # between sets the seeds pair: MTT's baselines spread by 10 points, their differences to DM's do not matter
    assert methods.spread(
        methods.between(methods.seed_means(mtt, "elf", "baseline"), methods.seed_means(dm, "elf", "baseline"))
    )[0] == pytest.approx(0.04)
    assert methods.verdict((0.02, 0.01, 3)) == "yes"
    assert methods.verdict((0.01, 0.02, 3)) == "no: within seed noise"
    assert methods.verdict((-0.03, 0.01, 3)) == "no, the reverse"
    lines = "\n".join(methods.answer_lines({"dm_ipc1": dm, "mtt_ipc1": mtt}))
    assert "every set? yes" in lines and "larger on mtt_ipc1 than on dm_ipc1? yes" in lines


def test_metadd_questions_and_a_set_elf_does_not_lift():
    dm = _results({"baseline": [0.78, 0.78, 0.78], "elf": [0.81, 0.81, 0.81]})
    # MetaDD: the baseline 0.5 point lower, ELF on it 1 point over its own baseline and 2.5 under ELF alone
    metadd = _results({"baseline": [0.775, 0.775, 0.775], "elf": [0.785, 0.785, 0.785]})
    noisy = _results({"baseline": [0.70, 0.70, 0.70], "elf": [0.73, 0.67, 0.70]})
    lines = methods.answer_lines({"dm_ipc10": dm, "dm_ipc10_metadd": metadd, "random_ipc1": noisy})
    text = "\n".join(lines)
    assert "every set? no" in text and "(not on random_ipc1)" in text
    assert "baseline (dm_ipc10_metadd vs dm_ipc10)? no, the reverse: -0.50" in text
    assert "over ELF alone (dm_ipc10 under ELF): no, the reverse, -2.50" in text
    assert "over MetaDD alone (dm_ipc10_metadd's baseline): yes, +1.00" in text
