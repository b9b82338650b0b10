"""SmallResNet speed: the full-resolution stem (CLASSIFIER_VERSION 1 layout) vs the size-dependent stem stride.

Prints, per image size and width, milliseconds per image for one training step (forward + backward +
AdamW) and for inference, for three variants side by side, and the ratio reference / new:

- ``reference``: stem stride 1, contiguous (NCHW) tensors, ``torch.no_grad`` (the old classifier)
- ``stride``:    ``stem_stride_for(size)``, contiguous tensors, ``torch.inference_mode``
- ``new``:       ``stem_stride_for(size)`` + channels_last (what train_classifier / predict_proba do now)

Each number is the median of ``--repeats`` timed runs after a warm-up. The machine may be shared:
the load average is printed too; compare ratios, not absolute times.

    .venv/bin/python benchmarks/bench_classifier.py --threads 2 --sizes 32 64 128 --widths 16 32
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from medisynth.classifier import SmallResNet, stem_stride_for

CL = torch.channels_last


def _model(size: int, width: int, variant: str) -> SmallResNet:
    torch.manual_seed(0)
    model = SmallResNet(3, 5, width, stem_stride=1 if variant == "reference" else stem_stride_for(size))
    return model.to(memory_format=CL) if variant == "new" else model


def _train_step(size: int, width: int, variant: str, batch: int):
    model = _model(size, width, variant).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size) * 2 - 1
    y = torch.randint(0, 5, (batch,))

    def step():
        xx = x.contiguous(memory_format=CL) if variant == "new" else x
        loss = F.cross_entropy(model(xx), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def _inference(size: int, width: int, variant: str, batch: int):
    model = _model(size, width, variant).eval()
    x = torch.rand(batch, 3, size, size) * 2 - 1
    context = torch.no_grad if variant == "reference" else torch.inference_mode

    def run():
        with context():
            xx = x.contiguous(memory_format=CL) if variant == "new" else x
            model.features(xx)

    return run


def ms_per_image(make, size: int, width: int, variants: list[str], batch: int, repeats: int) -> dict[str, float]:
    """Median ms per image per variant; the variants take turns within each repeat, so a burst of
    load from other processes on a shared machine hits all of them alike."""
    fns = {v: make(size, width, v, batch) for v in variants}
    for fn in fns.values():
        fn()  # warm-up (oneDNN primitive creation, allocator)
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(repeats):
        for v, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[v].append(time.perf_counter() - t)
    return {v: 1000 * statistics.median(ts) / batch for v, ts in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--variants", nargs="+", default=["reference", "stride", "new"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, load average before: {os.getloadavg()}")
    print(f"{'size':>4} {'width':>5} {'stem':>4} {'what':>6} " + " ".join(f"{v:>10}" for v in args.variants) + "  ratio ref/new")
    for size in args.sizes:
        train_batch = 32 if size <= 64 else 16  # the reference at 128 px / width 32 is ~0.5 s per image
        infer_batch = 64 if size <= 64 else 32
        for width in args.widths:
            for what, make, batch in (("train", _train_step, train_batch), ("infer", _inference, infer_batch)):
                ms = ms_per_image(make, size, width, args.variants, batch, args.repeats)
                ratio = ms["reference"] / ms["new"] if {"reference", "new"} <= ms.keys() else float("nan")
                print(f"{size:>4} {width:>5} {stem_stride_for(size):>4} {what:>6} "
                      + " ".join(f"{ms[v]:>8.2f}ms" for v in args.variants) + f"  {ratio:5.2f}x", flush=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
