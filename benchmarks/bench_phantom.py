"""Throughput of the built-in phantoms on one core: images per second at a given size.

    python benchmarks/bench_phantom.py [--size 128] [--n 300]

Prints, for fundus and CT, the draw-only rate and the full ``generate_*_dataset`` rate
(draw + PNG encode + files), side by side with the target from the design brief
(2,000 images a minute = 33 images/s at 128 px on one core).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

TARGET_PER_S = 2000 / 60.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    from medisynth.phantom.common import image_rng
    from medisynth.phantom.ct import CT_CLASSES, generate_ct_dataset, render_ct
    from medisynth.phantom.fundus import generate_fundus_dataset, render_fundus

    def draw_fundus(i):
        render_fundus(i % 5, args.size, image_rng(0, i))

    def draw_ct(i):
        render_ct(CT_CLASSES[i % 4], args.size, image_rng(0, i))

    print(f"phantom throughput, {args.size} px, one process, n={args.n}; target {TARGET_PER_S:.0f} images/s")
    print(f"{'what':<28}{'images/s':>10}{'images/min':>12}{'x target':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, fn in (
            ("fundus draw", lambda: [draw_fundus(i) for i in range(args.n)]),
            ("fundus dataset (+PNG x3)", lambda: generate_fundus_dataset(Path(tmp) / "f", n=args.n, size=args.size,
                                                                         overwrite=True)),
            ("ct draw", lambda: [draw_ct(i) for i in range(args.n)]),
            ("ct dataset (+PNG)", lambda: generate_ct_dataset(Path(tmp) / "c", n=args.n, size=args.size, overwrite=True)),
        ):
            draw_fundus(0), draw_ct(0)  # warm caches (coordinate grids, imports)
            t0 = time.process_time()     # CPU time of this process: fair on a shared machine
            fn()
            dt = time.process_time() - t0
            rate = args.n / dt
            print(f"{name:<28}{rate:>10.1f}{rate * 60:>12.0f}{rate / TARGET_PER_S:>10.2f}")


if __name__ == "__main__":
    main()
