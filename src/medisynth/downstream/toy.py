"""Tiny, easily separable toy data in medisynth's formats, for smoke tests, examples and benchmarks.

``toy_images`` draws class-coded images (class k = a bright square in quadrant k mod 4 on a
gray level that rises with k, plus noise); ``write_toy_prepared`` writes them as a prepared
data set through ``medisynth.data.prepare.write_prepared`` (re-exported here), the one writer of
arrays as a prepared set; ``write_image_folder`` writes the image-folder convention.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from medisynth.data.manifest import Manifest
from medisynth.data.prepare import write_prepared
from medisynth.io import atomic_dir, write_png


def toy_images(labels: Sequence[int], size: int = 16, channels: int = 3, seed: int = 0) -> np.ndarray:
    """uint8 N x size x size x channels images whose class is visible at a glance."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    out = rng.normal(0, 12, size=(len(labels), size, size, channels))
    half = size // 2
    for i, k in enumerate(labels):
        out[i] += 50 + 30 * (k % 5)
        r, c = divmod(int(k) % 4, 2)
        out[i, r * half:(r + 1) * half, c * half:(c + 1) * half] += 120
    return np.clip(out, 0, 255).astype(np.uint8)


def write_toy_prepared(root: Path, per_class_split: dict[str, Sequence[int]], size: int = 16, channels: int = 3,
                       seed: int = 0, class_names: Sequence[str] | None = None) -> Manifest:
    """A toy prepared set; ``per_class_split={"train": [20, 5, 2], "val": [4, 4, 4], "test": [6, 6, 6]}``."""
    num_classes = len(next(iter(per_class_split.values())))
    labels, splits = [], []
    for split, counts in per_class_split.items():
        for k, n in enumerate(counts):
            labels += [k] * int(n)
            splits += [split] * int(n)
    images = toy_images(labels, size, channels, seed)
    names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
    return write_prepared(root, images, labels, splits, names, source={"layout": "toy"})


def write_image_folder(root: Path, images: np.ndarray, class_names: Sequence[str], extra: dict | None = None,
                       prefix: str = "syn", overwrite: bool = False) -> Path:
    """Write uint8 N x H x W x C ``images`` as ``root/images/<id>.png`` + ``root/labels.csv`` (image,label,...)."""
    with atomic_dir(Path(root), overwrite=overwrite) as tmp:
        (tmp / "images").mkdir()
        ids = [f"{prefix}{i:05d}" for i in range(len(images))]
        for i, im in zip(ids, images):
            write_png(tmp / "images" / f"{i}.png", im)
        frame = pd.DataFrame({"image": ids, "label": [str(c) for c in class_names], **(extra or {})})
        frame.to_csv(tmp / "labels.csv", index=False)
    return Path(root)
