#!/usr/bin/env python3
"""Data-parallel scaling on this machine: the same dcgan run on 1 and on 2 Gloo CPU processes.

Same global batch, same steps, 64 px toy data (medisynth.training.toy), one torch thread per
process (so 2 processes use the 2 cores). Prints per world size: training images/s (global),
and the communication share = seconds in the gradient all-reduce / training-loop seconds (rank 0).

    .venv/bin/python benchmarks/bench_distributed.py --steps 20 --batch-size 32
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

WORKER = textwrap.dedent("""
    import json, sys
    from medisynth.training import distributed
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train
    data, out, steps, batch, width = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    result = train(TrainConfig(data=data, model="dcgan", out=out, steps=steps, batch_size=batch, log_every=steps,
                               sample_every=0, checkpoint_every=10**9, device="cpu", progress=False, threads=1,
                               hyper={"width": width}))
    if distributed.is_main():
        loop = result.data_seconds + result.step_seconds
        print("RESULT " + json.dumps({"images_per_second": result.images_per_second,
                                      "communication_share": distributed.communication_seconds / loop}))
    distributed.teardown()
""")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    args = parser.parse_args()
    from medisynth.training import toy

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = toy.write_toy_dataset(tmp / "data", per_class={"a": 96, "b": 96}, size=args.size, channels=1)
        worker = tmp / "worker.py"
        worker.write_text(WORKER)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        for nproc in (1, 2):
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                       str(worker), str(data), str(tmp / f"run{nproc}"), str(args.steps), str(args.batch_size),
                       str(args.width)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                sys.exit(f"{nproc} processes failed:\n{done.stderr[-3000:]}")
            figures = json.loads(lines[0][len("RESULT "):])
            print(f"processes {nproc}: {figures['images_per_second']:.1f} images/s (global), "
                  f"communication {figures['communication_share']:.1%} of the loop "
                  f"[dcgan width {args.width}, {args.size} px, global batch {args.batch_size}, {args.steps} steps]")


if __name__ == "__main__":
    main()
