"""Feature spaces by name: ``build_extractor(name, context)``; one module per extractor.

  inception  torch-fidelity's FID Inception-v3 (needs local weights: --weights or $MEDISYNTH_INCEPTION_WEIGHTS)
  domain     penultimate layer of medisynth's grade classifier trained on the real train split (cached)
  radiomics  pyradiomics first-order + texture features (Frechet Radiomics Distance; optional extra)
  pixels     downsampled pixels projected by PCA fitted on the real images (cheap, always available)

A space that cannot run raises ``FeatureSpaceUnavailable`` with a one-line reason.
"""
from __future__ import annotations

import importlib

from medisynth.features.base import ExtractorContext, FeatureExtractor, Features, FeatureSpaceUnavailable

FEATURE_SPACES = {
    "inception": "medisynth.features.inception",
    "domain": "medisynth.features.domain",
    "radiomics": "medisynth.features.radiomics",
    "pixels": "medisynth.features.pixel_pca",
}


def build_extractor(name: str, context: ExtractorContext) -> FeatureExtractor:
    if name not in FEATURE_SPACES:
        from medisynth.errors import MedisynthError

        raise MedisynthError(f"unknown feature space {name!r}; choose from {', '.join(FEATURE_SPACES)}")
    module = importlib.import_module(FEATURE_SPACES[name])
    return module.build(context)


__all__ = ["FEATURE_SPACES", "build_extractor", "ExtractorContext", "FeatureExtractor", "Features", "FeatureSpaceUnavailable"]
