"""``medisynth balance``: top up the train split's classes with synthetic images.

Reads a prepared data set and a trained RUN, asks ``medisynth.sampling.sample`` for
the missing images of each class, and writes a combined data set in the image-folder
convention (readable back by ``medisynth prepare``)::

    DIR/images/<id>.png   every real image (all splits, pixel-identical to the prepared shards)
                          and every synthetic image
    DIR/labels.csv        image,label,class_index,synthetic,split,group,source[,d_score]
    DIR/balance.json      per class: real, requested, added, total (train split); the request; provenance
                          and the sampler's own record (acceptance rates, shortfall)
    DIR/synthetic_grid.png  the sampler's preview grid (first images of each class)

Targets (train split, per class; real images are never removed):
- default: the majority class's count;
- ``target=N``: N per class;
- ``ratio=R``: ceil(R x majority count) per class.

Synthetic images are all ``split=train``; the real val and test images keep their split.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from PIL import Image

from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir, read_json, write_json, write_png
from medisynth.outputs import check_output
from medisynth.runs import Run

CHUNK = 1024  # real images converted per step (bounded memory on large data sets)


@dataclass
class BalanceConfig:
    """A rebalancing request (``medisynth balance``): top up each class of the train split with synthetic images."""

    data: Path  # prepared data set
    run: Path  # trained run (medisynth train)
    out: Path  # the balanced image folder to create (images/, labels.csv, balance.json)
    target: Optional[int] = None  # bring every class to this many train images
    ratio: Optional[float] = None  # or to ratio x the largest class (default: the largest class)
    min_d_score: Optional[float] = None  # sampler filter: keep images the discriminator scores >= this
    max_similarity: Optional[float] = None  # sampler filter: drop near-copies of training images
    seed: int = 0  # fixes the synthetic images
    device: str = "auto"  # "auto", "cpu", "cuda", ...
    batch_size: int = 64  # images per generation batch
    overwrite: bool = False  # replace ``out`` when it exists
    progress: bool = True  # progress bars on a terminal


@dataclass
class BalanceResult:
    out: Path
    class_names: list[str]
    real: list[int]  # train split, per class
    requested: list[int]
    added: list[int]
    real_val: list[int] = field(default_factory=list)
    real_test: list[int] = field(default_factory=list)

    @property
    def total(self) -> list[int]:
        return [r + a for r, a in zip(self.real, self.added)]

    @property
    def shortfall(self) -> list[int]:
        return [q - a for q, a in zip(self.requested, self.added)]

    def table(self) -> list[dict]:
        return [{"class": c, "real": r, "requested": q, "added": a, "total": t, "shortfall": s}
                for c, r, q, a, t, s in zip(self.class_names, self.real, self.requested, self.added, self.total,
                                            self.shortfall)]

    def summary(self) -> str:
        lines = [f"balanced train split written to {self.out}",
                 f"{'class':>14} {'real':>7} {'added':>7} {'total':>7}"]
        for row in self.table():
            short = f"  (short by {row['shortfall']})" if row["shortfall"] else ""
            lines.append(f"{row['class']:>14} {row['real']:>7} {row['added']:>7} {row['total']:>7}{short}")
        lines.append(f"val and test splits: real only ({sum(self.real_val)} and {sum(self.real_test)} images), unchanged")
        return "\n".join(lines)


def class_targets(real_counts: list[int], target: int | None = None, ratio: float | None = None) -> list[int]:
    """Per-class train-split size to reach; never below the real count (real images are not removed)."""
    if target is not None and ratio is not None:
        raise MedisynthError("pass --target-count or --ratio, not both")
    majority = max(real_counts)
    if target is not None:
        if target < 1:
            raise MedisynthError(f"--target-count must be at least 1 (got {target})")
        goal = int(target)
    elif ratio is not None:
        if not ratio > 0:
            raise MedisynthError(f"--ratio must be positive (got {ratio})")
        goal = math.ceil(ratio * majority)
    else:
        goal = majority
    return [max(goal, n) for n in real_counts]


def balance(config: BalanceConfig) -> BalanceResult:
    """Write ``config.out``: every real image (all splits, as prepared) plus synthetic train images
    from ``config.run`` so that each class reaches its target; returns the per-class counts.

    Classes already at or above the target get nothing. The folder is what ``medisynth prepare``
    (csv source) and ``medisynth utility`` read. Raises MedisynthError on bad input."""
    from medisynth.data.dataset import PreparedDataset
    from medisynth.data.manifest import Manifest
    from medisynth.progress import progress_bar

    data, run = Path(config.data), Path(config.run)
    manifest = Manifest.load(data)
    names = manifest.class_names
    check_output(Path(config.out), config.overwrite, "balanced", (data, run))
    # the class names the run was trained on, when its model.json says so (the sampler checks the rest)
    run_names = Run(run).class_names if Run(run).model_json.is_file() else None
    if run_names is not None and run_names != names:
        raise MedisynthError(f"{run} was trained on classes {run_names}, but {data} has classes {names}; "
                             "balance with a run trained on this data set")
    everything = PreparedDataset(data, split=None)
    index = everything.index
    real = [int(((index["split"] == "train") & (index["label"] == k)).sum()) for k in range(len(names))]
    if sum(real) == 0:
        raise MedisynthError(f"{data}: the train split is empty; nothing to balance")
    goals = class_targets(real, config.target, config.ratio)
    requested = [g - r for g, r in zip(goals, real)]

    with atomic_dir(Path(config.out), config.overwrite, "balanced", (data, run)) as tmp:
        (tmp / "images").mkdir()
        rows = _write_real(everything, tmp, names, config.progress, progress_bar)
        sample_record = None
        added = [0] * len(names)
        if any(requested):
            synthetic_rows, added, sample_record = _add_synthetic(config, tmp, manifest, names, requested,
                                                                  set(index["id"].astype(str)))
            rows += synthetic_rows
        table = pd.DataFrame(rows)
        table.to_csv(tmp / "labels.csv", index=False)
        result = BalanceResult(Path(config.out), list(names), real, requested, added,
                               real_val=[int(((index["split"] == "val") & (index["label"] == k)).sum()) for k in range(len(names))],
                               real_test=[int(((index["split"] == "test") & (index["label"] == k)).sum()) for k in range(len(names))])
        write_json(tmp / "balance.json", {
            "per_class": result.table(),
            "request": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
            "data": {"path": str(data.resolve()), "content_hash": manifest.content_hash},
            "run": str(run.resolve()),
            "real_val": result.real_val, "real_test": result.real_test,
            "sampler": sample_record,
        })
    return result


def _write_real(dataset, tmp: Path, names: list[str], progress: bool, progress_bar) -> list[dict]:
    """Every real image as PNG, exactly the prepared pixels, with its split and group."""
    index = dataset.index
    rows = []
    chunks = range(0, len(index), CHUNK)
    for start in progress_bar(chunks, total=len(chunks), description="real images", enabled=progress):
        positions = np.arange(start, min(start + CHUNK, len(index)))
        images = dataset.images_uint8(positions)
        for i, image in zip(positions, images):
            row = index.iloc[i]
            image_id = str(row["id"])
            write_png(tmp / "images" / f"{image_id}.png", image, atomic=False)
            rows.append({"image": image_id, "label": names[int(row["label"])], "class_index": int(row["label"]),
                         "synthetic": 0, "split": row["split"], "group": str(row["group"]), "source": "real"})
    return rows


def _add_synthetic(config: BalanceConfig, tmp: Path, manifest, names: list[str], requested: list[int],
                   real_ids: set[str]) -> tuple[list[dict], list[int], dict]:
    """Sample the missing images into a scratch folder, check them, move them into ``tmp/images``."""
    from medisynth.sampling import SampleConfig, sample

    scratch = tmp / ".sampled"
    result = sample(SampleConfig(
        run=Path(config.run), out=scratch, per_class={names[k]: n for k, n in enumerate(requested) if n > 0},
        min_d_score=config.min_d_score, max_similarity=config.max_similarity, seed=config.seed,
        device=config.device, batch_size=config.batch_size, progress=config.progress,
    ))
    labels = pd.read_csv(scratch / "labels.csv", dtype=str, keep_default_na=False)
    unknown = sorted(set(labels["label"]) - set(names))
    if unknown:
        raise MedisynthError(f"{config.run} made images of class(es) {unknown} that {config.data} does not have; "
                             "balance with a run trained on this data set")
    rows, added = [], [0] * len(names)
    want_mode = "L" if manifest.channels == 1 else "RGB"
    for record in labels.to_dict("records"):
        source = scratch / "images" / f"{record['image']}.png"
        with Image.open(source) as img:
            if img.size != (manifest.image_size, manifest.image_size) or img.mode != want_mode:
                raise MedisynthError(
                    f"{config.run} makes {img.size[0]}x{img.size[1]} {img.mode} images but {config.data} holds "
                    f"{manifest.image_size}x{manifest.image_size} {want_mode}; use a run trained on this data set")
        image_id = record["image"] if record["image"] not in real_ids else f"synthetic_{record['image']}"
        os.replace(source, tmp / "images" / f"{image_id}.png")
        k = names.index(record["label"])
        added[k] += 1
        row = {"image": image_id, "label": record["label"], "class_index": k, "synthetic": 1, "split": "train",
               "group": image_id, "source": str(Path(config.run).resolve())}
        if "d_score" in record:
            row["d_score"] = record["d_score"]
        rows.append(row)
    sampler = read_json(scratch / "sample.json") if (scratch / "sample.json").is_file() else {}
    if (scratch / "grid.png").is_file():
        os.replace(scratch / "grid.png", tmp / "synthetic_grid.png")
    shutil.rmtree(scratch)
    if result.shortfall:
        sampler["note"] = "the sampler wrote fewer images than asked for; see shortfall per class"
    return rows, added, sampler
