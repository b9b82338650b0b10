"""``radiomics``: pyradiomics first-order and texture (GLCM, GLRLM, GLSZM) features of the gray image,
whole image as the region of interest, z-scored by the real set -> Frechet Radiomics Distance
(Osuala et al. 2024) when FID is computed in this space.

Optional: pyradiomics is not a dependency. On Python 3.11 its sdist needs numpy and versioneer
present at build time:  pip install numpy versioneer SimpleITK && pip install pyradiomics --no-build-isolation
Per-image Python work (slow: ~10-50 images/s); meant for hundreds of images, not tens of thousands.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from medisynth.features.base import ExtractorContext, FeatureExtractor, FeatureSpaceUnavailable, Features, register_feature_space

INSTALL_HINT = (
    "radiomics skipped: pyradiomics is not installed; install it with "
    "`pip install numpy versioneer SimpleITK && pip install pyradiomics --no-build-isolation`"
)
FEATURE_CLASSES = ("firstorder", "glcm", "glrlm", "glszm")


class RadiomicsExtractor(FeatureExtractor):
    name = "radiomics"
    description = "pyradiomics first-order + GLCM/GLRLM/GLSZM features of the gray image (whole image ROI)"

    def __init__(self):
        import SimpleITK as sitk  # noqa: F401  (pyradiomics needs it)
        from radiomics import featureextractor

        logging.getLogger("radiomics").setLevel(logging.ERROR)
        self.extractor = featureextractor.RadiomicsFeatureExtractor(binWidth=8, force2D=True)
        self.extractor.disableAllFeatures()
        for cls in FEATURE_CLASSES:
            self.extractor.enableFeatureClassByName(cls)

    def extract(self, images: torch.Tensor) -> Features:
        import SimpleITK as sitk

        rows = []
        gray = images.float().mean(dim=1).round().to(torch.uint8).numpy()
        mask = sitk.GetImageFromArray(np.ones(gray.shape[1:], np.uint8)[None])
        for img in gray:
            result = self.extractor.execute(sitk.GetImageFromArray(img[None].astype(np.float32)), mask)
            rows.append([float(v) for k, v in result.items() if not k.startswith("diagnostics")])
        return Features(np.nan_to_num(np.asarray(rows, dtype=np.float32)))


@register_feature_space("radiomics")
def build(context: ExtractorContext) -> RadiomicsExtractor:
    try:
        return RadiomicsExtractor()
    except ImportError:
        raise FeatureSpaceUnavailable(INSTALL_HINT) from None
