"""The real images of a balanced folder: ``DIR/images/<id>.png``, pixel-identical to the prepared shards.

A prepared data set keeps its pixels in ``.npy`` shards, so an image whose source file is a PNG of
exactly those pixels (a folder prepared at its own size without preprocessing, e.g. a balanced
folder prepared again) is hard-linked, or copied byte for byte across file systems, instead of
being decoded from the shard and encoded again. Every other image (resized, windowed, from
DICOM/JPEG/NIfTI/npz) has no such file and is encoded once with ``medisynth.io.write_png``.
"""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from medisynth.errors import MedisynthError
from medisynth.io import read_image, write_png

CHUNK = 1024  # real images read from the shards per step (bounded memory on large data sets)
#: how an image reached the folder, as counted in balance.json's ``real_images``
HOW = ("linked", "copied", "encoded")


def write_real_images(dataset, images_dir: Path, names: list[str], progress: bool,
                      progress_bar: Callable) -> tuple[list[dict], dict[str, int]]:
    """Every real image of ``dataset`` (a ``PreparedDataset`` of all splits) into ``images_dir``, with
    its labels.csv row; returns the rows and how many images were linked, copied and encoded."""
    index = dataset.index
    rows, counts = [], dict.fromkeys(HOW, 0)
    sources = index["source"].astype(str).tolist() if "source" in index.columns else [""] * len(index)
    chunks = range(0, len(index), CHUNK)
    for start in progress_bar(chunks, total=len(chunks), description="real images", enabled=progress):
        positions = np.arange(start, min(start + CHUNK, len(index)))
        for i, image in zip(positions, dataset.images_uint8(positions)):
            row = index.iloc[i]
            image_id = str(row["id"])
            counts[place_image(image, Path(sources[i]), images_dir / f"{image_id}.png")] += 1
            rows.append({"image": image_id, "label": names[int(row["label"])], "class_index": int(row["label"]),
                         "synthetic": 0, "split": row["split"], "group": str(row["group"]), "source": "real"})
    return rows, counts


def place_image(pixels: np.ndarray, source: Path, target: Path) -> str:
    """Put ``pixels`` (uint8 H x W x C) at ``target`` as PNG: linked or copied from ``source`` when
    that file is a PNG holding exactly these pixels, else encoded. Returns which of ``HOW``."""
    if source.name and _png_of(source, pixels):
        try:
            os.link(source, target)
            return "linked"
        except OSError as e:  # another file system, or one without hard links
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
        shutil.copyfile(source, target)
        return "copied"
    write_png(target, pixels, atomic=False)
    return "encoded"


def _png_of(path: Path, pixels: np.ndarray) -> bool:
    """Whether ``path`` is a PNG that reads back (``medisynth.io.read_image``) as exactly ``pixels``.
    The header is checked first, so a differently sized original is never decoded."""
    try:
        with Image.open(path) as img:
            if img.format != "PNG" or img.size != (pixels.shape[1], pixels.shape[0]):
                return False
        decoded = read_image(path, skip_flag=None)  # unconverted: a grey file is no copy of an RGB image
    except (OSError, MedisynthError, Image.DecompressionBombError):  # missing, unreadable: encode instead
        return False
    return decoded.shape == pixels.shape and np.array_equal(decoded, pixels)
