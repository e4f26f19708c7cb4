"""Training-step time per registered student on this machine, fp32 vs bf16 autocast, side by side.

    python bench/step_time.py [--batch 100] [--repeats 3] [--archs convnet,resnet18,...]
    python bench/step_time.py --inference [--archs ...]     # images per inference pass: 16 vs 256
    python bench/step_time.py --compile [--archs convnet]   # torch.compile vs eager training step
    python bench/step_time.py --dm                          # DM's real embeddings: passes of 16 vs one pass

Prints one line per architecture, `ratio bf16_over_fp32_<arch> VALUE` (above 1: bf16 is slower here) and
`ratio channels_last_over_contiguous_<arch> VALUE` (fp32; above 1: channels_last is slower here); with
--inference `ratio inference_batch16_over_256_<arch> VALUE` (time per image in eval mode, 16 vs 256 images a pass);
with --compile `ratio compiled_over_eager_step_<arch> VALUE` and the seconds the first compiled step took; with
--dm `ratio dm_chunked_over_one_pass VALUE` (10 DM iterations of the default config, the real images' embeddings in
passes of 16 vs all 320 in one pass; the synthetic sets' sums are printed to show they agree).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.nn import functional as F

from elfdd.models import create_model
from elfdd.pipeline.training import autocast, cpu_has_native_bf16


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


def per_image_seconds(model: torch.nn.Module, x: torch.Tensor, batch: int) -> float:
    """Seconds per image of an eval-mode pass over ``x``, ``batch`` images at a time."""
    model.eval()
    with torch.inference_mode():
        model(x[:batch])  # warm-up
        started = time.perf_counter()
        for start in range(0, len(x), batch):
            model(x[start : start + batch])
    return (time.perf_counter() - started) / len(x)


def inference(archs: list[str], repeats: int) -> None:
    x = torch.randn(512, 1, 28, 28)
    for arch in archs:
        torch.manual_seed(0)
        model = create_model(arch, 1, 10, 28)
        times: dict[int, list[float]] = {16: [], 256: []}
        for _ in range(repeats):  # interleaved
            for batch in times:
                times[batch].append(per_image_seconds(model, x, batch))
        small, large = (statistics.median(times[b]) for b in (16, 256))
        print(f"{arch:10s} eval per image: 16 a pass {small * 1e3:.2f} ms, 256 a pass {large * 1e3:.2f} ms")
        print(f"ratio inference_batch16_over_256_{arch} {small / large:.2f}")


def compiled(archs: list[str], x: torch.Tensor, y: torch.Tensor, repeats: int) -> None:
    for arch in archs:
        torch.manual_seed(0)
        eager = step_seconds(create_model(arch, 1, 10, 28), x, y, "fp32", repeats)
        torch.manual_seed(0)
        model = torch.compile(create_model(arch, 1, 10, 28))
        started = time.perf_counter()
        step_seconds(model, x, y, "fp32", 1)  # compiles forward and backward
        first = time.perf_counter() - started
        fast = step_seconds(model, x, y, "fp32", repeats)
        print(f"{arch:10s} step: eager {eager:.3f} s, compiled {fast:.3f} s; compiling took {first:.1f} s")
        print(f"ratio compiled_over_eager_step_{arch} {fast / eager:.2f}")


def dm_passes(repeats: int) -> None:
    from pathlib import Path

    from elfdd.pipeline import training
    from elfdd.pipeline.config import load_config
    from elfdd.pipeline.data import load_data
    from elfdd.pipeline.distill import distill

    root = Path(__file__).resolve().parents[1]
    config = load_config(root / "src" / "elfdd" / "configs" / "default.yaml", ["distill.iterations=10"])
    data = load_data(config.data, config.seed)
    times: dict[int, list[float]] = {training.CPU_INFERENCE_BATCH: [], 10**9: []}
    for _ in range(repeats):  # interleaved
        for size in times:
            training.CPU_INFERENCE_BATCH = size
            started = time.perf_counter()
            synthetic, _ = distill(data, config.distill, torch.device("cpu"), "fp32", 0)
            times[size].append(time.perf_counter() - started)
            print(
                f"passes of {min(size, 320)}: {times[size][-1]:.2f} s, synthetic sum {float(synthetic.images.sum()):.6f}"
            )
    chunked, one = (statistics.median(t) for t in times.values())
    print(f"ratio dm_chunked_over_one_pass {chunked / one:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--archs", default="convnet,resnet18,vgg11,alexnet,mlp")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--inference", action="store_true", help="inference pass sizes only")
    parser.add_argument("--compile", action="store_true", help="torch.compile vs eager only")
    parser.add_argument("--dm", action="store_true", help="DM's real-embedding passes only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"# {platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, native bf16: {cpu_has_native_bf16()}"
    )
    x = torch.randn(args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch,))
    if args.inference:
        return inference(args.archs.split(","), args.repeats)
    if args.compile:
        return compiled(args.archs.split(","), x, y, args.repeats)
    if args.dm:
        return dm_passes(args.repeats)
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
