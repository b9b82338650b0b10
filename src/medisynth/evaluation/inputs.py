"""The images ``evaluate`` compares: the real prepared set by split, and the synthetic set (an image
folder, or a training run sampled on the fly into a scratch folder)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from medisynth.data.dataset import PreparedDataset
from medisynth.data.image_folder import ImageSet
from medisynth.errors import MedisynthError
from medisynth.evaluation.config import EvaluateConfig
from medisynth.runs import Run, is_run

def real_set(root: Path, split: Optional[str]) -> ImageSet:
    ds = PreparedDataset(root, split)
    images = torch.from_numpy(ds.images_uint8()).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, ds.labels, ds.index["id"].astype(str).tolist())


def is_run_folder(path: Path) -> bool:
    """A training run (``medisynth train --out``), as opposed to an image folder."""
    if (path / "labels.csv").is_file() or (path / "images").is_dir():
        return False
    return is_run(path)


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
    return s.subset(keep)
