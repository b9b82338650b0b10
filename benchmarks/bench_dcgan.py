#!/usr/bin/env python3
"""medisynth `dcgan` vs the reference DCGAN (../shared/baselines/reference_dcgan.py), side by side.

Same architecture (width 64, nz 100), same images (the EyePACS sample prepared at 64 px;
the reference reads the very same train-split pixels as PNGs), same batch (64), same number
of steps, torch threads = cores for both. Prints images/s of each and the ratio, and how
medisynth's loop time splits into data (gather + uint8->float) and model steps.

Two medisynth configurations:
- plain:   no DiffAugment, no EMA: the reference recipe, like for like;
- default: DiffAugment (color,translation,cutout) + generator EMA 0.999, what `medisynth train` does.

Throughput compares training loops: the reference's timer covers its loop only, so for
medisynth we report (steps x batch) / (data + step seconds); the end-to-end figure (with the
final checkpoint, loss plot and sample grid) is printed too.

    .venv/bin/python benchmarks/bench_dcgan.py --steps 30
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


def prepare_images(source: Path, size: int, work: Path) -> tuple[Path, Path]:
    """Prepared data set (for medisynth) + its train split as PNGs (for the reference)."""
    from medisynth.data.dataset import PreparedDataset
    from medisynth.data.prepare import PrepareConfig, prepare

    prepared = work / "prepared"
    # no val/test split: all 69 EyePACS images train, so a batch of 64 fits (as in the reference)
    prepare(PrepareConfig(source=source, out=prepared, size=size, channels=3, val_fraction=0.0, test_fraction=0.0))
    images = PreparedDataset(prepared, split="train").images_uint8()
    png_dir = work / "pngs"
    png_dir.mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(png_dir / f"{i:05d}.png")
    return prepared, png_dir


def run_reference(png_dir: Path, args, work: Path, threads: int) -> dict:
    out = work / "reference"
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, str(args.reference), "--images", str(png_dir), "--out", str(out), "--size", str(args.size),
           "--batch", str(args.batch), "--nz", "100", "--width", "64", "--steps", str(args.steps), "--device", "cpu"]
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return json.loads((out / "result.json").read_text())


def run_medisynth(prepared: Path, args, work: Path, name: str, plain: bool, threads: int) -> dict:
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    hyper = {"width": 64, "latent_dim": 100}
    if plain:
        hyper["diffaugment"] = ""
    result = train(TrainConfig(
        data=prepared, model="dcgan", out=work / name, overwrite=True, steps=args.steps, batch_size=args.batch, hyper=hyper,
        ema_decay=0.0 if plain else 0.999, device="cpu", threads=threads, progress=False,
        log_every=max(1, args.steps), sample_every=0, checkpoint_every=10**9,
    ))
    loop = result.data_seconds + result.step_seconds
    if result.batch_size != args.batch:
        sys.exit(f"only {result.batch_size} train images: the batch of {args.batch} does not fit; use more images")
    return {
        "steps": result.steps, "loop_seconds": loop, "data_seconds": result.data_seconds,
        "step_seconds": result.step_seconds, "images_per_second": result.steps * args.batch / loop,
        "end_to_end_images_per_second": result.steps * args.batch / result.seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=SHARED / "data" / "EyePACS_sample", help="images medisynth prepare reads")
    ap.add_argument("--reference", type=Path, default=SHARED / "baselines" / "reference_dcgan.py")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each, in alternating order (median reported)")
    ap.add_argument("--configs", default="plain,default", help="medisynth configurations to run: plain, default")
    args = ap.parse_args()
    if not args.source.exists():
        sys.exit(f"{args.source} not found: give --source with a folder `medisynth prepare` reads")

    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-dcgan-") as tmp:
        work = Path(tmp)
        prepared, png_dir = prepare_images(args.source, args.size, work)
        n_train = len(list(png_dir.iterdir()))
        print(f"{n_train} train images at {args.size} px, batch {args.batch}, {args.steps} steps, "
              f"{args.threads} threads, CPU, torch {torch.__version__}")
        # runs alternate order across repeats (ABC, CBA, ...) so a change in machine load
        # does not favour one side; the median over repeats is reported
        names = ["reference"] + args.configs.split(",")
        runs: dict[str, list[dict]] = {name: [] for name in names}
        for repeat in range(args.repeats):
            for name in names if repeat % 2 == 0 else names[::-1]:
                if name == "reference":
                    runs[name].append(run_reference(png_dir, args, work / f"r{repeat}", args.threads))
                else:
                    runs[name].append(run_medisynth(prepared, args, work / f"r{repeat}", name, name == "plain", args.threads))

        def median(name: str, key: str) -> float:
            return float(np.median([r[key] for r in runs[name]]))

        ref = median("reference", "images_per_second")
        print(f"{'run':<20}{'images/s':>10}{'ratio':>8}{'data s':>9}{'step s':>9}{'data %':>8}   per repeat")
        for name in names:
            ips = median(name, "images_per_second")
            extra = ""
            if name != "reference":
                data_s, step_s = median(name, "data_seconds"), median(name, "step_seconds")
                extra = f"{data_s:>9.3f}{step_s:>9.2f}{100 * data_s / (data_s + step_s):>7.2f}%"
            else:
                extra = " " * 26
            each = ", ".join(f"{r['images_per_second']:.1f}" for r in runs[name])
            label = "reference" if name == "reference" else f"medisynth {name}"
            print(f"{label:<20}{ips:>10.1f}{ips / ref:>8.2f}{extra}   [{each}]")
        for name in names[1:]:
            print(f"medisynth {name} end to end (incl. final checkpoint, plot, grid): "
                  f"{median(name, 'end_to_end_images_per_second'):.1f} images/s")
        results = runs
        print(json.dumps({k: v for k, v in results.items()}, default=float))


if __name__ == "__main__":
    main()
