"""``pixels``: a cheap, always-available space: images area-downsampled to 16 x 16 (gray), projected
onto the first 64 principal components of the REAL images (scikit-learn PCA, fitted on first use).

Not a perceptual space: it sees global intensity layout, not texture. Useful as a sanity check
and where no trained encoder exists.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.decomposition import PCA

from medisynth.data.images import uint8_to_float
from medisynth.features.base import ExtractorContext, FeatureExtractor, Features, register_feature_space

SIDE = 16
COMPONENTS = 64


class PixelPCAExtractor(FeatureExtractor):
    name = "pixels"
    description = f"gray pixels downsampled to {SIDE}x{SIDE}, PCA (up to {COMPONENTS} components, at most a quarter of the real images) fitted on the real images"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.pca: PCA | None = None

    @staticmethod
    def raw(images: torch.Tensor) -> np.ndarray:
        out = []
        for i in range(0, len(images), 1024):
            x = uint8_to_float(images[i : i + 1024]).mean(dim=1, keepdim=True)
            out.append(F.adaptive_avg_pool2d(x, SIDE).flatten(1))
        return torch.cat(out).numpy()

    def fit(self, real_images: torch.Tensor) -> None:
        raw = self.raw(real_images)
        # far fewer components than images: with ~n components PCA spends them on each real image's own
        # noise, real points spread out while synthetic ones collapse to the centre (recall -> 0 artefact)
        n = min(COMPONENTS, len(raw) // 4, raw.shape[1])
        self.pca = PCA(n_components=max(n, 1), svd_solver="randomized", random_state=self.seed).fit(raw)

    def extract(self, images: torch.Tensor) -> Features:
        if self.pca is None:  # the first set passed in (evaluate passes the real set first) defines the space
            self.fit(images)
        return Features(self.pca.transform(self.raw(images)).astype(np.float32))


@register_feature_space("pixels")
def build(context: ExtractorContext) -> PixelPCAExtractor:
    return PixelPCAExtractor(context.seed)
