"""What ``medisynth evaluate`` is asked: ``EvaluateConfig``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from medisynth.errors import MedisynthError
from medisynth.defaults import EVALUATE

SCHEMA = "medisynth.metrics/2"
DEFAULT_SPACES = EVALUATE["feature_spaces"]


@dataclass
class EvaluateConfig:
    """An evaluation request (``medisynth evaluate``): the real set, the synthetic set, the report folder."""

    real: Path  # a prepared data set (medisynth prepare)
    fake: Path  # an image folder (images/ + labels.csv) or a training run folder
    out: Path  # the report folder to create
    feature_spaces: tuple[str, ...] = DEFAULT_SPACES
    weights: Optional[Path] = None  # Inception weights; default $MEDISYNTH_INCEPTION_WEIGHTS
    real_split: str = EVALUATE["real_split"]  # the real images the synthetic set is compared with: train|val|test|all
    num_per_class: int = EVALUATE["num_per_class"]  # images per class sampled when ``fake`` is a run
    max_images: Optional[int] = None  # cap each set (seeded random subset)
    near_copy_threshold: Optional[float] = None  # aligned correlation; None: calibrated on the train split's units
    min_class_samples: int = EVALUATE["min_class_samples"]  # per-class distribution metrics need this many images in both sets
    kid_subsets: int = EVALUATE["kid_subsets"]  # KID: number of random subsets
    kid_subset_size: int = EVALUATE["kid_subset_size"]  # KID: images per subset (capped by the set sizes)
    prdc_k: int = EVALUATE["prdc_k"]  # precision/recall/density/coverage: nearest neighbours
    diversity_pairs: int = EVALUATE["diversity_pairs"]  # MS-SSIM diversity: random pairs per set
    yardstick_repeats: int = EVALUATE["yardstick_repeats"]  # random draws (synthetic subsets, real halves) the real-vs-real yardstick is averaged over
    bootstrap: int = EVALUATE["bootstrap"]  # resamples of the per-class KID/coverage intervals
    utility: Optional[Path] = None  # a `medisynth utility` report folder whose verdict joins "class-true & useful"
    domain_epochs: Optional[int] = None  # None: the classifier's default recipe
    domain_width: Optional[int] = None  # SmallResNet width of the domain classifier; None: its default recipe (32)
    domain_augment: Optional[str] = None  # "classic" or "none"; None: its default recipe (classic)
    ssl_steps: Optional[int] = None  # None: the ssl encoder's default recipe (cached like the domain classifier)
    cache_dir: Optional[Path] = None  # domain classifier cache; default ~/.cache/medisynth
    batch_size: int = EVALUATE["batch_size"]  # images per feature-extraction batch
    device: str = EVALUATE["device"]  # "auto", "cpu", "cuda", ...
    seed: int = EVALUATE["seed"]  # fixes subsets, sampling of a run and the domain classifier
    overwrite: bool = False  # replace ``out`` when it exists
    progress: bool = True  # progress bars on a terminal

    def validate(self) -> None:
        if self.real_split not in ("train", "val", "test", "all"):
            raise MedisynthError(f"--real-split {self.real_split!r}: choose train, val, test or all")
        if self.near_copy_threshold is not None and not -1.0 <= self.near_copy_threshold <= 1.0:
            raise MedisynthError(f"--near-copy-threshold {self.near_copy_threshold}: a correlation in [-1, 1]; omit it to calibrate")
        from medisynth.features import FEATURE_SPACES

        for name in self.feature_spaces:
            if name not in FEATURE_SPACES:
                raise MedisynthError(f"--features {name!r}: unknown feature space; choose from {', '.join(FEATURE_SPACES)}")
        from medisynth.classifier import AUGMENTATIONS

        if self.domain_augment is not None and self.domain_augment not in AUGMENTATIONS:
            raise MedisynthError(f"--domain-augment {self.domain_augment!r}: choose one of {', '.join(AUGMENTATIONS)}")
        for flag, value in (("--domain-epochs", self.domain_epochs), ("--domain-width", self.domain_width)):
            if value is not None and value < 1:
                raise MedisynthError(f"{flag} {value}: must be at least 1")
        if self.yardstick_repeats < 1:
            raise MedisynthError(f"--yardstick-repeats {self.yardstick_repeats}: use at least 1")
        if self.bootstrap < 10:
            raise MedisynthError(f"--bootstrap {self.bootstrap}: use at least 10 resamples (200 is the default)")
        if self.utility is not None and not (Path(self.utility) / "utility.json").is_file():
            raise MedisynthError(f"--utility {self.utility}: no utility.json there; pass the --out folder of `medisynth utility`")
        if self.min_class_samples < self.prdc_k + 1:
            raise MedisynthError(f"--min-class-samples must exceed --prdc-k ({self.prdc_k})")
