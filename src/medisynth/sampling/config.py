"""What ``medisynth sample`` is asked (``SampleConfig``) and what it reports (``SampleResult``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from medisynth.defaults import SAMPLE


#: ``medisynth sample`` exits with this status when it wrote fewer images than asked for (the
#: accepted images are kept; sample.json says what was asked and what was written)
SHORTFALL_EXIT_STATUS = 3
#: a class whose filters accepted nothing after max(ZERO_ACCEPTANCE_BATCHES batches,
#: ZERO_ACCEPTANCE_IMAGES images) stops early: more of the same would not change the answer
ZERO_ACCEPTANCE_BATCHES = 4
ZERO_ACCEPTANCE_IMAGES = 256


def zero_acceptance_limit(batch_size: int) -> int:
    """Images tried with none accepted after which a class stops early."""
    return max(ZERO_ACCEPTANCE_BATCHES * batch_size, ZERO_ACCEPTANCE_IMAGES)


@dataclass
class SampleConfig:
    """A sampling request. Give exactly one of ``n`` and ``per_class``."""

    run: Path  #: the training run folder (``medisynth train --out``)
    out: Path  #: the image folder to create (images/, labels.csv, grid.png, sample.json)
    n: Optional[int] = None  #: this many images, split equally over the classes the run can make
    per_class: Optional[dict[Any, int]] = None  #: class name or index -> count
    truncation: float = SAMPLE["truncation"]  #: latent truncation (models with a truncation trick); 1 = off
    min_d_score: Optional[float] = None  #: keep images the discriminator scores at least this high
    max_similarity: Optional[float] = None  #: drop images this similar (cosine) to a training image
    min_confidence: Optional[float] = None  #: domain-classifier probability of the sampled class
    max_attempts: float = SAMPLE["max_attempts"]  #: per class: try at most this many times the requested count
    seed: int = SAMPLE["seed"]  #: fixes the images (per class: seed * 1000 + class index + 1)
    batch_size: int = SAMPLE["batch_size"]  #: images generated per forward pass
    device: str = SAMPLE["device"]  #: "auto", "cpu", "cuda", "cuda:1", ...
    ema: bool = True  #: use the EMA networks when the run has them
    guidance_scale: Optional[float] = None  #: classifier-free guidance (diffusion models)
    steps: Optional[int] = None  #: sampling steps (diffusion models)
    format: str = SAMPLE["format"]  #: image files: "png", "dicom" or "nifti" (``medisynth.sampling.formats``)
    overwrite: bool = False  #: replace ``out`` when it exists
    progress: bool = True  #: show a progress bar on a terminal


@dataclass
class SampleResult:
    """Counts per class label: asked for, written, tried; acceptance = passed the filters / tried."""

    out: Path
    requested: dict[str, int]
    written: dict[str, int]
    attempts: dict[str, int]
    acceptance: dict[str, float]
    shortfall: dict[str, int] = field(default_factory=dict)  #: classes with fewer images than asked for
    seconds: float = 0.0
    stopped_early: dict[str, str] = field(default_factory=dict)  #: class -> why it stopped (nothing accepted)

    @property
    def complete(self) -> bool:
        """Every class got the images asked for (the CLI exits with SHORTFALL_EXIT_STATUS otherwise)."""
        return not self.shortfall

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"wrote {sum(self.written.values())} images to {self.out} in {self.seconds:.1f} s"]
        for name, count in self.written.items():
            rate = self.acceptance.get(name, 1.0)
            lines.append(f"  {name}: {count}/{self.requested[name]} (acceptance {rate:.1%} of {self.attempts[name]} tried)")
        lines += [f"  {name}: {message}" for name, message in self.stopped_early.items()]
        return "\n".join(lines)
