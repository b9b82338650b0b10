"""PyTorch access to a prepared data set."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from medisynth.data.images import float_to_uint8, uint8_to_float  # noqa: F401  (re-exported)
from medisynth.data.manifest import SPLITS, Manifest
from medisynth.errors import MedisynthError


def _load_shard(path: Path, shape: tuple) -> np.ndarray:
    """Memory-map one uint8 shard, checking it against the manifest; never unpickles (a pickled or
    object array cannot be memory-mapped) and a truncated or foreign file is one error naming it."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise MedisynthError(f"{path} is missing; the prepared data set is incomplete: prepare it again") from None
    except (ValueError, OSError, EOFError) as e:
        raise MedisynthError(f"{path} is damaged ({e}); the shard is truncated or not a uint8 .npy array: "
                             f"prepare the data set again") from None
    expected = tuple(s for s in shape)
    if array.dtype != np.uint8 or array.ndim != len(expected) or any(
            want is not None and have != want for have, want in zip(array.shape, expected)):
        raise MedisynthError(f"{path} holds a {array.dtype} array of shape {array.shape}, but the manifest says uint8 "
                             f"{tuple('N' if s is None else s for s in expected)}; prepare the data set again")
    return array


class PreparedDataset(Dataset):
    """Images of one split of a prepared data set, read from memory-mapped shards.

    Items are MONAI-style dicts: ``{"image": C x H x W float tensor in value_range,
    "label": int, "mask": 1 x H x W float tensor in [0, 1] (if with_masks)}``.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = "train",
        with_masks: bool = False,
        value_range: tuple[float, float] = (-1.0, 1.0),
        transform=None,
    ):
        self.root = Path(root)
        self.manifest = Manifest.load(self.root)
        if split is not None and split not in SPLITS:
            raise MedisynthError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        if with_masks and not self.manifest.has_masks:
            raise MedisynthError(f"{self.root} has no masks; prepare it from an image + mask source (e.g. DRIVE)")
        index = pd.read_csv(self.root / "index.csv", dtype={"id": str, "group": str, "class_name": str})
        self.index = index if split is None else index[index["split"] == split].reset_index(drop=True)
        self.split = split
        self.with_masks = with_masks
        self.value_range = value_range
        self.transform = transform

    # -- shards -------------------------------------------------------------
    @cached_property
    def _shards(self) -> list[np.ndarray]:
        m = self.manifest
        return [_load_shard(self.root / s["images"], (s.get("rows"), m.image_size, m.image_size, m.channels))
                for s in m.shards]

    @cached_property
    def _mask_shards(self) -> list[np.ndarray]:
        m = self.manifest
        return [_load_shard(self.root / s["masks"], (s.get("rows"), m.image_size, m.image_size)) for s in m.shards]

    @property
    def class_names(self) -> list[str]:
        return self.manifest.class_names

    @property
    def num_classes(self) -> int:
        return self.manifest.num_classes

    @property
    def labels(self) -> np.ndarray:
        return np.array(self.index["label"], dtype=np.int64)  # a writable copy (pandas may hand out read-only views)

    def __len__(self) -> int:
        return len(self.index)

    def image_uint8(self, i: int) -> np.ndarray:
        row = self.index.iloc[i]
        return np.array(self._shards[int(row["shard"])][int(row["row"])])

    def mask_uint8(self, i: int) -> np.ndarray:
        row = self.index.iloc[i]
        return np.array(self._mask_shards[int(row["shard"])][int(row["row"])])

    def images_uint8(self, indices=None) -> np.ndarray:
        """All (or the given) images of this split as one uint8 N x H x W x C array in memory."""
        rows = self.index if indices is None else self.index.iloc[np.asarray(indices)]
        m = self.manifest
        out = np.empty((len(rows), m.image_size, m.image_size, m.channels), dtype=np.uint8)
        shard, row = rows["shard"].to_numpy(), rows["row"].to_numpy()
        for s in np.unique(shard):
            sel = np.nonzero(shard == s)[0]
            out[sel] = self._shards[int(s)][row[sel]]
        return out

    def masks_uint8(self, indices=None) -> np.ndarray:
        rows = self.index if indices is None else self.index.iloc[np.asarray(indices)]
        m = self.manifest
        out = np.empty((len(rows), m.image_size, m.image_size), dtype=np.uint8)
        shard, row = rows["shard"].to_numpy(), rows["row"].to_numpy()
        for s in np.unique(shard):
            sel = np.nonzero(shard == s)[0]
            out[sel] = self._mask_shards[int(s)][row[sel]]
        return out

    def to_tensor(self, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split as (uint8 N x C x H x W images, int64 labels) on ``device``.

        Small medical data sets fit in memory; training indexes this tensor directly,
        so the data pipeline costs one gather and one convert per batch.
        """
        images = torch.from_numpy(self.images_uint8()).permute(0, 3, 1, 2).contiguous().to(device)
        return images, torch.from_numpy(self.labels.copy()).to(device)

    def __getitem__(self, i: int) -> dict:
        lo, hi = self.value_range
        image = torch.from_numpy(self.image_uint8(i)).permute(2, 0, 1).float() / 255.0 * (hi - lo) + lo
        item = {"image": image, "label": int(self.index.iloc[i]["label"])}
        if self.with_masks:
            item["mask"] = torch.from_numpy(self.mask_uint8(i))[None].float() / 255.0
        return self.transform(item) if self.transform else item

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    def class_balanced_sampler(self, num_samples: int | None = None, seed: int = 0) -> WeightedRandomSampler:
        """A sampler that draws every class equally often (with replacement)."""
        counts = self.class_counts()
        weights = 1.0 / np.maximum(counts[self.labels], 1)
        return WeightedRandomSampler(
            torch.as_tensor(weights, dtype=torch.double),
            num_samples=num_samples or len(self),
            replacement=True,
            generator=torch.Generator().manual_seed(seed),
        )
