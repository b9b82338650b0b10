"""``medisynth prepare``: a source layout -> a prepared data set (see ``manifest.py``).

The pipeline streams: records are cheap descriptions, pixels are decoded and
preprocessed in a process pool (``imap`` keeps a bounded number in flight) and
written into shards of bounded size as they arrive. Only per-image metadata
(ids, labels, hashes, a 256-value thumbnail signature) is held for the whole set, to
make the split at the end: images that are near-identical by signature (neighbouring CT
slices) are kept on one side of the split, like exact copies and source groups.
"""
from __future__ import annotations

import hashlib
import os
from collections import deque
from contextlib import closing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pandas as pd

from medisynth.data.manifest import SPLITS, Manifest
from medisynth.defaults import PREPARE
from medisynth.data.near_duplicates import (
    DEFAULT_THRESHOLD, SIGNATURE_SIDE, near_duplicate_components, normalise_signatures, threshold_enabled,
)
from medisynth.data.preprocess import MAX_UPSCALE, WARN_ASPECT, PrepOptions
from medisynth.data.worker import SOFT_LOW, SOFT_HIGH, SOFT_MASK_SHARE, process_chunk, process_record
from medisynth.data.sources.base import Record, Source, detect_source, get_source
from medisynth.data.split import assign_splits, check_fractions, largest_unit_shares, split_units
from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir
from medisynth.outputs import check_output
from medisynth.provenance import pin_synthetic_to_train

SHARD_BYTES = 64 * 2**20  # images per shard are capped so one shard in memory stays small
CHUNK_BYTES = 8 * 2**20  # output pixels per task sent to a worker
SMALL_SET = 64  # below this many images one process is faster than starting a pool of spawned workers
GIANT_UNIT_SHARE = 0.5  # a unit holding more of a class than this is reported: the class barely splits
FEW_IMAGES = 3  # a class this small beside larger ones is reported: often a mistyped label, never split
#: what the summary says of images kept but counted in the manifest's ``warnings`` (kinds from worker.py)
WARNINGS = {
    "upscaled": f"image(s) enlarged more than {MAX_UPSCALE}x (blurry): the longer side is under 1/{MAX_UPSCALE} of --size",
    "elongated": f"image(s) longer than {WARN_ASPECT}:1, so padding to square leaves most of the output black",
    "flat": "image(s) of one colour after preprocessing (blank)",
    "soft_mask": f"mask(s) not binary (over {SOFT_MASK_SHARE:.0%} of their pixels between {SOFT_LOW} and "
                 f"{SOFT_HIGH}); thresholded at 128",
}


@dataclass
class PrepareConfig:
    """What ``medisynth prepare`` reads, how it preprocesses and splits, and where it writes."""

    source: Path  # the raw data set: a folder or file in one of the source layouts
    out: Path  # the prepared data set to create (manifest.json, index.csv, shards)
    source_kind: Optional[str] = None  # None: detect from the layout
    size: int = PREPARE["size"]  # images are resized to size x size
    channels: Optional[int] = None  # 1 or 3; None: what the source has
    preprocess: str = PREPARE["preprocess"]  # the preprocessing recipe ("auto" picks one per source)
    graham: bool = False  # Graham's local-mean subtraction (fundus photographs)
    window_level: float = PREPARE["window_level"]  # CT window centre (HU)
    window_width: float = PREPARE["window_width"]  # CT window width (HU)
    val_fraction: float = PREPARE["val_fraction"]  # share of each class that goes to val
    test_fraction: float = PREPARE["test_fraction"]  # share of each class that goes to test
    seed: int = PREPARE["seed"]  # fixes the split
    skip_bad: bool = False  # skip unreadable images (listed in the manifest) instead of stopping
    workers: Optional[int] = None  # None: all cores
    overwrite: bool = False
    classes: Optional[list[str]] = None  # fix the class list (and order); labels outside it are an error
    # without `classes`: accept labels outside the class list the layout implies (DR grades 0-4, a balanced
    # folder's classes) as new classes instead of refusing them
    allow_new_classes: bool = False
    # the source's label -> the class's name in the prepared set (MedMNIST's {"0": "normal", "1": "pneumonia"});
    # applied after `classes`, which names the source's labels; the class order stays the source's
    rename_classes: Optional[dict[str, str]] = None
    limit: Optional[int] = None  # use a seeded random subset of N images (quick looks, tests)
    source_options: dict[str, Any] = field(default_factory=dict)  # id_column, label_column, ...
    # images whose thumbnail signatures have cosine >= this stay on one side of the split; 0 or 1 switches it off
    near_duplicate_threshold: float = PREPARE["near_duplicate_threshold"]


