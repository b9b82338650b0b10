"""Benchmark ``medisynth evaluate`` on the CPU: wall time and peak memory, and Inception
feature-extraction throughput against torch-fidelity's own pipeline on the same network and images.

    .venv/bin/python benchmarks/bench_evaluate.py                 # 2,000 vs 2,000 images at 128 px
    .venv/bin/python benchmarks/bench_evaluate.py --n 500 --size 64 --inception-n 64

Images are smooth random "phantoms" (Gaussian blobs): the numbers measure speed, not quality.
Evaluate runs in a child process (so its peak RSS is its own) with the ``domain`` and ``pixels``
spaces (``--features``); the domain classifier is trained once (cached) before timing, so the
time is that of a repeat evaluation; the first evaluation of a data set also trains it.
Inception uses a randomly initialised network in torch-fidelity's format (no weights offline):
medisynth's extractor vs ``torch_fidelity.utils.get_featuresdict_from_dataset`` (its DataLoader
pipeline), same extractor class, same images, same batch size; ratio = medisynth / torch-fidelity
images per second (>= 1.0 means medisynth is not slower).
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

import numpy as np
import torch


def phantoms(n: int, size: int, channels: int, seed: int) -> np.ndarray:
    """uint8 N x H x W x C smooth images: 5 Gaussian blobs each (vectorised)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    out = np.zeros((n, size, size), np.float32)
    for _ in range(5):
        cy, cx = rng.uniform(0.1, 0.9, (2, n, 1, 1)).astype(np.float32)
        s = rng.uniform(0.04, 0.15, (n, 1, 1)).astype(np.float32)
        out += rng.uniform(0.3, 1.0, (n, 1, 1)).astype(np.float32) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    out = out / out.max(axis=(1, 2), keepdims=True) * 215 + 20 + rng.normal(0, 4, out.shape).astype(np.float32)
    return np.repeat(np.clip(out, 0, 255).astype(np.uint8)[..., None], channels, axis=-1)


def make_inputs(root: Path, n: int, size: int, channels: int) -> None:
    from medisynth.downstream.toy import write_image_folder, write_prepared

    classes = ["0", "1", "2", "3"]
    n_real = n + n // 2  # the compared split is ``train`` (n images); val+test are the held-out baseline
    labels = np.arange(n_real) % 4
    splits = ["train"] * n + ["val"] * (n_real - n - (n_real - n) // 2) + ["test"] * ((n_real - n) // 2)
    write_prepared(root / "real", phantoms(n_real, size, channels, 0), labels, splits, classes, overwrite=True)
    fake_labels = np.arange(n) % 4
    write_image_folder(root / "fake", phantoms(n, size, channels, 1), [classes[k] for k in fake_labels], overwrite=True)


def child(args) -> None:
    """Run evaluate once; print its wall time as JSON (the parent reads peak RSS from rusage)."""
    from medisynth.evaluation import EvaluateConfig, evaluate

    cfg = dict(real=args.root / "real", fake=args.root / "fake", out=args.root / "report", overwrite=True, progress=False,
               feature_spaces=tuple(args.features.split(",")), cache_dir=args.root / "cache", domain_epochs=args.domain_epochs,
               device="cpu")
    if args.warm:
        evaluate(EvaluateConfig(**{**cfg, "feature_spaces": ("domain",), "max_images": 50}), log=lambda s: None)
        return
    t0 = time.perf_counter()
    metrics = evaluate(EvaluateConfig(**cfg), log=lambda s: None)
    wall = time.perf_counter() - t0
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; the whole process, imports included
    print(json.dumps({"wall_s": wall, "timings_s": metrics["timings_s"], "peak_rss_mib": peak_mib}))


def run_child(args, warm: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", "--root", str(args.root), "--features", args.features,
           "--domain-epochs", str(args.domain_epochs)] + (["--warm"] if warm else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1]) if not warm else {}


def inception_throughput(n: int, size: int, batch_size: int, repeats: int) -> dict:
    from torch.utils.data import Dataset
    from torch_fidelity.utils import get_featuresdict_from_dataset

    from medisynth.features.inception import InceptionExtractor, load_inception, random_inception_state_dict

    images = torch.from_numpy(phantoms(n, size, 3, 2)).permute(0, 3, 1, 2).contiguous()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "inception-random.pth"
        torch.save(random_inception_state_dict(0), weights)
        ours = InceptionExtractor(weights, torch.device("cpu"), batch_size)
        theirs = load_inception(weights, features=("2048", "logits_unbiased"))

    class Tensors(Dataset):
        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return images[i]

    def time_ours():
        t = time.perf_counter()
        f = ours.extract(images).features
        return time.perf_counter() - t, f

    def time_theirs():
        t = time.perf_counter()
        f = get_featuresdict_from_dataset(Tensors(), theirs, batch_size, False, True, False)["2048"].numpy()
        return time.perf_counter() - t, f

    time_ours(), time_theirs()  # warm-up (allocator, oneDNN kernels)
    t_ours, t_theirs = [], []
    for _ in range(repeats):  # interleaved, best of ``repeats``: the machine is shared
        s, f_ours = time_ours()
        t_ours.append(s)
        s, f_theirs = time_theirs()
        t_theirs.append(s)
    return {
        "images": n, "batch_size": batch_size, "threads": torch.get_num_threads(),
        "medisynth_img_per_s": n / min(t_ours), "torch_fidelity_img_per_s": n / min(t_theirs),
        "ratio_medisynth_over_torch_fidelity": min(t_theirs) / min(t_ours),
        "max_abs_feature_difference": float(np.abs(f_ours - f_theirs).max()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="synthetic images and real (train) images")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--features", default="domain,pixels")
    p.add_argument("--domain-epochs", type=int, default=1, help="epochs of the (cached) domain classifier")
    p.add_argument("--inception-n", type=int, default=128, help="images for the throughput comparison (0: skip)")
    p.add_argument("--inception-batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--root", type=Path, default=None, help="keep inputs here (reused when present)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--warm", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as tmp:
        args.root = args.root or Path(tmp)
        t = time.perf_counter()
        if not (args.root / "fake" / "labels.csv").is_file():
            make_inputs(args.root, args.n, args.size, args.channels)
        print(f"inputs: {args.n} real (train) + {args.n // 2} held-out vs {args.n} synthetic, {args.size} px, "
              f"{args.channels} channel(s), written in {time.perf_counter() - t:.1f} s; torch threads {torch.get_num_threads()}, "
              f"cpus {os.cpu_count()}")
        if "domain" in args.features.split(","):
            run_child(args, warm=True)  # train and cache the domain classifier outside the timed run
        result = run_child(args, warm=False)
        print(f"evaluate ({args.features}): wall {result['wall_s']:.1f} s, peak RSS {result['peak_rss_mib']:.0f} MiB")
        print(f"  stages: {result['timings_s']}")
    if args.inception_n:
        r = inception_throughput(args.inception_n, args.size, args.inception_batch, args.repeats)
        print(f"inception features ({r['images']} images, batch {r['batch_size']}, {r['threads']} threads): "
              f"medisynth {r['medisynth_img_per_s']:.1f} img/s, torch-fidelity {r['torch_fidelity_img_per_s']:.1f} img/s, "
              f"ratio {r['ratio_medisynth_over_torch_fidelity']:.2f} (max |feature difference| {r['max_abs_feature_difference']:.2e})")


if __name__ == "__main__":
    main()
