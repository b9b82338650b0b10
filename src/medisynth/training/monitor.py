"""No silent mode collapse: the diversity of a fixed batch of samples, watched during training.

At every log interval the trainer asks ``DiversityMonitor.check()`` for two figures per class, both
pairwise distances between ``per_class`` samples drawn from fixed seeded latents after
area-downsampling to at most 32 px (so they mean the same at every image size and ignore pixel-level
noise):
- ``diversity``: the mean root-mean-square pixel difference in [0, 1];
- ``structure_diversity``: the median of the same distances after standardising each image's channels to
  zero mean and unit spread, so that a brightness or colour shift of one picture does not count as a new
  picture, and one or two outliers do not lift a row of copies (the median pair of such a row is a copy).
The same figures are computed once, at the start, for up to 64 real training images of each class.

A class is reported as collapsed (``collapse_warning: [class names]`` in metrics.jsonl and
"COLLAPSE WARNING" on the progress line) when its ``diversity`` is below ``COLLAPSE_RATIO`` (one
third) of its real images' or its ``structure_diversity`` below ``STRUCTURE_COLLAPSE_RATIO`` (one
half) of theirs. Why two: measured at 64 px, real phantom fundus grades are 0.095-0.108 apart within a
class, real CT kidney classes 0.12-0.23; a fastgan after 227 steps drew grade-0 samples 0.025 apart
(0.27 of the real spread), a grid row of visibly near-identical images, and a third separates that from
a generator that has merely not learned fine detail yet. But the quality benchmark's 10-minute runs
drew rows that repeat one fundus in several tones (cgan: one smooth fundus per grade) at 0.34-0.83 of
the real pixel spread, where no pixel threshold separates them from varied rows; standardised, cgan's
are at 0.25-0.44 of the real structural spread on the phantom set (3 seeds, every grade) and 0.13-0.21
on CT (where the pixel figure warned already), fastgan's near-alike rows at 0.40-0.49 and its other
rows (some varying the disc side and the vessels) at 0.51-1.29 (this check on each run's final EMA
generator, grids looked at; means over pairs). A mean still passed CT rows of one pose with one or two
outliers (fastgan-balanced seed 1: Normal at 0.56); with the median that row is at 0.32 and warned, every
cgan class still warns (CT 0.12-0.18, phantom 0.24-0.44), CT fastgan none (0.58-1.02). Noise textures
at one brightness (the per-class dcgan's CT samples) are the reverse: low in pixels, high once
standardised, so both are watched. The thresholds are relative to each class's own real spread, so they
carry across data sets.

Drawing the samples forks the RNG and runs the model in eval mode (no BatchNorm statistics
change), so watching never changes the training result; exact resume holds.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from medisynth.models.layers import standardise_channels

COLLAPSE_RATIO = 1 / 3  # of the real pixel spread
STRUCTURE_COLLAPSE_RATIO = 1 / 2  # of the real spread of standardised images
STANDARDISE_EPS = 0.02  # in [0, 1] units: a flat image stays flat instead of amplifying its noise
MEASURE_SIZE = 32
REAL_PER_CLASS = 64
SEED_OFFSET = 54321  # the latents differ from the sample grids' (seed + 12345)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """model.eval() for the block, then every sub-module's own train/eval flag back (EMA copies stay eval)."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags.items():
            m.training = flag


def pairwise_diversity(images: torch.Tensor, standardise: bool = False, median: bool = False) -> float:
    """Mean RMS distance over all pairs of ``images`` (N x C x H x W in [-1, 1]), in [0, 1] units at <= 32 px;
    ``standardise``: each image's channels first shifted and scaled to zero mean and unit spread; ``median``: the
    median pair instead of the mean, which a few outliers in a row of copies do not lift."""
    if len(images) < 2:
        return float("nan")
    x = (images.float() + 1.0) / 2.0
    if x.shape[-1] > MEASURE_SIZE:
        x = F.interpolate(x, size=(MEASURE_SIZE, MEASURE_SIZE), mode="area")
    if standardise:
        x = standardise_channels(x, STANDARDISE_EPS)
    flat = x.flatten(1)
    n = len(flat)
    pairs = (torch.cdist(flat, flat) / flat.shape[1] ** 0.5)[torch.triu(torch.ones(n, n, dtype=torch.bool), 1)]
    return float(pairs.median() if median else pairs.mean())


