"""The images ``evaluate`` compares: the real prepared set by split, and the synthetic set (an image
folder, or a training run sampled on the fly into a scratch folder)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from medisynth.data.dataset import PreparedDataset
from medisynth.errors import MedisynthError
from medisynth.evaluation.config import EvaluateConfig
from medisynth.io import read_image
from medisynth.runs import Run, is_run

UNLABELLED = {"unlabelled", ""}  # labels.csv label of an unconditional model's samples (medisynth.sampling)


@dataclass
class ImageSet:
    images: torch.Tensor  # uint8 N x C x H x W
    labels: Optional[np.ndarray]  # int64 class indices, or None when unlabelled
    ids: list[str]


def real_set(root: Path, split: Optional[str]) -> ImageSet:
    ds = PreparedDataset(root, split)
    images = torch.from_numpy(ds.images_uint8()).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, ds.labels, ds.index["id"].astype(str).tolist())


def concat(a: ImageSet, b: ImageSet) -> ImageSet:
    return ImageSet(torch.cat([a.images, b.images]), np.concatenate([a.labels, b.labels]), a.ids + b.ids)


def is_run_folder(path: Path) -> bool:
    """A training run (``medisynth train --out``), as opposed to an image folder."""
    if (path / "labels.csv").is_file() or (path / "images").is_dir():
        return False
    return is_run(path)


def load_image_folder(folder: Path, class_names: list[str], channels: int, size: int) -> tuple[ImageSet, bool]:
    """DIR/images/<id>.png + DIR/labels.csv (image,label) -> images matched to the real set's classes.

    Returns (image set, whether images were resized to ``size``). Without labels.csv every image in
    DIR/images (or DIR) is read, unlabelled; so are the samples of an unconditional model.
    """
    from medisynth.data.image_folder import class_indices, find_image, read_labels_table
    from medisynth.io import list_images

    folder = Path(folder)
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    labels_csv = folder / "labels.csv"
    table = read_labels_table(folder)
    if table is not None:
        ids = table["image"].tolist()
        unlabelled = set(table["label"]) <= UNLABELLED  # an unconditional model's samples: no classes
        labels = None if unlabelled else class_indices(table["label"], class_names, labels_csv)
        paths = [find_image(image_dir, i, labels_csv) for i in ids]
    else:
        if not image_dir.is_dir():
            raise MedisynthError(f"--synthetic {folder}: not a folder; pass an image folder (images/ + labels.csv) or a run")
        paths = list_images(image_dir)
        ids, labels = [p.stem for p in paths], None
    if not paths:
        raise MedisynthError(f"--synthetic {folder}: no images found; expected {image_dir}/<id>.png")
    arrays, resized = [], False
    for p in paths:
        a = read_image(p, channels, skip_flag=None)  # evaluate has no --skip-bad
        if a.shape[:2] != (size, size):
            from PIL import Image

            mode = "L" if channels == 1 else "RGB"
            a = np.asarray(Image.fromarray(a[..., 0] if channels == 1 else a, mode).resize((size, size), Image.BICUBIC))
            a = a[..., None] if a.ndim == 2 else a
            resized = True
        arrays.append(a)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, labels, [str(i) for i in ids]), resized


def sample_run(run: Run, class_names: list[str], config: EvaluateConfig, workdir: Path) -> Path:
    """Sample ``num_per_class`` images per class from a run into ``workdir`` (medisynth.sampling)."""
    from medisynth.sampling import SampleConfig, sample

    out = workdir / "samples"
    common = dict(run=run.path, out=out, seed=config.seed, device=config.device, batch_size=config.batch_size, progress=config.progress)
    try:
        sample(SampleConfig(per_class={name: config.num_per_class for name in class_names}, **common))
    except MedisynthError:
        if run.per_class or run.conditional is not False:
            raise
        # one unconditional model cannot choose a class: the same total, unlabelled
        sample(SampleConfig(n=config.num_per_class * len(class_names), **common))
    return out


def subset(s: ImageSet, limit: Optional[int], seed: int) -> ImageSet:
    if limit is None or len(s.images) <= limit:
        return s
    keep = np.sort(np.random.default_rng(seed).choice(len(s.images), limit, replace=False))
    return ImageSet(s.images[keep], None if s.labels is None else s.labels[keep], [s.ids[i] for i in keep])
