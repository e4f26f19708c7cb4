"""Why an un-normalised student diverges under the reference feature loss: the loss terms and the gradient norm of
one ELF cell, step by step, for each feature loss, on a run's store.

    python bench/grad_scale.py RUN_DIR [--student alexnet] [--losses ce,kl] [--epochs 40] [--seed 1]
                               [--policy replay] [--precision bf16|fp32]

Trains the cell as the students stage does (the run's config: lr, momentum, weight decay, DSA, the half-way
decay) and prints every 4th epoch `step LOSS EPOCH front .. rear .. task .. gradnorm ..`, then per loss
`max_gradnorm LOSS VALUE` (over the finite steps), `diverged LOSS at epoch E|no` and
`final_task_loss LOSS VALUE`, and `ratio max_gradnorm_ce_over_kl VALUE`.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from elfdd.models import adapter_pair, create_model
from elfdd.pipeline import stages
from elfdd.pipeline.students import Cell, elf_losses
from elfdd.pipeline.students.train import student_view
from elfdd.pipeline.training import autocast, seed_everything, sgd_with_half_decay
from elfdd.store.stream import ChunkShuffleSampler, feature_loader


def trace(run: stages.Run, config, loss: str, args: argparse.Namespace) -> tuple[float, float]:
    dataset = stages.open_student_dataset(run)
    students = config.students
    job = Cell(
        args.student, "front_rear_task", args.seed, args.policy, loss, 1.0, 1.0, dataset.epoch, dataset.layer
    )
    generator = seed_everything(args.seed)
    image_shape = dataset.image_shape
    model = create_model(args.student, image_shape[0], stages.data_for(config).num_classes, image_shape[-1])
    adapters = adapter_pair(model.feature_shape(image_shape), dataset.feature_shape)
    params = list(model.parameters()) + list(adapters.parameters())
    lr = students.lr_for(args.student)
    optimizer, scheduler = sgd_with_half_decay(
        params, lr, students.momentum, students.weight_decay, students.epochs
    )
    replay = args.policy == "replay"
    sampler = ChunkShuffleSampler(
        len(dataset), dataset.chunk, students.batch_size, args.seed, dataset.views if replay else 1
    )
    device, peak, losses, diverged = torch.device("cpu"), 0.0, {}, None
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        for images, teacher, labels, view_params in feature_loader(dataset, sampler):
            images = student_view(images, view_params, args.policy, students.dsa, generator)
            with autocast(device, args.precision):
                losses = elf_losses(
                    model,
                    adapters,
                    job,
                    images,
                    teacher,
                    labels,
                    temperature=students.feature_temperature,
                    lambdas=(job.lambda_front, job.lambda_rear),  # unscaled: the gradient of each term as set
                    rear_bn_stats=students.rear_bn_stats,
                )
            optimizer.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            norm = float(torch.nn.utils.clip_grad_norm_(params, float("inf")))
            if math.isfinite(norm):
                peak = max(peak, norm)
            elif diverged is None:
                diverged = epoch
            optimizer.step()
        scheduler.step()
        if epoch % 4 == 0:
            terms = " ".join(f"{t} {float(v.detach()):.3f}" for t, v in losses.items())
            print(f"step {loss} {epoch} {terms} gradnorm {norm:.2f}", flush=True)
    task = float(losses["task"].detach())
    print(f"max_gradnorm {loss} {peak:.2f} (finite steps)")
    print(f"diverged {loss} {'at epoch ' + str(diverged) if diverged else 'no'}")
    print(f"final_task_loss {loss} {task:.4f}")
    return peak, task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--student", default="alexnet")
    parser.add_argument("--losses", default="ce,kl")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--policy", default="replay", choices=["clean", "replay"])
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    args = parser.parse_args()
    run = stages.open_run(Path(args.run_dir))
    config = run.config
    peaks = {loss: trace(run, config, loss, args)[0] for loss in args.losses.split(",")}
    if {"ce", "kl"} <= set(peaks):
        print(f"ratio max_gradnorm_ce_over_kl {peaks['ce'] / peaks['kl']:.1f}")


if __name__ == "__main__":
    main()
