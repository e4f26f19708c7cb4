"""Training-step time per registered student on this machine, fp32 vs bf16 autocast, side by side.

    python bench/step_time.py [--batch 100] [--repeats 3] [--archs convnet,resnet18,...]

Prints one line per architecture, `ratio bf16_over_fp32_<arch> VALUE` (above 1: bf16 is slower here) and
`ratio channels_last_over_contiguous_<arch> VALUE` (fp32; above 1: channels_last is slower here).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from elfdd.models import create_model
from elfdd.pipeline.training import autocast, cpu_has_native_bf16
from torch.nn import functional as F


def step_seconds(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str, repeats: int
) -> float:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        with autocast(x.device, precision):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--archs", default="convnet,resnet18,vgg11,alexnet,mlp")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, native bf16: {cpu_has_native_bf16()}"
    )
    x = torch.randn(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    for arch in args.archs.split(","):
        times = {}
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            times[precision] = step_seconds(create_model(arch, 1, 10, 28), x, y, precision, args.repeats)
        print(
            f"{arch:10s} step on {args.batch} images: fp32 {times['fp32']:.3f} s, bf16 {times['bf16']:.3f} s"
        )
        print(f"ratio bf16_over_fp32_{arch} {times['bf16'] / times['fp32']:.2f}")
        torch.manual_seed(0)
        model = create_model(arch, 1, 10, 28).to(memory_format=torch.channels_last)
        last = step_seconds(model, x.contiguous(memory_format=torch.channels_last), y, "fp32", args.repeats)
        print(f"ratio channels_last_over_contiguous_{arch} {last / times['fp32']:.2f}")


if __name__ == "__main__":
    main()
