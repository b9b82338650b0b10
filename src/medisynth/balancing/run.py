"""``balance(BalanceConfig) -> BalanceResult``: count the train split per class, sample what is
missing, write the real images (``real_images``) and the synthetic ones into one image folder."""
from __future__ import annotations

import os
import shutil
from dataclasses import asdict
from pathlib import Path

import pandas as pd
from PIL import Image

from medisynth.balancing.config import BalanceConfig, BalanceResult, class_targets
from medisynth.balancing.real_images import write_real_images
from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir, read_json, write_json
from medisynth.outputs import check_output
from medisynth.runs import Run
from medisynth.sampling.writer import SAMPLE_JSON


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
        rows, real_images = write_real_images(everything, tmp / "images", names, config.progress, progress_bar)
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
            "real_images": real_images,
            "sampler": sample_record,
        })
    return result


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
    sampler = read_json(scratch / SAMPLE_JSON) if (scratch / SAMPLE_JSON).is_file() else {}
    if (scratch / "grid.png").is_file():
        os.replace(scratch / "grid.png", tmp / "synthetic_grid.png")
    shutil.rmtree(scratch)
    if result.shortfall:
        sampler["note"] = "the sampler wrote fewer images than asked for; see shortfall per class"
    return rows, added, sampler
