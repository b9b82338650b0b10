"""The prepared data set on disk.

A prepared data set is a folder::

    manifest.json     what it is: source, preprocessing, classes, counts, shards, content hash
    index.csv         one row per image: index,id,label,class_name,split,group,sha1,shard,row,source
    images-00000.npy  uint8 N x H x W x C arrays, memory-mappable (np.load(mmap_mode="r"))
    masks-00000.npy   uint8 N x H x W, present when the source has masks (vessel annotations)
    fov-00000.npy     uint8 N x H x W field-of-view masks, when the source has them

Training reads the shards directly and never decodes an image file again.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medisynth.errors import MedisynthError
from medisynth.io import read_json, write_json

FORMAT_NAME = "medisynth-prepared"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


@dataclass
class Manifest:
    """manifest.json of a prepared data set: image size, channels, classes, splits and a content hash."""

    image_size: int
    channels: int
    class_names: list[str]
    num_images: int
    counts: dict[str, dict[str, int]]  # split -> class name -> count
    shards: list[dict[str, Any]]  # [{"images": "images-00000.npy", "masks": ..., "fov": ..., "rows": n}]
    source: dict[str, Any] = field(default_factory=dict)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    split: dict[str, Any] = field(default_factory=dict)
    has_masks: bool = False
    has_fov: bool = False
    content_hash: str = ""
    skipped: list[dict[str, str]] = field(default_factory=list)
    # images kept but worth a look: kind (prepare.WARNINGS) -> {"count": n, "example": the first such image}
    warnings: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0  # images whose pixels (after preprocessing) equal an earlier image's
    duplicates_across_splits: int = 0  # duplicate groups in more than one split (only when the source fixes the split)
    near_duplicates: int = 0  # images joined to another by thumbnail similarity (prepare's --near-duplicate-threshold)
    near_duplicates_across_splits: int = 0  # near-duplicate sets in more than one split (source-fixed splits only)
    created: str = ""
    medisynth_version: str = ""
    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION

    def save(self, folder: Path) -> None:
        write_json(Path(folder) / "manifest.json", asdict(self))

    @classmethod
    def load(cls, folder: Path) -> "Manifest":
        folder = Path(folder)
        path = folder / "manifest.json"
        if not path.exists():
            raise MedisynthError(
                f"{folder} is not a prepared data set (no manifest.json); create one with `medisynth prepare SOURCE --out {folder}`"
            )
        raw = read_json(path)
        if raw.get("format") != FORMAT_NAME:
            raise MedisynthError(f"{path} is not a medisynth prepared-data manifest")
        if raw.get("version", 0) > FORMAT_VERSION:
            raise MedisynthError(f"{path} has format version {raw['version']}; upgrade medisynth to read it")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in raw.items() if k in known})

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def imbalance_ratio(self, split: str = "train") -> float:
        counts = [c for c in self.counts.get(split, {}).values() if c > 0]
        return max(counts) / min(counts) if counts else float("nan")
