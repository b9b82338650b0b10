"""``medmnist``: a MedMNIST ``.npz`` (keys ``train_images``, ``train_labels``, ``val_*``, ``test_*``).

The official split is kept. Labels become class names "0", "1"... (the npz holds no names; MedMNIST's INFO
does, and ``prepare --rename-classes 0=normal,1=pneumonia`` gives them). Pixels are read lazily:
a record names the file, the key and the row; each worker process loads an array once
and keeps it (``NpzRow``), so the npz is not decompressed once per image.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from medisynth.data.sources.base import Record, Source, register_source
from medisynth.errors import MedisynthError

SPLIT_KEYS = {"train": "train", "val": "val", "test": "test"}
_CACHE: dict[tuple[str, str], np.ndarray] = {}  # per process: (npz path, key) -> array


def _npz_keys(path: Path) -> set[str]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return set(npz.files)
    except (OSError, ValueError):
        return set()


def _find_npz(root: Path) -> Path | None:
    if root.is_file():
        return root if root.suffix == ".npz" and "train_images" in _npz_keys(root) else None
    if root.is_dir():
        hits = [p for p in sorted(root.glob("*.npz")) if "train_images" in _npz_keys(p)]
        return hits[0] if len(hits) == 1 else None
    return None


def _array(path: str, key: str) -> np.ndarray:
    if (path, key) not in _CACHE:
        if len(_CACHE) >= 4:  # an image and a label array per split at most; keep memory bounded
            _CACHE.clear()
        with np.load(path, allow_pickle=False) as npz:
            _CACHE[(path, key)] = npz[key]
    return _CACHE[(path, key)]


@dataclass(frozen=True)
class NpzRow:
    """Picklable loader: row ``row`` of array ``key`` in the npz at ``path``."""

    path: str
    key: str
    row: int

    def __call__(self) -> np.ndarray:
        image = np.asarray(_array(self.path, self.key)[self.row])
        if image.dtype != np.uint8:
            raise MedisynthError(f"{self.path}: {self.key} has dtype {image.dtype}; MedMNIST images are uint8")
        return image


@register_source
class MedMnistSource(Source):
    name = "medmnist"
    default_preprocess = "none"
    prefers_one_process = True  # 28-px arrays in memory: messaging to workers costs more than the work

    def __init__(self, root: Path, skip_bad: bool = False, **options):
        super().__init__(root, **options)
        npz = _find_npz(self.root)
        if npz is None:
            raise MedisynthError(
                f"{self.root}: no MedMNIST .npz (one file with train_images/train_labels/val_*/test_* keys) found"
            )
        self.npz = npz

    @classmethod
    def detect(cls, root: Path) -> bool:
        return _find_npz(Path(root)) is not None

    def records(self) -> Iterable[Record]:
        with np.load(self.npz, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = [s for s in ("val", "test") if f"{s}_images" not in keys]
            if missing:  # not an error (some exports are train-only), but never silent
                print(f"note: {self.npz} has no {' or '.join(missing)} images; those splits stay empty "
                      f"(the official split is kept)", file=sys.stderr)
            for split in ("train", "val", "test"):
                if f"{split}_images" not in keys:
                    continue
                if f"{split}_labels" not in keys:
                    raise MedisynthError(f"{self.npz}: has {split}_images but no {split}_labels")
                labels = np.asarray(npz[f"{split}_labels"])
                if labels.ndim == 2 and labels.shape[1] > 1:
                    raise MedisynthError(
                        f"{self.npz}: {split}_labels has {labels.shape[1]} columns (multi-label, e.g. ChestMNIST); "
                        "medisynth needs one class per image"
                    )
                labels = labels.reshape(-1)
                count = len(npz[f"{split}_images"])
                if len(labels) != count:
                    raise MedisynthError(f"{self.npz}: {split}_images has {count} images but {split}_labels has "
                                         f"{len(labels)} labels; the file is damaged or mismatched: re-download it")
                for i, label in enumerate(labels):
                    yield Record(
                        id=f"{split}_{i:05d}",
                        label=str(int(label)),
                        split=SPLIT_KEYS[split],
                        loader=NpzRow(str(self.npz), f"{split}_images", i),
                        where=f"{self.npz} {split}_images[{i}]",
                    )
