"""Peak resident memory of pix2pix / EDSR training steps at full size on the CPU.

    python benchmarks/bench_pix2pix_memory.py [--size 512] [--ngf 32] [--model pix2pix|edsr]

Prints the process's peak RSS (resource.getrusage) before and after one training step
(batch 1), so the figure in the README can be re-measured on any machine.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

from medisynth.models import DataSpec, build_model


def peak_rss_mib() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="pix2pix", choices=["pix2pix", "edsr"])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--ngf", type=int, default=32)
    p.add_argument("--steps", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    hyper = {"ngf": args.ngf} if args.model == "pix2pix" else {}
    model = build_model(args.model, DataSpec(args.size, 3), hyper).train()
    optimizers = model.configure_optimizers()
    params = sum(p.numel() for p in model.parameters())
    batch = {"image": torch.rand(1, 3, args.size, args.size) * 2 - 1,
             "mask": (torch.rand(1, 1, args.size, args.size) > 0.9).float(),
             "label": torch.zeros(1, dtype=torch.long)}
    before = peak_rss_mib()
    t0 = time.perf_counter()
    for step in range(args.steps):
        log = model.training_step(batch, optimizers, step)
    seconds = (time.perf_counter() - t0) / args.steps
    print(f"{args.model} {args.size}px batch 1 (ngf={args.ngf}): {params / 1e6:.1f} M parameters, "
          f"peak RSS {before:.0f} MiB after building, {peak_rss_mib():.0f} MiB after {args.steps} step(s); "
          f"{seconds:.1f} s/step on 1 CPU thread; {log}")


if __name__ == "__main__":
    main()
