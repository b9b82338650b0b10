"""The feature-extractor contract shared by every feature space."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from medisynth.registry import Registry


class FeatureSpaceUnavailable(Exception):
    """This feature space cannot run here (missing weights or package); ``str(e)`` is one line saying how to fix it."""


@dataclass
class ExtractorContext:
    """What an extractor may need to build itself."""

    real_root: Optional[Path] = None  # the prepared data set (the domain classifier trains on its train split)
    weights: Optional[Path] = None  # Inception weights (torch-fidelity format)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    cache_dir: Optional[Path] = None
    seed: int = 0
    batch_size: int = 64
    options: dict = field(default_factory=dict)  # per-space extras, e.g. {"domain_epochs": 5}


@dataclass
class Features:
    features: np.ndarray  # N x D float32
    logits: Optional[np.ndarray] = None  # N x K classifier logits, where the space has a classifier head


class FeatureExtractor:
    """Maps uint8 N x C x H x W images (C = 1 or 3) to an N x D feature matrix."""

    name: str = ""
    description: str = ""
    has_logits: bool = False

    def extract(self, images: torch.Tensor) -> Features:
        raise NotImplementedError

    def info(self) -> dict:
        return {"name": self.name, "description": self.description}


#: feature space name -> the module that defines it (imported on first use); each module registers
#: its ``build(context) -> FeatureExtractor`` with ``@register_feature_space(name)``.
FEATURE_SPACES: Registry[Callable[[ExtractorContext], FeatureExtractor]] = Registry("feature space", lazy={
    "inception": "medisynth.features.inception",
    "domain": "medisynth.features.domain",
    "radiomics": "medisynth.features.radiomics",
    "pixels": "medisynth.features.pixel_pca",
    "ssl": "medisynth.features.ssl",
})


def register_feature_space(name: str):
    """Decorator: register ``build(context) -> FeatureExtractor`` as feature space ``name``."""
    return FEATURE_SPACES.register(name)
