"""The field of view (FOV) of a fundus photograph: the inscribed disc, or the bright region of an image.

Shared by the pipeline (``vessels``) and its statistics (``vessel_stats``), below both.
"""
from __future__ import annotations

import numpy as np


def circle_fov(size: int) -> np.ndarray:
    """The disc inscribed in a size x size square (bool)."""
    yy, xx = np.mgrid[:size, :size]
    c = (size - 1) / 2.0
    return ((yy - c) ** 2 + (xx - c) ** 2) <= (size / 2.0) ** 2


def fov_from_image(image: np.ndarray, threshold: int = 10) -> np.ndarray:
    """The field of view of a photograph (largest bright region, holes filled); the circle if that fails."""
    from scipy import ndimage

    inside = image.max(axis=-1) > threshold
    labels, n = ndimage.label(ndimage.binary_opening(inside, iterations=2))
    if n == 0:
        return circle_fov(image.shape[0])
    largest = labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    fov = ndimage.binary_fill_holes(largest)
    if fov.mean() < 0.25:  # a dark photograph: trust geometry over pixels
        return circle_fov(image.shape[0])
    return fov
