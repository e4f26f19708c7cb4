"""The scores of results.json recomputed by hand (IOR, HLR, LRS as DD-Ranking defines them), and the yardstick and
full-data references that feed them, through the pipeline on tiny data."""

from __future__ import annotations

import json
import math

import pytest
from helpers import TINY_RUN

from elfdd.core.errors import BadInput
from elfdd.pipeline import stages
from elfdd.pipeline.config import load_config
from elfdd.pipeline.report import scores
from elfdd.pipeline.synthetic import load_synthetic

REFERENCE = {"view_policy": "replay"}


def _run(student: str, mode: str, seed: int, acc: float) -> dict:
    policy = None if mode == "baseline" else "replay"
    loss_mode = "task" if mode == "baseline" else "front_rear_task"
    return {"student": student, "mode": mode, "seed": seed, "test_acc": acc, "view_policy": policy,
            "loss": {"mode": loss_mode}}  # fmt: skip


def _results(runs: list[dict]) -> dict:
    return {"config": {"distill": {"arch": "convnet"}}, "reference": REFERENCE, "runs": runs}


SET = _results(
    [
        _run("convnet", "baseline", 0, 0.80),
        _run("convnet", "baseline", 1, 0.70),
        _run("vgg11", "baseline", 0, 0.60),
        _run("vgg11", "baseline", 1, 0.64),
        _run("vgg11", "elf", 0, 0.70),
        _run("vgg11", "elf", 1, 0.66),
    ]
)
RANDOM = _results(
    [
        _run("convnet", "baseline", 0, 0.75),
        _run("convnet", "baseline", 1, 0.71),
        _run("vgg11", "baseline", 0, 0.50),
        _run("vgg11", "baseline", 1, 0.60),
        _run("vgg11", "elf", 0, 0.65),
        # seed 1 of vgg11 elf is missing: that seed of the set is not paired
    ]
)
FULL = {"convnet": 0.90, "vgg11": 0.92}


def _by(entries: list[dict]) -> dict:
    return {(e["student"], e["arm"]): e for e in entries}


def test_ior_is_the_set_minus_the_random_subset_paired_by_student_arm_and_seed():
    ior = _by(scores(SET, RANDOM)["ior"])
    assert set(ior) == {("convnet", "baseline"), ("vgg11", "baseline"), ("vgg11", "elf (replay)")}
    assert ior[("convnet", "baseline")]["mean"] == pytest.approx((0.05 - 0.01) / 2)
    assert ior[("convnet", "baseline")]["std"] == pytest.approx(0.03)  # np.std of 0.05 and -0.01
    assert ior[("vgg11", "baseline")]["mean"] == pytest.approx((0.10 + 0.04) / 2)
    elf = ior[("vgg11", "elf (replay)")]
    assert elf["mean"] == pytest.approx(0.05) and elf["n"] == 1


def test_hlr_is_the_full_data_accuracy_minus_the_baseline_per_seed():
    hlr = _by(scores(SET, None, FULL)["hlr"])
    assert set(hlr) == {("convnet", "baseline"), ("vgg11", "baseline")}  # hard labels only
    assert hlr[("vgg11", "baseline")]["mean"] == pytest.approx(((0.92 - 0.60) + (0.92 - 0.64)) / 2)
    assert hlr[("convnet", "baseline")]["std"] == pytest.approx(0.05)


def test_lrs_follows_dd_ranking_s_formula_per_seed():
    lrs = _by(scores(SET, RANDOM, FULL)["lrs"])

    def by_hand(ior: float, hlr: float) -> float:
        alpha = 0.5 * ior - 0.5 * hlr
        return (math.exp(alpha) - math.exp(-1)) / (math.exp(1) - math.exp(-1))

    # vgg11 under ELF, seed 0: IOR 0.70 - 0.65, HLR 0.92 - 0.60 (its baseline at that seed)
    assert lrs[("vgg11", "elf (replay)")]["mean"] == pytest.approx(by_hand(0.05, 0.32))
    base = [by_hand(0.10, 0.32), by_hand(0.04, 0.28)]
    assert lrs[("vgg11", "baseline")]["mean"] == pytest.approx(sum(base) / 2)
    assert all(0 <= e["mean"] <= 1 for e in lrs.values())


def test_scores_without_a_yardstick_or_references_are_only_the_gap():
    assert set(scores(SET)) == {"architecture_gap"}
    assert set(scores(SET, RANDOM)) == {"architecture_gap", "ior"}
    assert set(scores(SET, RANDOM, FULL)) == {"architecture_gap", "ior", "hlr", "lrs"}


