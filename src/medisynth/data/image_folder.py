"""Reading medisynth's image-folder layout: ``DIR/images/<id>.png`` + ``DIR/labels.csv`` (image,label,...).

``medisynth sample``, ``balance`` and ``phantom fundus`` write it (PNGs through ``medisynth.io.write_png``);
``evaluate`` and ``utility`` read it back through ``load_image_folder``, so both understand the same
files, hold them in the same ``ImageSet`` and give the same errors.
"""
from __future__ import annotations

from pathlib import Path
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import pandas as pd
import torch

from medisynth.errors import MedisynthError
from medisynth.io import IMAGE_EXTENSIONS, list_images, read_image

#: labels.csv label of an unconditional model's samples (``medisynth sample --n``): no class
UNLABELLED = "unlabelled"
_TRUE = ("1", "true", "True")


@dataclass
class ImageSet:
    """uint8 N x C x H x W images with their class indices (None when unlabelled), ids and a
    per-image synthetic flag (all False unless given)."""

    images: torch.Tensor
    labels: Optional[np.ndarray]
    ids: list[str]
    synthetic: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.synthetic is None:
            self.synthetic = np.zeros(len(self.images), dtype=bool)

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices) -> "ImageSet":
        """The images at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return ImageSet(self.images[torch.from_numpy(indices)], None if self.labels is None else self.labels[indices],
                        [self.ids[i] for i in indices], self.synthetic[indices])

    @staticmethod
    def concat(*sets: "ImageSet") -> "ImageSet":
        """The sets one after another (empty ones dropped); labels are None if any set is unlabelled."""
        sets = tuple(s for s in sets if len(s)) or sets[:1]
        labels = None if any(s.labels is None for s in sets) else np.concatenate([s.labels for s in sets])
        return ImageSet(torch.cat([s.images for s in sets]), labels, [i for s in sets for i in s.ids],
                        np.concatenate([s.synthetic for s in sets]))


def load_image_folder(folder: Path, class_names: list[str], size: int, channels: int, *, resize: bool = False,
                      labelled: bool = False, flag: str = "--synthetic") -> tuple[ImageSet, bool]:
    """DIR/images/<id>.png + DIR/labels.csv (image,label) -> a synthetic ``ImageSet`` on ``class_names``.

    Returns (image set, whether any image was resized). Images of another size than ``size`` are
    resized (bicubic) when ``resize``, else refused. When labels.csv has a ``synthetic`` column
    (``medisynth balance`` output) only its synthetic rows are read. Without ``labelled``, a folder
    without labels.csv (every image of DIR/images, or DIR) and an unconditional model's samples
    (label ``unlabelled``) are read unlabelled; with it, both are refused. ``flag`` names the
    option the folder came from, for error messages.
    """
    folder = Path(folder)
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    labels_csv = folder / "labels.csv"
    table = read_labels_table(folder)
    if table is None:
        if labelled:
            raise MedisynthError(f"{labels_csv} not found; {flag} must be a folder with images/ and labels.csv "
                                 "(the output of `medisynth sample`)")
        if not image_dir.is_dir():
            raise MedisynthError(f"{flag} {folder}: not a folder; pass an image folder (images/ + labels.csv) or a run")
        paths = list_images(image_dir)
        ids, labels = [p.stem for p in paths], None
    else:
        if "synthetic" in table.columns:
            table = table[table["synthetic"].str.strip().isin(_TRUE)].reset_index(drop=True)
        if len(table) == 0:
            raise MedisynthError(f"{labels_csv} lists no (synthetic) images")
        ids = table["image"].tolist()
        unlabelled = not labelled and set(table["label"]) <= {UNLABELLED, ""}
        labels = None if unlabelled else class_indices(table["label"], class_names, labels_csv)
        paths = [find_image(image_dir, i, labels_csv) for i in ids]
    if not paths:
        raise MedisynthError(f"{flag} {folder}: no images found; expected {image_dir}/<id>.png")
    images = np.empty((len(paths), size, size, channels), dtype=np.uint8)
    resized = False
    for k, path in enumerate(paths):
        array = read_image(path, channels, skip_flag=None)  # evaluate and utility have no --skip-bad
        if array.shape[:2] != (size, size):
            if not resize:
                raise MedisynthError(f"{path} is {array.shape[1]}x{array.shape[0]} but the real data set is "
                                     f"{size}x{size}; sample from a model trained on this data set")
            array, resized = _resize(array, size), True
        images[k] = array
    return ImageSet(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels, [str(i) for i in ids],
                    np.ones(len(paths), dtype=bool)), resized


def _resize(array: np.ndarray, size: int) -> np.ndarray:
    """uint8 H x W x C -> size x size x C, bicubic."""
    from PIL import Image

    squeeze = array.shape[-1] == 1
    out = np.asarray(Image.fromarray(array[..., 0] if squeeze else array).resize((size, size), Image.BICUBIC))
    return out[..., None] if squeeze else out


def read_labels_table(folder: Path) -> Optional[pd.DataFrame]:
    """``folder/labels.csv`` as strings (None when there is none); it must have image and label columns."""
    labels_csv = Path(folder) / "labels.csv"
    if not labels_csv.is_file():
        return None
    try:
        table = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise MedisynthError(f"{labels_csv}: cannot be read as CSV ({e}); rewrite it with columns image,label") from None
    missing = {"image", "label"} - set(table.columns)
    if missing:
        raise MedisynthError(f"{labels_csv}: missing column(s) {', '.join(sorted(missing))}; it needs image,label")
    return table


def find_image(image_dir: Path, image_id: str, labels_csv: Path) -> Path:
    """The file of ``image_id`` in ``image_dir`` (the id may carry its extension or not)."""
    image_id = image_id.strip()
    direct = image_dir / image_id
    if direct.suffix and direct.is_file():
        return direct
    for ext in IMAGE_EXTENSIONS:
        if (image_dir / f"{image_id}{ext}").is_file():
            return image_dir / f"{image_id}{ext}"
    raise MedisynthError(f"{labels_csv}: image {image_id!r} is listed but {image_dir}/{image_id}.png does not exist; "
                         "add it or remove the row")


def class_indices(labels: pd.Series, class_names: list[str], labels_csv: Path) -> np.ndarray:
    """Class names (as written in labels.csv; "2.0" counts as "2") -> indices into ``class_names``."""
    index = {name: k for k, name in enumerate(class_names)}

    def lookup(label: str):
        label = label.strip()
        if label in index:
            return index[label]
        try:
            number = float(label)
        except ValueError:
            return None
        return index.get(str(int(number))) if number.is_integer() else None

    mapped = labels.map(lookup)
    unknown = sorted(set(labels[mapped.isna()]))
    if unknown:
        raise MedisynthError(
            f"{labels_csv}: label(s) {', '.join(map(repr, unknown))} is not a class of the real data set "
            f"({', '.join(class_names)}); use images of a model trained on that data set, or fix the label column"
        )
    return mapped.to_numpy(dtype=np.int64)