@dataclass
class PrepareResult:
    out: Path
    manifest: Manifest

    def summary(self) -> str:
        return format_summary(self.manifest)


class _ShardWriter:
    """Collects preprocessed arrays and writes them as shards of at most SHARD_BYTES of images."""

    def __init__(self, folder: Path, image_shape: tuple[int, ...], has_mask: bool, has_fov: bool):
        self.folder = folder
        self.image_shape = image_shape
        self.has_mask, self.has_fov = has_mask, has_fov
        self.rows_per_shard = max(1, SHARD_BYTES // int(np.prod(image_shape)))
        self.images: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.fovs: list[np.ndarray] = []
        self.shards: list[dict[str, Any]] = []
        self.hasher = hashlib.sha256()

    def add(self, where: str, image, mask, fov) -> tuple[int, int]:
        if image.shape != self.image_shape:
            raise MedisynthError(
                f"{where}: has {image.shape[-1]} channel(s) where earlier images have {self.image_shape[-1]}; "
                "pass --channels 1 or --channels 3 to convert all images"
            )
        for name, have, array in (("vessel mask", self.has_mask, mask), ("field-of-view mask", self.has_fov, fov)):
            if have != (array is not None):
                raise MedisynthError(
                    f"{where}: {'has no' if have else 'has a'} {name} where earlier images {'do' if have else 'do not'}; "
                    "give every image of the source a mask, or none"
                )
        pos = len(self.shards), len(self.images)
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
        if self.has_mask:
            entry["masks"] = f"masks-{k:05d}.npy"
            self._save(entry["masks"], np.stack(self.masks))
        if self.has_fov:
            entry["fov"] = f"fov-{k:05d}.npy"
            self._save(entry["fov"], np.stack(self.fovs))
        self.shards.append(entry)
        self.images, self.masks, self.fovs = [], [], []

    def _save(self, name: str, array: np.ndarray) -> None:
        self.hasher.update(array.tobytes())
        np.save(self.folder / name, array)


def _results(records: list[Record], options: PrepOptions, workers: int) -> Iterator[tuple]:
    """(record, image, mask, fov, error) per record, in order, from ``workers`` processes.

    Records go out in chunks of about CHUNK_BYTES of output (many tiny MedMNIST images would
    otherwise cost more in messaging than in decoding), at most three chunks per worker at a
    time, so decoded images never pile up in memory. A process pool from ``concurrent.futures``
    (not ``multiprocessing.Pool``) is used because it fails loudly when a worker dies instead
    of waiting forever."""
    if workers <= 1:
        yield from (process_record((r, options)) for r in records)
        return
    image_bytes = options.size * options.size * 3
    chunksize = int(max(1, min(64, len(records) // (workers * 8), CHUNK_BYTES // image_bytes)))
    chunks = (records[i : i + chunksize] for i in range(0, len(records), chunksize))
    pending: deque = deque()
    # spawn, not fork: forking a process that holds torch/OpenMP threads can deadlock
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        try:
            for chunk in chunks:
                pending.append(pool.submit(process_chunk, chunk, options))
                if len(pending) >= 3 * workers:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()
        except BrokenProcessPool:
            raise MedisynthError(
                "a prepare worker process died (out of memory, or a script that starts prepare without an "
                "`if __name__ == \"__main__\":` guard); run again with --workers 1 to see the cause"
            ) from None
        finally:
            for future in pending:
                future.cancel()


def _choose_workers(requested: int | None, n_records: int, prefers_one_process: bool = False) -> int:
    """The user's --workers (at most one per image), else all cores except where a pool cannot pay off."""
    if requested is not None:
        if requested < 1:
            raise MedisynthError(f"--workers {requested}: use 1 or more")
        return min(requested, max(1, n_records))
    if n_records < SMALL_SET or prefers_one_process:
        return 1
    return max(1, min(os.cpu_count() or 1, n_records // 16))


def _check_paths(source: Path, out: Path) -> None:
    source, out = Path(source).resolve(), Path(out).resolve()
    if out == source or source.is_relative_to(out) or (source.is_dir() and out.is_relative_to(source)):
        raise MedisynthError(
            f"--out {out} overlaps the source {source}; write the prepared data set outside the source folder "
            "(inputs are never modified)"
        )


def _utf8(record: Record) -> bool:
    """Whether the record's names can be written to index.csv (UTF-8)."""
    try:
        for text in (record.id, record.label, record.group, record.path, record.mask_path, record.fov_path):
            if text is not None:
                str(text).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(text: str) -> str:
    """``text`` with the bytes a file name could not decode shown as \\xNN escapes (printable, one line)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _checked_records(source: Source, config: PrepareConfig) -> tuple[list[Record], list[str]]:
    """The source's records with duplicate ids and unknown labels removed (or reported), and the class list."""
    records: list[Record] = []
    seen: set[str] = set()
    for r in source.records():
        if not _utf8(r):  # index.csv is UTF-8: a name the file system decoded with escapes cannot go in it
            source.problem(_printable(r.describe()), "the name is not valid UTF-8; rename the file (e.g. to plain "
                           "ASCII)", config.skip_bad)
            continue
        if r.id in seen:
            source.problem(r.describe(), f"image id {r.id!r} appears more than once; ids must be unique", config.skip_bad)
            continue
        seen.add(r.id)
        records.append(r)
    if config.limit is not None and len(records) > config.limit:
        # a seeded random subset, not the first N: sources listed class by class would give one class only
        chosen = np.sort(np.random.default_rng(config.seed).choice(len(records), config.limit, replace=False))
        records = [records[i] for i in chosen]
    if not records:
        raise MedisynthError(f"{config.source}: no images found for the {source.name} layout")
    labelled = [r.label for r in records if r.label is not None]
    if labelled and len(labelled) != len(records):
        example = next(r for r in records if r.label is None)
        raise MedisynthError(f"{example.describe()}: has no label while other images have one; label every image")
    if config.classes and config.allow_new_classes:
        raise MedisynthError("--allow-new-classes applies only without --classes (--classes fixes the class list); "
                             "leave one of them out")
    if config.classes:
        class_names = list(config.classes)
        if len(set(class_names)) != len(class_names):
            raise MedisynthError(f"--classes {','.join(class_names)}: a class is named twice")
        fix = "fix the label or pass the full class list with --classes"
        known, origin = class_names, "from --classes"
    else:
        layout_classes = source.known_classes() if labelled and not config.allow_new_classes else None
        if layout_classes is None:
            return records, source.class_names(labelled) if labelled else ["unlabelled"]
        known, origin = layout_classes
        fix = "fix the label, pass the full class list with --classes, or pass --allow-new-classes to add it"
    kept = []
    for r in records:
        if r.label is not None and r.label not in known:
            source.problem(r.describe(), f"label {r.label!r} is not one of the classes {', '.join(known)} ({origin}); {fix}",
                           config.skip_bad)
            continue
        kept.append(r)
    if not config.classes:  # the classes the kept images hold, in the layout's order
        return kept, source.class_names(r.label for r in kept)
    return kept, class_names


def _renamed(records: list[Record], class_names: list[str],
             renames: Optional[dict[str, str]]) -> tuple[list[Record], list[str]]:
    """``records`` and ``class_names`` with the classes ``renames`` names renamed, in the same order."""
    if not renames:
        return records, class_names
    flag = "--rename-classes " + ",".join(f"{old}={new}" for old, new in renames.items())
    if not all(isinstance(name, str) for pair in renames.items() for name in pair):
        raise MedisynthError(f"{flag}: class names are strings (MedMNIST's labels are \"0\", \"1\"...); "
                             "give rename_classes as {\"0\": \"normal\"}")
    if all(r.label is None for r in records):
        raise MedisynthError(f"{flag}: the source's images have no labels, so there are no classes to rename")
    unknown = [old for old in renames if old not in class_names]
    if unknown:
        raise MedisynthError(f"{flag}: the source has no class {', '.join(map(repr, unknown))} (its classes: "
                             f"{', '.join(class_names)}); name the source's labels on the left of each =")
    for new in renames.values():
        if not new.strip() or new != new.strip() or any(ch in new for ch in "/\\,="):
            raise MedisynthError(f"{flag}: {new!r} cannot name a class; give a name without surrounding spaces, "
                                 "slashes, commas or '='")
    new_names = [renames.get(name, name) for name in class_names]
    twice = sorted({name for name in new_names if new_names.count(name) > 1})
    if twice:
        raise MedisynthError(f"{flag}: two classes would be named {', '.join(twice)}; give each class its own name")
    mapping = dict(zip(class_names, new_names))
    return [replace(r, label=mapping[r.label]) if r.label is not None else r for r in records], new_names


def _open_source(config: PrepareConfig) -> tuple[Source, dict[str, Any]]:
    """The source named by --source (or detected from the layout), with the options given for it."""
    source_path = Path(config.source)
    if not source_path.exists():
        raise MedisynthError(f"{source_path} does not exist")
    options_given = {k: v for k, v in config.source_options.items() if v is not None}
    kind_name = config.source_kind or ("csv" if {"id_column", "label_column"} & set(options_given) else None)
    source_cls = get_source(kind_name) if kind_name else detect_source(source_path)
    unknown = set(options_given) - set(source_cls.accepted_options)
    if unknown:
        flags = ", ".join("--" + k.replace("_", "-") for k in sorted(unknown))
        raise MedisynthError(f"{flags} do(es) not apply to the {source_cls.name} layout; leave it out")
    return source_cls(source_path, skip_bad=config.skip_bad, **options_given), options_given


def _mixed_channels(first: Record, first_channels: int, earlier: int, odd: Record, odd_channels: int,
                    more: Iterator[tuple]) -> MedisynthError:
    """The error for an image whose channel count differs from the ``earlier`` images', naming the odd one
    out: after a single earlier image, the next readable image decides which of the two it is."""
    if earlier == 1:
        following = next((r for r in more if r[-1] is None), None)
        if following is not None and following[1].shape[-1] == odd_channels:
            first, first_channels, odd, odd_channels = odd, odd_channels, first, first_channels
    return MedisynthError(
        f"{odd.describe()}: has {odd_channels} channel(s) where the other images have {first_channels} "
        f"(e.g. {first.describe()}); a grayscale or 16-bit file among colour ones (or the reverse)? "
        "Pass --channels 1 or --channels 3 to convert all images"
    )


def _write_images(records: list[Record], options: PrepOptions, workers: int, folder: Path, class_names: list[str],
                  config: PrepareConfig, progress: bool
                  ) -> tuple[_ShardWriter, list[dict[str, Any]], list[dict], np.ndarray, dict[str, dict]]:
    """Decode, preprocess and write every record into shards.

    Returns (writer, index rows, skipped items, raw signatures N x 256 float32 in row order, warnings:
    kind -> {"count", "example"} for the kinds of WARNINGS)."""
    from medisynth.progress import progress_bar

    class_index = {c: i for i, c in enumerate(class_names)}
    writer: _ShardWriter | None = None
    first: Record | None = None
    rows: list[dict[str, Any]] = []
    skipped: list[dict] = []
    signatures: list[np.ndarray] = []
    warnings: dict[str, dict] = {}
    # closing(): an error below stops the worker processes at once
    with closing(_results(records, options, workers)) as results:
        for record, image, mask, fov, signature, notes, error in progress_bar(
                results, total=len(records), description="prepare", enabled=progress):
            if error is not None:
                if not config.skip_bad:
                    hint = "" if "--skip-bad" in error else " (or pass --skip-bad to skip and count such files)"
                    raise MedisynthError(error + hint)
                where = record.describe()
                reason = error[len(where) + 2:] if error.startswith(f"{where}: ") else error
                skipped.append({"item": where, "reason": reason})
                continue
            if writer is None:
                writer, first = _ShardWriter(folder, image.shape, mask is not None, fov is not None), record
            elif image.shape[-1] != writer.image_shape[-1]:
                raise _mixed_channels(first, writer.image_shape[-1], len(rows), record, image.shape[-1], results)
            for kind, example in notes:
                warnings.setdefault(kind, {"count": 0, "example": example})["count"] += 1
            shard, row = writer.add(record.describe(), image, mask, fov)
            signatures.append(signature)
            rows.append({
                "id": record.id,
                "label": class_index[record.label] if record.label is not None else 0,
                "class_name": record.label if record.label is not None else class_names[0],
                "group": record.group if record.group is not None else record.id,
                "fixed_split": record.split,
                "sha1": hashlib.sha1(image.tobytes()).hexdigest(),
                "shard": shard,
                "row": row,
                "source": str(record.path) if record.path else record.describe(),
                **record.extra,  # e.g. DRIVE's origin (training/test)
            })
    if writer is None:
        raise MedisynthError(f"{config.source}: every image was skipped; nothing to prepare")
    writer.flush()
    return writer, rows, skipped, np.stack(signatures), warnings


def prepare(config: PrepareConfig, progress: bool = True) -> PrepareResult:
    """Read ``config.source``, preprocess every image, split, and write the prepared data set.

    The output folder appears whole or not at all; the source is only ever read."""
    from medisynth import __version__

    _check_paths(Path(config.source), Path(config.out))
    check_output(Path(config.out), config.overwrite, "prepared", (config.source,))
    source, options_given = _open_source(config)
    kind = source.default_preprocess if config.preprocess == "auto" else config.preprocess
    options = PrepOptions(
        size=config.size, channels=config.channels, kind=kind, graham=config.graham,
        window_level=config.window_level, window_width=config.window_width,
    )
    options.check()
    if config.limit is not None and config.limit < 1:
        raise MedisynthError(f"--limit {config.limit}: use 1 or more")
    check_fractions(config.val_fraction, config.test_fraction)
    _check_threshold(config.near_duplicate_threshold)
    records, class_names = _renamed(*_checked_records(source, config), config.rename_classes)
    workers = _choose_workers(config.workers, len(records), source.prefers_one_process)

    with atomic_dir(config.out, overwrite=config.overwrite, kind="prepared", inputs=(config.source,)) as tmp:
        writer, rows, bad, raw_signatures, warnings = _write_images(records, options, workers, tmp, class_names, config,
                                                          progress)
        index = pd.DataFrame(rows)
        # near_group: the row index of the first image of its chain of near-identical images (own index if none)
        index["near_group"] = near_duplicate_components(
            normalise_signatures(raw_signatures), config.near_duplicate_threshold)
        near_duplicates = int(index["near_group"].duplicated(keep=False).sum())
        index["fixed_split"] = pin_synthetic_to_train(index)  # synthetic images (marked in the file or csv) only train
        unit_shares = largest_unit_shares(index, split_units(index))
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
            channels=int(writer.image_shape[-1]),
            class_names=list(class_names),
            num_images=len(index),
            counts=counts,
            shards=writer.shards,
            source={"path": str(Path(config.source).resolve()), "layout": source.name, **options_given,
                    **({"limit": config.limit} if config.limit else {}),
                    **({"rename_classes": dict(config.rename_classes)} if config.rename_classes else {})},
            preprocessing=options.to_dict(),
            split={"val_fraction": config.val_fraction, "test_fraction": config.test_fraction, "seed": config.seed,
                   "fixed_by_source": any(r.split is not None for r in records),
                   "near_duplicate_threshold": config.near_duplicate_threshold
                   if threshold_enabled(config.near_duplicate_threshold) else None,
                   "near_duplicate_signature": f"{SIGNATURE_SIDE}x{SIGNATURE_SIDE} gray, mean-centred, cosine",
                   "largest_unit_share": {c: round(unit_shares.get(c, 0.0), 4) for c in class_names}},
            has_masks=writer.has_mask,
            has_fov=writer.has_fov,
            content_hash=writer.hasher.hexdigest(),
            skipped=list(source.problems) + bad,
            warnings=warnings,
            duplicates=duplicates,
            duplicates_across_splits=int((index.groupby("sha1")["split"].nunique() > 1).sum()),
            near_duplicates=near_duplicates,
            near_duplicates_across_splits=int((index.groupby("near_group")["split"].nunique() > 1).sum()),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            medisynth_version=__version__,
        )
        manifest.save(tmp)
    return PrepareResult(Path(config.out), manifest)


def write_prepared(root: Path, images: np.ndarray, labels, splits, class_names, ids=None, masks: Optional[np.ndarray] = None,
                   source: Optional[dict[str, Any]] = None, overwrite: bool = False) -> Manifest:
    """Write uint8 N x H x W x C ``images`` (and N x H x W ``masks``) as a prepared data set at ``root``,
    already split (``splits``: one of train/val/test per image): for tests, examples and benchmarks.

    The same shards, index.csv and manifest.json as ``prepare`` (through the same shard writer),
    without decoding, preprocessing or splitting; ids default to ``img00000``..., each its own group."""
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    class_names = [str(c) for c in class_names]
    ids = [str(i) for i in ids] if ids is not None else [f"img{i:05d}" for i in range(len(images))]
    with atomic_dir(Path(root), overwrite=overwrite) as tmp:
        writer = _ShardWriter(tmp, images.shape[1:], masks is not None, False)
        rows = []
        for k, image in enumerate(images):
            shard, row = writer.add(ids[k], image, None if masks is None else masks[k], None)
            rows.append({"index": k, "id": ids[k], "label": int(labels[k]), "class_name": class_names[labels[k]],
                         "split": splits[k], "group": ids[k], "sha1": hashlib.sha1(image.tobytes()).hexdigest(),
                         "shard": shard, "row": row, "source": ids[k]})
        writer.flush()
        index = pd.DataFrame(rows)
        index.to_csv(tmp / "index.csv", index=False)
        counts = {s: {c: int(((index["split"] == s) & (index["class_name"] == c)).sum()) for c in class_names}
                  for s in SPLITS}
        manifest = Manifest(image_size=int(images.shape[1]), channels=int(images.shape[3]), class_names=class_names,
                            num_images=len(images), counts=counts, shards=writer.shards,
                            source=source or {"layout": "arrays"}, has_masks=masks is not None,
                            content_hash=writer.hasher.hexdigest())
        manifest.save(tmp)
    return manifest


def _check_threshold(threshold: float) -> None:
    if not 0 <= threshold <= 1:
        raise MedisynthError(
            f"--near-duplicate-threshold {threshold}: use a cosine similarity in (0, 1) (default {DEFAULT_THRESHOLD}), "
            "or 0 to switch the near-duplicate grouping off"
        )


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
        where = "kept on one side of the split"
        if manifest.duplicates_across_splits:
            where = (f"{manifest.duplicates_across_splits} sets of copies span more than one split; "
                     "the source fixes the split, so it is kept as given")
        lines.append(f"exact duplicate images: {manifest.duplicates} ({where})")
    threshold = manifest.split.get("near_duplicate_threshold")
    if manifest.near_duplicates:
        where = "kept on one side of the split"
        if manifest.near_duplicates_across_splits:
            where = (f"{manifest.near_duplicates_across_splits} sets span more than one split; "
                     "the source fixes the split, so it is kept as given")
        lines.append(f"near-duplicate images (cosine >= {threshold} of thumbnails, exact copies included): "
                     f"{manifest.near_duplicates} ({where})")
    for c, share in manifest.split.get("largest_unit_share", {}).items():
        n = sum(manifest.counts[s].get(c, 0) for s in SPLITS)
        # a class of one or two images is not split anyway; a source-fixed split does not use units
        if share > GIANT_UNIT_SHARE and n >= 3 and share * n >= 2 and not manifest.split.get("fixed_by_source"):
            lines.append(
                f"warning: one unit of images kept together (same group, copies or near duplicates) holds "
                f"{100 * share:.0f}% of class {c}; its val/test shares are coarse. If these images are not "
                "near-identical, raise --near-duplicate-threshold (or 0 to switch the grouping off)")
    fractions = {"val": manifest.split.get("val_fraction", 0), "test": manifest.split.get("test_fraction", 0)}
    for c in manifest.class_names:
        n = sum(manifest.counts[s].get(c, 0) for s in SPLITS)
        empty = [s for s, f in fractions.items() if f > 0 and manifest.counts[s].get(c, 0) == 0]
        if empty and n >= 3 and not manifest.split.get("fixed_by_source"):
            lines.append(f"warning: class {c} has no {' or '.join(empty)} images: its {n} images form too few "
                         "units (groups, copies, near duplicates) to split")
    totals = {c: sum(manifest.counts[s].get(c, 0) for s in SPLITS) for c in manifest.class_names}
    few = [c for c, n in totals.items() if n < FEW_IMAGES]
    if few and max(totals.values()) >= FEW_IMAGES:
        lines.append(f"warning: class(es) {', '.join(f'{c} ({totals[c]})' for c in few)} have under {FEW_IMAGES} "
                     "images: a mistyped label? Fix it, or pass --classes so labels outside the list are errors")
    for kind, seen in manifest.warnings.items():
        lines.append(f"warning: {seen['count']} {WARNINGS.get(kind, kind)}; e.g. {seen['example']} "
                     "(see warnings in manifest.json)")
    if manifest.skipped:
        lines.append(f"skipped {len(manifest.skipped)} bad item(s): see skipped in manifest.json")
        for s in manifest.skipped[:5]:
            lines.append(f"  - {s['item']}: {s['reason']}")
    return "\n".join(lines)