def _toy(toy_npz, *overrides: str):
    return load_config(None, ["data.name=npz", f"data.path={toy_npz}", *TINY_RUN, *overrides])


def test_a_yardstick_cannot_train_from_another_store_or_measure_a_random_set(toy_npz, tmp_path):
    with pytest.raises(BadInput, match="students.yardstick needs this run's teachers"):
        _toy(toy_npz, "students.yardstick=random", f"students.store={tmp_path}")
    with pytest.raises(BadInput, match="itself a random subset"):
        _toy(toy_npz, "students.yardstick=random", "distill.method=random")


@pytest.fixture(scope="module")
def scored_run(toy_npz, tmp_path_factory):
    """A whole flow run with the yardstick and the full-data references (2-epoch everything)."""
    from elfdd.flows import flows

    shared = tmp_path_factory.mktemp("full_data")
    config = _toy(
        toy_npz,
        "students.archs=[convnet,mlp]",
        "students.yardstick=random",
        f"students.full_data={{epochs: 1, batch_size: 32, dir: {shared}}}",
    )
    root = tmp_path_factory.mktemp("run") / "run"
    flows.elf_pipeline(str(root), config)
    return stages.open_run(root), shared


def test_the_yardstick_is_a_random_subset_of_the_set_s_ipc_evaluated_by_the_same_teachers(scored_run):
    run, _ = scored_run
    yardstick = stages.open_run(run.dir.yardstick)
    own, rand = load_synthetic(run.dir.synthetic), load_synthetic(yardstick.dir.synthetic)
    assert rand.method == "random" and rand.ipc == own.ipc == 2
    assert rand.labels.tolist() == own.labels.tolist()
    # the same teacher weights: the imported checkpoints are byte-identical state dicts
    main = json.loads((run.dir.teacher_dir("teacher") / "manifest.json").read_text())["checkpoints"]
    imported = json.loads((yardstick.dir.teacher_dir("teacher") / "manifest.json").read_text())["checkpoints"]
    assert [c["sha256"] for c in main] == [c["sha256"] for c in imported]
    assert [c["test_acc"] for c in main] == [c["test_acc"] for c in imported]
    assert {p.name for p in yardstick.dir.students.glob("*.json")} == {
        p.name for p in run.dir.students.glob("*.json")
    }


def test_results_carry_every_score_recomputable_from_the_two_runs(scored_run):
    run, shared = scored_run
    results = json.loads(run.dir.results.read_text())
    yardstick = json.loads((run.dir.yardstick / "results.json").read_text())
    assert set(results["full_data"]) == {"convnet", "mlp"}
    assert len(list(shared.iterdir())) == 2  # one reference per architecture, in the shared folder
    assert results["scores"] == json.loads(json.dumps(scores(results, yardstick, results["full_data"])))
    assert {(e["student"], e["arm"]) for e in results["scores"]["ior"]} == {
        (s, a) for s in ("convnet", "mlp") for a in ("baseline", "elf (clean)")
    }
    report = run.dir.report.read_text()
    for title in ("Improvement over random (IOR)", "Hard-label recovery (HLR)", "Label-robust score (LRS)"):
        assert f"## {title}" in report


def test_full_data_references_are_kept_by_key_and_shared(scored_run, toy_npz, tmp_path, monkeypatch):
    run, shared = scored_run
    from elfdd.pipeline.teachers import full_data

    def refuse(*args, **kwargs):
        raise AssertionError("a kept reference was trained again")

    monkeypatch.setattr(full_data, "train_teacher", refuse)
    other = stages.prepare_run(tmp_path / "other", run.config)
    assert stages.stage_full_data(other) == json.loads(run.dir.results.read_text())["full_data"]
    longer = run.config.model_copy(deep=True)
    longer.students.full_data.epochs = 2  # another recipe: another key, so it would train
    with pytest.raises(AssertionError, match="trained again"):
        stages.stage_full_data(stages.prepare_run(tmp_path / "longer", longer))


def test_the_report_refuses_a_missing_yardstick(scored_run, tmp_path):
    run, _ = scored_run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(run.dir.root, copy, ignore=shutil.ignore_patterns("yardstick"))
    with pytest.raises(BadInput, match="yardstick's results"):
        stages.stage_report(stages.open_run(copy))


def test_the_report_names_the_grid_by_its_config_keys(scored_run):
    run, _ = scored_run
    line = next(
        x for x in run.dir.report.read_text().splitlines() if x.startswith("Student grid of this report")
    )
    assert "loss_modes ['task', 'front_rear_task']" in line and "feature_losses ['ce']" in line
    assert "teacher_epochs (default: each teacher's last extracted epoch)" in line and "None" not in line
