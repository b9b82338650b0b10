"""``medisynth prepare``: a source layout -> a prepared data set (see ``manifest.py``).

The pipeline streams: records are cheap descriptions, pixels are decoded and
preprocessed in a process pool (``imap`` keeps a bounded number in flight) and
written into shards of bounded size as they arrive. Only per-image metadata
(ids, labels, hashes) is held for the whole set, to make the split at the end.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from medisynth.data.manifest import SPLITS, Manifest
from medisynth.data.preprocess import PrepOptions, preprocess
from medisynth.data.sources.base import Record, Source, detect_source, get_source
from medisynth.data.split import assign_splits
from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir, read_image

SHARD_BYTES = 64 * 2**20  # images per shard are capped so one shard in memory stays small


@dataclass
class PrepareConfig:
    source: Path
    out: Path
    source_kind: Optional[str] = None  # None: detect from the layout
    size: int = 128
    channels: Optional[int] = None
    preprocess: str = "auto"
    graham: bool = False
    window_level: float = 40.0
    window_width: float = 400.0
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    skip_bad: bool = False
    workers: Optional[int] = None  # None: all cores
    overwrite: bool = False
    classes: Optional[list[str]] = None  # fix the class list (and order); labels outside it are an error
    source_options: dict[str, Any] = field(default_factory=dict)  # id_column, label_column, ...


@dataclass
class PrepareResult:
    out: Path
    manifest: Manifest

    def summary(self) -> str:
        return format_summary(self.manifest)


def _process(args: tuple[Record, PrepOptions, bool]):
    """Worker: decode + preprocess one record. Returns (record, image, mask, fov, error)."""
    record, options, skip_bad = args
    try:
        if record.loader is not None:
            image = record.loader()
        else:
            image = read_image(record.path)
        mask = _read_mask(record.mask_path) if record.mask_path else None
        fov = _read_mask(record.fov_path) if record.fov_path else None
        image, mask, fov = preprocess(image, options, mask, fov, raw_intensity=record.raw_intensity)
        if image.dtype != np.uint8:
            raise MedisynthError(f"preprocessing gave {image.dtype}, expected uint8")
        return record, image, mask, fov, None
    except MedisynthError as e:
        message = str(e)
        if not message.startswith(str(record.describe())):
            message = f"{record.describe()}: {message}"
        return record, None, None, None, message


def _read_mask(path: Path) -> np.ndarray:
    m = read_image(path, channels=1)[..., 0]
    values = np.unique(m)
    if not set(values.tolist()) <= {0, 1, 255}:
        raise MedisynthError(
            f"{path}: mask is not binary (values {values[:6].tolist()}...); masks must hold only 0 and 255 (or 0 and 1)"
        )
    return np.where(m > 0, 255, 0).astype(np.uint8)


class _ShardWriter:
    def __init__(self, folder: Path, image_shape: tuple[int, ...]):
        self.folder = folder
        self.rows_per_shard = max(1, SHARD_BYTES // int(np.prod(image_shape)))
        self.images: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.fovs: list[np.ndarray] = []
        self.shards: list[dict[str, Any]] = []
        self.hasher = hashlib.sha256()

    @property
    def position(self) -> tuple[int, int]:
        return len(self.shards), len(self.images)

    def add(self, image, mask, fov) -> tuple[int, int]:
        pos = self.position
        self.images.append(image)
        if mask is not None:
            self.masks.append(mask)
        if fov is not None:
            self.fovs.append(fov)
        if len(self.images) >= self.rows_per_shard:
            self.flush()
        return pos

    def flush(self) -> None:
        if not self.images:
            return
        k = len(self.shards)
        entry: dict[str, Any] = {"images": f"images-{k:05d}.npy", "rows": len(self.images)}
        self._save(entry["images"], np.stack(self.images))
        if self.masks:
            if len(self.masks) != len(self.images):
                raise MedisynthError("some images of this source have a mask and some do not")
            entry["masks"] = f"masks-{k:05d}.npy"
            self._save(entry["masks"], np.stack(self.masks))
        if self.fovs and len(self.fovs) == len(self.images):
            entry["fov"] = f"fov-{k:05d}.npy"
            self._save(entry["fov"], np.stack(self.fovs))
        self.shards.append(entry)
        self.images, self.masks, self.fovs = [], [], []

    def _save(self, name: str, array: np.ndarray) -> None:
        self.hasher.update(array.tobytes())
        np.save(self.folder / name, array)


def prepare(config: PrepareConfig, progress: bool = True) -> PrepareResult:
    """Read ``config.source``, preprocess every image, split, and write the prepared data set."""
    from medisynth import __version__
    from medisynth.progress import progress_bar

    source_cls = get_source(config.source_kind) if config.source_kind else detect_source(config.source)
    source: Source = source_cls(config.source, skip_bad=config.skip_bad, **config.source_options)
    kind = source_cls.default_preprocess if config.preprocess == "auto" else config.preprocess
    options = PrepOptions(
        size=config.size, channels=config.channels, kind=kind, graham=config.graham,
        window_level=config.window_level, window_width=config.window_width,
    )
    options.check()
    records = list(source.records())
    if not records:
        raise MedisynthError(f"{config.source}: no images found for the {source_cls.name} layout")
    labelled = [r.label for r in records if r.label is not None]
    if labelled and len(labelled) != len(records):
        raise MedisynthError(f"{config.source}: some images have a label and some do not")
    class_names = config.classes or (source.class_names(labelled) if labelled else ["unlabelled"])
    class_index = {c: i for i, c in enumerate(class_names)}
    for r in records:
        if r.label is not None and r.label not in class_index:
            raise MedisynthError(
                f"{r.describe()}: label {r.label!r} is not one of the classes {class_names}; "
                "fix the label or pass the full class list with --classes"
            )

    workers = config.workers or os.cpu_count() or 1
    shards_meta: list[dict[str, Any]] = []
    skipped = list(source.problems)
    channels = None
    with atomic_dir(config.out, overwrite=config.overwrite) as tmp:
        writer: _ShardWriter | None = None
        jobs = ((r, options, config.skip_bad) for r in records)
        pool = get_context("spawn").Pool(workers) if workers > 1 else None
        try:
            results = pool.imap(_process, jobs, chunksize=4) if pool else map(_process, jobs)
            for record, image, mask, fov, error in progress_bar(
                results, total=len(records), description="prepare", enabled=progress
            ):
                if error is not None:
                    if not config.skip_bad:
                        raise MedisynthError(error + " (or pass --skip-bad to skip and count such files)")
                    skipped.append({"item": record.describe(), "reason": error})
                    continue
                if writer is None:
                    channels = image.shape[-1]
                    writer = _ShardWriter(tmp, image.shape)
                elif image.shape[-1] != channels:
                    raise MedisynthError(
                        f"{record.describe()}: has {image.shape[-1]} channel(s) where earlier images have {channels}; "
                        "pass --channels 1 or --channels 3 to convert all images"
                    )
                shard, row = writer.add(image, mask, fov)
                shards_meta.append({
                    "id": record.id,
                    "label": class_index[record.label] if record.label is not None else 0,
                    "class_name": record.label if record.label is not None else class_names[0],
                    "group": record.group if record.group is not None else record.id,
                    "fixed_split": record.split,
                    "sha1": hashlib.sha1(image.tobytes()).hexdigest(),
                    "shard": shard,
                    "row": row,
                    "source": str(record.path) if record.path else record.id,
                })
        finally:
            if pool:
                pool.terminate()
        if writer is None:
            raise MedisynthError(f"{config.source}: every image was skipped; nothing to prepare")
        writer.flush()
        index = pd.DataFrame(shards_meta)
        if index["id"].duplicated().any():
            dup = index.loc[index["id"].duplicated(), "id"].iloc[0]
            raise MedisynthError(f"{config.source}: image id {dup!r} appears more than once; ids must be unique")
        index["split"], duplicates = assign_splits(
            index, val_fraction=config.val_fraction, test_fraction=config.test_fraction, seed=config.seed
        )
        counts = {
            s: {c: int(((index["split"] == s) & (index["class_name"] == c)).sum()) for c in class_names} for s in SPLITS
        }
        _check_classes(counts, class_names, config.source)
        index = index.drop(columns=["fixed_split"])
        index.insert(0, "index", np.arange(len(index)))
        index.to_csv(tmp / "index.csv", index=False)
        manifest = Manifest(
            image_size=options.size,
            channels=int(channels),
            class_names=list(class_names),
            num_images=len(index),
            counts=counts,
            shards=writer.shards,
            source={"path": str(Path(config.source).resolve()), "layout": source_cls.name, **{
                k: v for k, v in config.source_options.items() if v is not None}},
            preprocessing=options.to_dict(),
            split={"val_fraction": config.val_fraction, "test_fraction": config.test_fraction, "seed": config.seed},
            has_masks=any("masks" in s for s in writer.shards),
            has_fov=any("fov" in s for s in writer.shards),
            content_hash=writer.hasher.hexdigest(),
            skipped=skipped,
            duplicates=duplicates,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            medisynth_version=__version__,
        )
        manifest.save(tmp)
    return PrepareResult(Path(config.out), manifest)


def _check_classes(counts: dict[str, dict[str, int]], class_names: list[str], source: Path) -> None:
    total = {c: sum(counts[s][c] for s in SPLITS) for c in class_names}
    empty = [c for c, n in total.items() if n == 0]
    if empty and len(class_names) > 1:
        raise MedisynthError(
            f"{source}: class(es) {', '.join(empty)} have no images; add images or leave them out of --classes"
        )


def format_summary(manifest: Manifest) -> str:
    lines = [f"{manifest.num_images} images, {manifest.image_size}x{manifest.image_size}, "
             f"{manifest.channels} channel(s), layout {manifest.source.get('layout')}"]
    header = f"{'class':>14} " + " ".join(f"{s:>7}" for s in SPLITS) + f" {'total':>7} {'share':>7}"
    lines.append(header)
    grand = manifest.num_images or 1
    for c in manifest.class_names:
        per = [manifest.counts[s][c] for s in SPLITS]
        lines.append(f"{c:>14} " + " ".join(f"{n:>7}" for n in per) + f" {sum(per):>7} {100 * sum(per) / grand:>6.2f}%")
    lines.append(f"imbalance ratio (largest / smallest class, train split): {manifest.imbalance_ratio('train'):.2f}")
    if manifest.duplicates:
        lines.append(f"exact duplicate images (kept on one side of the split): {manifest.duplicates}")
    if manifest.skipped:
        lines.append(f"skipped {len(manifest.skipped)} bad item(s): see skipped in manifest.json")
        for s in manifest.skipped[:5]:
            lines.append(f"  - {s['item']}: {s['reason']}")
    return "\n".join(lines)