def structure_diversity(images: torch.Tensor) -> float:
    """The structure figure: the median pairwise distance of standardised images."""
    return pairwise_diversity(images, standardise=True, median=True)


class DiversityMonitor:
    """Per-class diversity of fixed samples against the real images' own; see the module docstring."""

    def __init__(self, groups: dict[str, int], real: dict[str, torch.Tensor], seed: int, per_class: int = 8):
        """``groups``: class name -> the label to generate; ``real``: class name -> its real images in [-1, 1]."""
        self.groups, self.seed, self.per_class = groups, seed, per_class
        self.real_diversity = {name: pairwise_diversity(images) for name, images in real.items()}
        self.real_structure = {name: structure_diversity(images) for name, images in real.items()}

    @classmethod
    def for_run(cls, model, images: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                class_index: Optional[int], seed: int) -> Optional["DiversityMonitor"]:
        """The monitor for a training run, or None when the model's sampling is not one cheap pass.

        ``images`` are the uint8 training images, ``labels`` their classes (already only
        ``class_index``'s for a per-class run)."""
        if not getattr(model, "monitors_diversity", False):
            return None
        if model.conditional:
            groups = {name: i for i, name in enumerate(class_names) if bool((labels == i).any())}
        elif class_index is not None:
            groups = {class_names[class_index]: class_index}
        else:
            groups = {"all": 0}
        picker = torch.Generator().manual_seed(seed)
        real = {}
        for name, label in groups.items():
            index = torch.nonzero(labels == label).flatten() if name != "all" else torch.arange(len(labels))
            index = index[torch.randperm(len(index), generator=picker)[:REAL_PER_CLASS].to(index.device)]
            real[name] = images[index].float().div(127.5).sub(1.0)
        return cls(groups, real, seed)

    @torch.no_grad()
    def check(self, model) -> dict:
        """{"diversity": mean over classes, "diversity_per_class": {...}, "structure_diversity_per_class": {...},
        "collapse_warning": [names]}."""
        device = next(model.parameters()).device
        labels = torch.tensor(list(self.groups.values()), device=device).repeat_interleave(self.per_class)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), eval_mode(model):
            generator = torch.Generator(device).manual_seed(self.seed + SEED_OFFSET)
            images = model.generate(labels, generator=generator)
        chunks = dict(zip(self.groups, images.split(self.per_class)))
        per_class = {name: pairwise_diversity(chunk) for name, chunk in chunks.items()}
        structure = {name: structure_diversity(chunk) for name, chunk in chunks.items()}
        collapsed = [name for name in chunks
                     if (self.real_diversity[name] > 0 and per_class[name] < COLLAPSE_RATIO * self.real_diversity[name])
                     or (self.real_structure[name] > 0
                         and structure[name] < STRUCTURE_COLLAPSE_RATIO * self.real_structure[name])]
        return {"diversity": sum(per_class.values()) / len(per_class),
                "diversity_per_class": {k: round(v, 5) for k, v in per_class.items()},
                "structure_diversity_per_class": {k: round(v, 5) for k, v in structure.items()},
                "collapse_warning": collapsed}


def describe(record: dict) -> str:
    """The progress-line part: 'diversity 0.081' and, when a class collapsed, 'COLLAPSE WARNING: 3, 4'."""
    text = f"diversity {record['diversity']:.4f}"
    if record["collapse_warning"]:
        text += f"  COLLAPSE WARNING: {', '.join(record['collapse_warning'])}"
    return text
