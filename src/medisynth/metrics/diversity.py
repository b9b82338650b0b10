"""Diversity: mean pairwise MS-SSIM within a set (lower = more diverse), on random pairs.

MS-SSIM (torchmetrics) with the standard 5 scales and an 11 px window needs images of at
least ~160 px. For smaller images we use the largest number of scales that fits (the first
standard betas, renormalised to sum to 1), and plain SSIM below that; the result records
how many scales were used, so compare only values computed at the same image size.
Plain SSIM is medisynth's one SSIM (ssim.py), and MS-SSIM uses its window: torchmetrics sizes a
Gaussian window from sigma (11 px at sigma 1.5) whatever ``kernel_size`` says, so the coarsest
scale must still be at least ``SSIM_MIN_SIZE`` px.
"""
from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

from medisynth.metrics._images import as_uint8_nchw, to_unit_float
from medisynth.metrics.ssim import SSIM_MIN_SIZE, SSIM_WINDOW, ssim

STANDARD_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_scales(size: int, kernel_size: int = SSIM_WINDOW) -> int:
    """The most scales (<= 5) torchmetrics accepts for ``size`` px images with this window."""
    for scales in range(5, 1, -1):
        coarsest = size // 2 ** (scales - 1)
        if coarsest >= SSIM_MIN_SIZE and size > (kernel_size - 1) * max(1, scales - 1) ** 2:
            return scales
    return 1


def mean_pairwise_ms_ssim(images, pairs: int = 500, seed: int = 0, batch_size: int = 128) -> dict:
    """Mean MS-SSIM over ``pairs`` random pairs of distinct images of one set."""
    images = as_uint8_nchw(images)
    n = len(images)
    if n < 2:
        return {"mean": None, "pairs": 0, "scales": 0}
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, size=pairs)
    b = (a + rng.integers(1, n, size=pairs)) % n  # never the same image
    size = min(images.shape[-2:])
    kernel = SSIM_WINDOW
    scales = ms_ssim_scales(size, kernel)
    betas = tuple(np.array(STANDARD_BETAS[:scales]) / sum(STANDARD_BETAS[:scales]))
    values = []
    with torch.inference_mode():
        for i in range(0, pairs, batch_size):
            x = to_unit_float(images[a[i : i + batch_size]])
            y = to_unit_float(images[b[i : i + batch_size]])
            if scales >= 2:
                v = multiscale_structural_similarity_index_measure(
                    x, y, data_range=1.0, kernel_size=kernel, betas=betas, reduction="none"
                )
            else:
                v = torch.from_numpy(ssim(x, y))
            values.append(v)
    v = torch.cat(values).double()
    return {"mean": float(v.mean()), "std": float(v.std()), "pairs": int(pairs), "scales": int(scales), "kernel_size": kernel}
