"""The sampler's filters, and the checks that a model supports what was asked of it.

- ``min_d_score``: keep images the discriminator scores at least that high (seed paper 000
  keeps D(G(z)) >= 0.76);
- ``max_similarity``: drop edited copies of training images (``metrics.copy_detection``: correlation
  after aligning flip, zoom, rotation and shift at least that high);
- ``min_confidence``: keep images the domain classifier (trained on the run's data set) puts in
  the sampled class with at least that probability.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from medisynth.errors import MedisynthError
from medisynth.models.base import GenerativeModel
from medisynth.runs import Run
from medisynth.sampling.config import SampleConfig
from medisynth.sampling.plan import Job


def check_options(config: SampleConfig, model: GenerativeModel) -> dict[str, Any]:
    """Refuse what ``model`` cannot do; return the sampling options to pass to ``model.generate``."""
    if model.needs_masks:
        raise MedisynthError(
            f"model {model.name!r} translates masks into images; `medisynth sample` does not drive it: "
            f"use the vessel pipeline (`medisynth pipeline`)"
        )
    if config.truncation != 1.0 and not model.supports_truncation:
        raise MedisynthError(f"--truncation: model {model.name!r} has no truncation trick; drop --truncation")
    if config.truncation <= 0:
        raise MedisynthError(f"--truncation must be positive (got {config.truncation})")
    if config.min_d_score is not None and not model.has_discriminator:
        raise MedisynthError(
            f"--min-d-score: model {model.name!r} has no discriminator that gives probabilities (a Wasserstein "
            "critic does not); use a fastgan, dcgan or cgan run, or --min-confidence for a conditional model"
        )
    options = {}
    for name in ("guidance_scale", "steps"):
        value = getattr(config, name)
        if value is None:
            continue
        if name not in model.sampling_options:
            flag = {"steps": "--sampling-steps"}.get(name, "--" + name.replace("_", "-"))
            raise MedisynthError(
                f"{flag}: model {model.name!r} has no such sampling option"
                + (f" (it has: {', '.join(model.sampling_options)})" if model.sampling_options else "")
            )
        options[name] = value
    return options


def _training_data(run: Run, flag: str, what: str) -> Run:
    if not (run.data / "manifest.json").is_file():
        raise MedisynthError(f"{flag} {what}, but the run's data set {run.data} is not there; put it back at that path")
    return run


def reference_images(run: Run) -> np.ndarray:
    """Training images (uint8 N x H x W x C) the near-copy filter compares against."""
    from medisynth.data.dataset import PreparedDataset  # imported on use: pandas is not needed otherwise

    _training_data(run, "--max-similarity", "compares with the training images")
    target = run.config.get("target", "images")
    dataset = PreparedDataset(run.data, split="train", with_masks=target == "masks")
    return dataset.masks_uint8()[..., None] if target == "masks" else dataset.images_uint8()


def confidence_classifier(run: Run, device: torch.device, progress: bool):
    """The domain classifier of the run's training data (trained once, then cached by content hash)."""
    from medisynth.classifier import domain_classifier  # imported on use: the classifier is only needed here

    _training_data(run, "--min-confidence", "asks a classifier trained on the run's data set")
    return domain_classifier(run.data, device=device, progress=progress)


@dataclass
class Filters:
    """The filters of one sampling request, built once, applied to every batch."""

    min_d_score: Optional[float] = None
    near_copy: Optional[Any] = None  # a metrics.copy_detection.CopyDetector
    min_confidence: Optional[float] = None
    classifier: Optional[torch.nn.Module] = None
    device: torch.device = torch.device("cpu")

    @classmethod
    def build(cls, config: SampleConfig, run: Run, jobs: list[Job], device: torch.device) -> "Filters":
        near_copy = None
        if config.max_similarity is not None:
            from medisynth.metrics import copy_detection  # imported on use: the metrics stack is not needed otherwise

            reference = torch.from_numpy(reference_images(run)).permute(0, 3, 1, 2)
            near_copy = copy_detection.copy_detector(run.data, config.max_similarity, progress=config.progress,
                                                     reference=reference)
        classifier = None
        if config.min_confidence is not None:
            if not 0.0 <= config.min_confidence <= 1.0:
                raise MedisynthError(f"--min-confidence must be a probability in [0, 1] (got {config.min_confidence})")
            if any(j.class_index < 0 for j in jobs):
                raise MedisynthError("--min-confidence needs labelled samples: use a conditional model or a --model-per-class run")
            classifier = confidence_classifier(run, device, config.progress)
        return cls(config.min_d_score, near_copy, config.min_confidence, classifier, device)

    @property
    def active(self) -> bool:
        return self.min_d_score is not None or self.near_copy is not None or self.classifier is not None

    @property
    def columns(self) -> list[str]:
        """The labels.csv columns the filters add (their scores)."""
        return (["d_score"] if self.min_d_score is not None else []) + (["confidence"] if self.classifier is not None else [])

    def on_model_output(self, model: GenerativeModel, images: torch.Tensor, labels: torch.Tensor
                        ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(keep mask, scores) from the float images while they are still on the device."""
        keep = torch.ones(len(images), dtype=torch.bool)
        if self.min_d_score is None:
            return keep, []
        scores = model.discriminator_score(images, labels).float().flatten().cpu()
        return keep & (scores >= self.min_d_score), [scores]

    def on_pixels(self, uint8: np.ndarray, class_index: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(keep mask, scores) from the uint8 N x C x H x W images."""
        keep = torch.ones(len(uint8), dtype=torch.bool)
        if self.near_copy is not None:
            keep &= torch.from_numpy(np.asarray(self.near_copy.keep(uint8), dtype=bool))
        if self.classifier is None:
            return keep, []
        from medisynth.classifier import predict_proba

        confidence = torch.from_numpy(predict_proba(self.classifier, uint8, device=self.device)[:, class_index])
        return keep & (confidence >= self.min_confidence), [confidence]
