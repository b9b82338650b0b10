#!/usr/bin/env python3
"""The two sums the demo's evaluation spent most of its arithmetic on, today's code against what it replaced
(session 26), side by side on this CPU: copy detection's window sums and KID's subset block sums.

- **Window sums.** ``CopyDetector.match`` of ``--queries`` phantom fundus images against ``--train`` others at 64 px
  (the demo's sizes: 3,052 synthetic images against 1,048 training images), with today's ``_box_sum`` and with
  the integral image it replaced (``integral_box_sum`` below). The match aligns the top candidates of every query
  whatever the encoder learned, so the encoder trains only ``--ssl-steps`` steps: its quality does not change the
  time. Both arms must give the same nearest images and similarities within 1e-5.
- **KID.** ``kid_from_features`` with 100 subsets of 1,000 from ``--train`` and ``--queries`` feature vectors, today's
  (one matrix product of 0/1 subset indicators) against torch-fidelity's ``mmd2`` on each subset's copied-out
  blocks (``kid_by_blocks`` below, the code before); the same subsets, values within 1e-9 relative.

Each arm runs ``--rounds`` times, alternated, so a noisy machine slows both alike; printed: each round's seconds,
the median ratio today / reference (< 1: today is faster) and the instruction set torch uses
(``torch.backends.cpu.get_cpu_capability()``). Measured (session 26, 2-core AMD EPYC, AVX2 only, nothing else
running): copy matching 35.9 / 39.6 / 34.5 s -> 20.6 / 23.4 / 24.6 s (0.59x), KID 5.7 / 5.7 / 4.1 s -> 0.6 / 0.4 /
0.4 s (0.11x); on session 23's AVX512 CPU an earlier window-sum version gained nothing.

    .venv/bin/python benchmarks/bench_evaluate_sums.py                       # the demo's sizes, 3 rounds
    .venv/bin/python benchmarks/bench_evaluate_sums.py --queries 300 --train 200 --rounds 1 --ssl-steps 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def integral_box_sum(x: torch.Tensor, t: int) -> torch.Tensor:
    """The window sums before session 26: an integral image over both axes."""
    c = F.pad(x.cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    return c[..., t:, t:] - c[..., :-t, t:] - c[..., t:, :-t] + c[..., :-t, :-t]


def kid_by_blocks(real: np.ndarray, fake: np.ndarray, subsets: int, subset_size: int, seed: int) -> tuple[float, float]:
    """KID before session 26: torch-fidelity's ``mmd2`` on each subset's blocks, copied out of kernels computed once."""
    from torch_fidelity.metric_kid import kernel_poly, mmd2

    from medisynth.metrics.kid import KID_KERNEL

    k_rr, k_ff, k_rf = (kernel_poly(a, b, **KID_KERNEL) for a, b in ((real, real), (fake, fake), (real, fake)))
    rng = np.random.RandomState(seed)
    mmds = np.zeros(subsets)
    for i in range(subsets):
        r = rng.choice(len(real), subset_size, replace=False)
        f = rng.choice(len(fake), subset_size, replace=False)
        mmds[i] = mmd2(k_rr[np.ix_(r, r)], k_rf[np.ix_(r, f)], k_ff[np.ix_(f, f)])
    return float(np.mean(mmds)), float(np.std(mmds))


def phantom_images(n: int, seed: int) -> torch.Tensor:
    """n phantom fundus images at 64 px, every grade in turn, uint8 N x 3 x 64 x 64."""
    from medisynth.phantom import render_fundus

    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([render_fundus(i % 5, 64, rng)[0] for i in range(n)])).permute(0, 3, 1, 2).contiguous()


def alternate(arms: dict, rounds: int) -> tuple[dict[str, list[float]], dict]:
    """Seconds of each arm per round, the arms alternated within every round, and each arm's last result."""
    seconds = {name: [] for name in arms}
    results = {}
    for _ in range(rounds):
        for name, run in arms.items():
            start = time.perf_counter()
            results[name] = run()
            seconds[name].append(time.perf_counter() - start)  # unrounded: a toy run's arms take under 5 ms
    return seconds, results


def report(what: str, seconds: dict[str, list[float]]) -> None:
    ratios = [t / r for t, r in zip(seconds["today"], seconds["reference"])]
    shown = {name: [round(t, 2) for t in times] for name, times in seconds.items()}
    print(f"{what}: reference {shown['reference']} s, today {shown['today']} s; "
          f"median ratio today / reference {statistics.median(ratios):.2f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=3052, help="query images (the demo's synthetic set)")
    parser.add_argument("--train", type=int, default=1048, help="training images (the demo's train split)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ssl-steps", type=int, default=20, help="the encoder's steps (its quality does not change the time)")
    args = parser.parse_args(argv)

    from medisynth.features.ssl import SSLRecipe, train_ssl_encoder
    from medisynth.metrics import copy_detection
    from medisynth.metrics.kid import _kid_kernel_once

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    train, queries = phantom_images(args.train, seed=0), phantom_images(args.queries, seed=1)
    encoder, _ = train_ssl_encoder(train, SSLRecipe(steps=args.ssl_steps))
    detector = copy_detection.CopyDetector(train, encoder, threshold=0.95)
    today_box_sum = copy_detection._box_sum

    def match_with(box_sum):
        def run():
            copy_detection._box_sum = box_sum
            try:
                return detector.match(queries)
            finally:
                copy_detection._box_sum = today_box_sum
        return run

    seconds, found = alternate({"reference": match_with(integral_box_sum), "today": match_with(today_box_sum)},
                               args.rounds)
    report(f"copy matching, {args.queries} queries against {args.train} training images", seconds)
    same_nearest = bool((found["today"].nearest == found["reference"].nearest).all())
    gap = float(np.nanmax(np.abs(found["today"].similarity - found["reference"].similarity)))
    print(f"  the same nearest images: {same_nearest}; largest similarity difference {gap:.1e}")

    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(args.train, 128)), rng.normal(0.1, 1.0, size=(args.queries, 128))
    size = min(1000, args.train, args.queries)
    seconds, values = alternate({"reference": lambda: kid_by_blocks(real, fake, 100, size, 0),
                                 "today": lambda: _kid_kernel_once(real, fake, 100, size, 0)}, args.rounds)
    report(f"KID, 100 subsets of {size} from {args.train} and {args.queries} 128-d features", seconds)
    relative = abs(values["today"][0] - values["reference"][0]) / abs(values["reference"][0])
    print(f"  KID today {values['today'][0]:.6g}, reference {values['reference'][0]:.6g} (relative difference {relative:.1e})")
    ok = same_nearest and gap <= 1e-5 and relative <= 1e-9
    print("same results: yes" if ok else "same results: NO")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
