"""The images ``evaluate`` compares: the real prepared set by split, and the synthetic set (an image
folder, or a training run sampled on the fly into a scratch folder)."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from medisynth.data.dataset import PreparedDataset
from medisynth.data.image_folder import ImageSet, load_image_folder
from medisynth.data.manifest import Manifest
from medisynth.errors import MedisynthError
from medisynth.evaluation.config import EvaluateConfig
from medisynth.runs import Run, is_run
from medisynth.training import distributed


@dataclass
class EvaluationInputs:
    """Everything ``evaluate`` compares, loaded once."""

    real_root: Path
    manifest: Manifest
    train: ImageSet  # the real train split (memorization, the domain space)
    val: ImageSet
    heldout: ImageSet  # real val + test, never trained on
    reference: ImageSet  # the real images the synthetic set is compared with (--real-split, capped)
    fake: ImageSet
    fake_path: Path
    fake_kind: str  # "run" (sampled on the fly) or "folder"
    resized: bool  # the synthetic images were resized to the real size

    @property
    def class_names(self) -> list[str]:
        return self.manifest.class_names

    @property
    def run(self) -> Optional[Path]:
        return self.fake_path if self.fake_kind == "run" else None


def load_inputs(config: EvaluateConfig) -> EvaluationInputs:
    """The real splits and the synthetic set (a run is sampled into a scratch folder first)."""
    real_root = Path(config.real)
    manifest = Manifest.load(real_root)
    train, val = real_set(real_root, "train"), real_set(real_root, "val")
    heldout = ImageSet.concat(val, real_set(real_root, "test"))
    reference = train if config.real_split == "train" else real_set(real_root, None if config.real_split == "all" else config.real_split)
    if len(train.images) == 0:
        raise MedisynthError(f"{real_root}: the train split is empty; memorization and the domain space need training images")
    reference = subset(reference, config.max_images, config.seed)

    fake_path = Path(config.fake)
    if not fake_path.exists():
        raise MedisynthError(f"--synthetic {fake_path}: not found; pass an image folder (images/ + labels.csv) or a run folder")
    with tempfile.TemporaryDirectory(prefix="medisynth-eval-") as tmp:
        fake_kind = "run" if is_run_folder(fake_path) else "folder"
        folder = sample_run(Run.open(fake_path), manifest.class_names, config, Path(tmp)) if fake_kind == "run" else fake_path
        if fake_kind == "run" and not distributed.is_main():
            fake, resized = None, False  # under torchrun the ranks sampled together into rank 0's scratch folder
        else:
            fake, resized = load_image_folder(folder, manifest.class_names, manifest.image_size, manifest.channels, resize=True)
        if fake_kind == "run":
            fake, resized = distributed.broadcast_from_main((fake, resized))
    fake = subset(fake, config.max_images, config.seed + 1)
    return EvaluationInputs(real_root, manifest, train, val, heldout, reference, fake, fake_path, fake_kind, resized)


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
