#!/usr/bin/env python3
"""bf16 autocast on the CPU (``medisynth train --cpu-amp``) against fp32: fastgan's training speed, side by side.

The demo's recipe (fastgan's defaults: 64 px RGB, batch 8) on a toy data set (the speed of a step does not depend
on what the images show), the same steps, seed and threads in both arms, alternated ``--rounds`` times so that a
noisy machine slows both alike. Prints each run's images/s (the training loop only, as ``medisynth train`` reports
it), the ratio bf16 / fp32 of each round and their median, and the instruction set torch uses on this CPU
(``torch.backends.cpu.get_cpu_capability()``): the gain depends on it. What bf16 does to the images is the quality
benchmark's question (``bench_quality.py --steps N --models fastgan,fastgan-cpu-amp``).

    .venv/bin/python benchmarks/bench_cpu_amp.py --steps 60 --rounds 3
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path


def run_once(data: Path, out: Path, steps: int, threads: int, cpu_amp: bool) -> float:
    """images/s of one fastgan run of ``steps`` steps."""
    import medisynth as ms

    result = ms.train(ms.TrainConfig(data=data, model="fastgan", out=out, steps=steps, cpu_amp=cpu_amp, device="cpu",
                                     threads=threads, sample_every=0, checkpoint_every=10**9, progress=False, seed=0))
    return result.images_per_second


def main(argv: list[str] | None = None) -> int:
    import torch

    from medisynth.training.toy import write_toy_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60, help="training steps per run")
    parser.add_argument("--rounds", type=int, default=3, help="fp32 / bf16 pairs, alternated")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"fastgan (64 px RGB, batch 8), {args.steps} steps a run, {args.threads} threads, torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = write_toy_dataset(work / "data", per_class={"0": 24, "1": 24}, size=64)
        for round_ in range(args.rounds):
            fp32 = run_once(data, work / f"fp32-{round_}", args.steps, args.threads, cpu_amp=False)
            bf16 = run_once(data, work / f"bf16-{round_}", args.steps, args.threads, cpu_amp=True)
            ratios.append(bf16 / fp32)
            print(f"round {round_ + 1}: fp32 {fp32:.1f} images/s, bf16 {bf16:.1f} images/s, bf16 / fp32 {ratios[-1]:.2f}x")
    print(f"bf16 / fp32, median of {args.rounds} rounds: {statistics.median(ratios):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
