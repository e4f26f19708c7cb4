"""Distil the synthetic sets of the cross-method study (DM, DSA, MTT, MetaDD; issue 35), each in its own run
directory, resumably, and write down each one's budget, its time and its published reference.

    nohup .venv/bin/python bench/sets.py --out bench/sets --threads 1 >> bench/sets/sets.log 2>&1 &
    .venv/bin/python bench/sets.py --out bench/sets --sets dm_ipc1     # one set

Each set is the distill stage of ``src/elfdd/configs/study.yaml`` (the study's data, seed and distillation ConvNet) with the
set's overrides, in ``OUT/<name>/``: a finished set is kept (its stage key), a killed one continues from its
resume point (``distill.resume_every``). After every set, ``OUT/sets.json`` records per set its overrides, the
seconds the distillation took (only when it ran in this invocation; a kept set keeps the recorded time), its
content sha256, the machine and the published ConvNet accuracy on Fashion-MNIST where one exists.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import torch

from elfdd.pipeline import stages
from elfdd.pipeline.config import load_config
from elfdd.pipeline.synthetic import load_synthetic
from elfdd.pipeline.training import describe_machine

# name -> (distill overrides, published ConvNet test accuracy % on Fashion-MNIST, its source)
# MTT: the MTT paper's nearest setting is CIFAR-10's (10 classes, the same IPCs): IPC 1 N=50, M=2, T+=2, lr_img 1000,
# lr_lr 1e-7; IPC 10 N=30, M=2, T+=20, lr_img 1000, lr_lr 1e-5; syn lr 0.01 (shared/notes/method.md, D.5). No ZCA:
# the study's teachers and stores live in the normalised space. Experts as the reference records them (ConvNet on
# all 60,000 images, DSA, lr 0.01, batch 256), 5 of them (the reference: 100) and T+ + M epochs each.
MTT_IPC1 = ["distill.mtt.syn_steps=50", "distill.mtt.expert_steps=2", "distill.mtt.max_start_epoch=2"]
MTT_IPC1 += [
    "distill.lr_img=1000",
    "distill.mtt.lr_lr=1e-7",
    "distill.mtt.experts=5",
    "distill.mtt.expert_epochs=4",
]
# IPC 10: T+ = 10 (the paper: 20) and 3 experts of 12 epochs, because an expert epoch takes 3.2 min on one thread
# here (sets.log, 2026-12-07): 5 experts of 22 epochs are 5.9 h, 3 of 12 are 1.9 h.
MTT_IPC10 = ["distill.mtt.syn_steps=30", "distill.mtt.expert_steps=2", "distill.mtt.max_start_epoch=10"]
MTT_IPC10 += [
    "distill.lr_img=1000",
    "distill.mtt.lr_lr=1e-5",
    "distill.mtt.experts=3",
    "distill.mtt.expert_epochs=12",
]
# MetaDD at a real budget: DM IPC 10 at the study's 1000 iterations, its auxiliaries (the study's three students)
# trained on all 60,000 images for 5 epochs each (elfdd's default: 1 epoch on 2,000 images).
METADD = ["distill.metadd.enabled=true", "distill.metadd.aux_subset=60000", "distill.metadd.aux_epochs=5"]

SETS: dict[str, tuple[list[str], float | None, str]] = {
    "dm_ipc1": (["distill.ipc=1"], None, "the DM paper reports no Fashion-MNIST figure"),
    "dsa_ipc1": (["distill.method=dsa", "distill.ipc=1"], 70.6, "DSA paper, Table 1 (DC: 70.5)"),
    "mtt_ipc1": (
        ["distill.method=mtt", "distill.ipc=1", *MTT_IPC1],
        None,
        "the MTT paper has no Fashion-MNIST",
    ),
    "mtt_ipc10": (
        ["distill.method=mtt", "distill.ipc=10", *MTT_IPC10],
        None,
        "the MTT paper has no Fashion-MNIST",
    ),
    # IPC 10 at the reference's 1000 iterations is about 22 hours of this CPU: bench/gpu.sh distils it on a lent GPU.
    "dsa_ipc10": (["distill.method=dsa", "distill.ipc=10"], 84.6, "DSA paper, Table 1 (DC: 82.3)"),
    "dm_ipc10_metadd": (["distill.ipc=10", *METADD], None, "no published MetaDD figure on Fashion-MNIST"),
    # The yardstick (DD-Ranking): class-balanced random real images, the study's seed; nothing learned.
    "random_ipc1": (["distill.method=random", "distill.ipc=1"], None, "a random subset: no published figure"),
    "random_ipc10": (
        ["distill.method=random", "distill.ipc=10"],
        None,
        "a random subset: no published figure",
    ),
}


def distil(out: Path, name: str, overrides: list[str], config_path: str) -> dict:
    config = load_config(config_path, overrides)
    run = stages.prepare_run(out / name, config)
    started = time.perf_counter()
    stages.stage_distill(run)
    seconds = time.perf_counter() - started
    synthetic = load_synthetic(run.dir.synthetic)
    return {
        "overrides": overrides,
        "method": config.distill.method,
        "ipc": config.distill.ipc,
        "iterations": config.distill.iterations,
        "sha256": synthetic.sha256,
        "distill_seconds_recorded": synthetic.extra.get("seconds"),
        "seconds_this_invocation": round(seconds, 1),
        "machine": f"{describe_machine(run.device)}, {torch.get_num_threads()} torch threads",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench/sets")
    parser.add_argument("--config", default="study")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a config override")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("elfdd").setLevel(logging.INFO)  # the distillation's progress lines
    names = [n for n in args.sets.split(",") if n]
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        raise SystemExit(f"--sets: unknown {unknown}; known: {', '.join(SETS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    record = out / "sets.json"
    for name in names:
        overrides, reference, source = SETS[name]
        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} set {name}: {' '.join(overrides)}", flush=True)
        result = distil(out, name, [*overrides, f"threads={args.threads}", *args.set], args.config)
        done = (
            json.loads(record.read_text()) if record.exists() else {}
        )  # read again: another invocation may add sets
        done[name] = {**result, "reference_convnet_acc": reference, "reference": source}
        record.write_text(json.dumps(done, indent=1) + "\n")
        # the set once made needs its expert trajectories no more (kept in git while it was distilled: hundreds of MB)
        shutil.rmtree(out / name / "experts", ignore_errors=True)
        print(f"# set {name}: done ({result['distill_seconds_recorded']} s of distillation)", flush=True)


if __name__ == "__main__":
    main()
