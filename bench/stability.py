"""Stability of ELF students: the default config's student grid over many seeds, on the default store, per arm.

    python bench/stability.py [--config default] [--seeds 10] [--precision fp32|bf16|auto]
                              [--arm LABEL=KEY=VALUE[;KEY=VALUE...]] ... [--elf-only] [--out runs/stability]

The store is the one the config makes (distill, teacher and extract of `--config` at `--precision`, built once in
OUT/PRECISION/base; `auto` is resolved first). Each arm (overriding `students.*` keys only) (default: the config as it is, labelled `default`) is the config's grid with the arm's
overrides and seeds 0..N-1, trained from that store in OUT/PRECISION/LABEL with `students.on_diverge: record`;
finished cells are kept, so an interrupted bench continues where it stopped. Baseline cells whose cache key equals
one an earlier arm finished are taken from it, not retrained. Prints, per arm:

    ratio diverged_cells_over_cells VALUE arm=LABEL precision=P    (ELF cells whose loss became NaN/Inf; goal 0)
    ratio collapsed_cells_over_cells VALUE arm=LABEL precision=P   (ELF cells that stayed finite but ended at no
                                                                    more than twice chance accuracy)
    acc LABEL STUDENT ARM MEAN ± STD (n=..., d diverged) gain GAIN ± STD    (test accuracy %, paired gain)

and the seconds of student training. Example (the comparison of the stabilising options):

    python bench/stability.py --precision bf16 --arm 'ce=students.feature_losses=ce' \\
        --arm 'kl=students.feature_losses=kl' --arm 'ce_clip=students.feature_losses=ce;students.grad_clip=5'
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from arms import build_store, parse_arm, train_arm

from elfdd.pipeline import stages
from elfdd.pipeline.report import arm, baselines, converged, figure1, mean_accuracy, paired_gain
from elfdd.pipeline.training import resolve_device, resolve_precision


def train_stability_arm(
    out: Path, store: Path, label: str, overrides: list[str], args, done: list
) -> stages.Run:
    seeds = ",".join(str(s) for s in range(args.seeds))
    sets = [f"precision={args.precision}", *overrides, f"students.seeds=[{seeds}]"]
    if args.elf_only:
        sets.append("students.loss_modes=[front_rear_task]")
    return train_arm(out / label, args.config, store, label, sets, done)


def summarize_arm(run: stages.Run, label: str, precision: str) -> None:
    results = json.loads(run.dir.results.read_text())
    elf = [r for r in results["runs"] if r["mode"] != "baseline"]
    diverged = [r for r in elf if not converged(r)]
    print(
        f"ratio diverged_cells_over_cells {len(diverged) / max(1, len(elf)):.3f} arm={label} "
        f"precision={precision} ({len(diverged)} of {len(elf)} ELF cells)"
    )
    for r in diverged:
        print(f"diverged {label} {r['cell']}: {r['diverged']}")
    # A run that stayed finite but ended at no better than twice chance has blown up all the same.
    chance = 1 / num_classes(results)
    collapsed = [r for r in elf if converged(r) and r["test_acc"] <= 2 * chance]
    print(
        f"ratio collapsed_cells_over_cells {len(collapsed) / max(1, len(elf)):.3f} arm={label} "
        f"precision={precision} (finite, test accuracy <= {200 * chance:.0f} %: {len(collapsed)} of {len(elf)})"
    )
    for r in collapsed:
        print(f"collapsed {label} {r['cell']}: {100 * r['test_acc']:.1f} %")
    runs, columns, _ = figure1(results)
    paired = baselines(results)
    seconds = sum(r["train_seconds"] for r in results["runs"])
    for student in dict.fromkeys(r["student"] for r in runs):
        for column in columns:
            cell = [r for r in runs if r["student"] == student and arm(r) == column]
            if not cell:
                continue
            mean, std = mean_accuracy(cell) or (float("nan"), float("nan"))
            ok = sum(converged(r) for r in cell)
            gain = paired_gain(cell, paired) if column != "baseline" else None
            text = f"acc {label} {student} {column} {100 * mean:.2f} ± {100 * std:.2f} (n={ok}"
            text += f", {len(cell) - ok} diverged)" if len(cell) > ok else ")"
            if gain and gain[2]:
                text += f" gain {100 * gain[0]:+.2f} ± {100 * gain[1]:.2f}"
            print(text)
    print(f"# {label}: {len(results['runs'])} runs, {seconds:.0f} s of student training")


def num_classes(results: dict) -> int:
    from elfdd.store.reader import FeatureStore

    return int(FeatureStore(results["config"]["students"]["store"]).meta["num_classes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 (default 10)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--arm", action="append", default=[], help="LABEL=KEY=VALUE[;KEY=VALUE...]")
    parser.add_argument("--elf-only", action="store_true", help="train only the ELF cells (no baselines)")
    parser.add_argument("--out", default="runs/stability")
    args = parser.parse_args()
    args.precision = resolve_precision(resolve_device("auto"), args.precision)
    arms = [parse_arm(a) for a in args.arm] or [("default", [])]
    out = Path(args.out) / args.precision
    base, _ = build_store(out / "base", args.config, [f"precision={args.precision}"])
    done: list[stages.Run] = []
    for label, overrides in arms:
        done.append(train_stability_arm(out, base.dir.store, label, overrides, args, done))
    for (label, _), run in zip(arms, done, strict=True):
        summarize_arm(run, label, args.precision)


if __name__ == "__main__":
    main()
