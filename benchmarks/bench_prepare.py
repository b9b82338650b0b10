"""Benchmark: ``medisynth prepare`` throughput (images/s) and peak memory, 1 worker vs all cores.

    python benchmarks/bench_prepare.py                     # ../shared/data/HRF at 256 px
    python benchmarks/bench_prepare.py --size 128 --repeat 3 --source PATH

Every configuration runs in a fresh process (so pool start-up is counted, as a user sees it)
and reports its own peak RSS: the larger of the main process and its largest worker
(``resource.getrusage`` of self and children). Images/s counts images written.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_SOURCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "HRF"


def one_run(source: str, size: int, workers: int) -> dict:
    """Prepare once in this process; returns timings and peak memory."""
    from medisynth.data.prepare import PrepareConfig, prepare

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = prepare(PrepareConfig(source=Path(source), out=Path(tmp) / "out", size=size, workers=workers,
                                       skip_bad=True), progress=False)
        seconds = time.perf_counter() - start
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"images": result.manifest.num_images, "seconds": seconds, "self_mb": self_kb / 1024,
            "worker_mb": child_kb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=str(DEFAULT_SOURCE.resolve()))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration; the best is reported")
    parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(one_run(args._child[0], int(args._child[1]), int(args._child[2]))))
        return
    if not Path(args.source).exists():
        print(f"skipped: {args.source} not found (the HRF images live in ../shared/data/HRF)")
        return
    cores = os.cpu_count() or 1
    rows = {}
    for workers in sorted({1, cores}):
        runs = []
        for _ in range(args.repeat):
            out = subprocess.run([sys.executable, __file__, "--_child", args.source, str(args.size), str(workers)],
                                 capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        best = min(runs, key=lambda r: r["seconds"])
        best["images_per_s"] = best["images"] / best["seconds"]
        rows[workers] = best
    print(f"prepare {args.source} at {args.size} px, {cores} core(s), best of {args.repeat}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'workers':>8} {'images':>7} {'seconds':>8} {'images/s':>9} {'main MB':>8} {'worker MB':>10}")
    for workers, r in rows.items():
        print(f"{workers:>8} {r['images']:>7} {r['seconds']:>8.2f} {r['images_per_s']:>9.1f} "
              f"{r['self_mb']:>8.0f} {r['worker_mb']:>10.0f}")
    if cores > 1:
        print(f"speed-up {cores} workers / 1 worker: {rows[cores]['images_per_s'] / rows[1]['images_per_s']:.2f}x")


if __name__ == "__main__":
    main()
