"""Feature spaces by name: ``build_extractor(name, context)``; one module per extractor.

  inception  torch-fidelity's FID Inception-v3 (needs local weights: --weights or $MEDISYNTH_INCEPTION_WEIGHTS)
  domain     penultimate layer of medisynth's grade classifier trained on the real train split (cached)
  radiomics  pyradiomics first-order + texture features (Frechet Radiomics Distance; optional extra)
  pixels     downsampled pixels projected by PCA fitted on the real images (cheap, always available)
  ssl        a small encoder trained self-supervised on the real train split (cached; no labels, no downloads)

A space that cannot run raises ``FeatureSpaceUnavailable`` with a one-line reason.
"""
from __future__ import annotations

from medisynth.features.base import (
    FEATURE_SPACES,
    ExtractorContext,
    FeatureExtractor,
    Features,
    FeatureSpaceUnavailable,
    register_feature_space,
)


def build_extractor(name: str, context: ExtractorContext) -> FeatureExtractor:
    """The feature extractor ``name``, built for ``context`` (FeatureSpaceUnavailable when it cannot run here)."""
    return FEATURE_SPACES.get(name)(context)


__all__ = ["FEATURE_SPACES", "build_extractor", "register_feature_space", "ExtractorContext", "FeatureExtractor",
           "Features", "FeatureSpaceUnavailable"]
