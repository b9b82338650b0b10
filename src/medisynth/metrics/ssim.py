"""The one SSIM of medisynth (Wang et al. 2004), used by evaluate's pixel figures, the
diversity fallback, the vessel pipeline's reference protocol and EDSR's evaluation.

Setting: torchmetrics' SSIM with an 11 x 11 Gaussian window, sigma 1.5, K1 = 0.01,
K2 = 0.03, on intensities scaled to [0, 1] (data range 1), the SSIM map averaged over
pixels and channels. Why this one: it is the setting of the SSIM paper and of most
published image-synthesis results, and the one torchmetrics' MS-SSIM (diversity) builds on,
so SSIM and MS-SSIM in one report share a window; it is batched in torch. (scikit-image's
default, a 7 x 7 uniform window, gives other numbers for the same images: seed 003 does not
say which it used.) With a Gaussian window torchmetrics sizes the window from sigma, so the
window is 11 px at every image size; images need at least 6 px a side.
"""
from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import structural_similarity_index_measure

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11  # what torchmetrics derives from sigma 1.5: int(3.5 * 1.5 + 0.5) * 2 + 1
SSIM_MIN_SIZE = SSIM_WINDOW // 2 + 1  # the reflect padding of half a window must fit in the image


def _unit_float(images, name: str) -> torch.Tensor:
    """uint8 (/255), bool (0/1) or float already in [0, 1], N x C x H x W -> float32 tensor."""
    t = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if t.ndim != 4:
        raise ValueError(f"{name}: expected N x C x H x W images, got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    t = t.float()
    if t.numel() and (t.min() < 0 or t.max() > 1):
        raise ValueError(f"{name}: float images must be in [0, 1] (got {float(t.min()):.3g}..{float(t.max()):.3g})")
    return t


def ssim(images, references, batch_size: int = 64) -> np.ndarray:
    """Per-image SSIM of ``images[i]`` against ``references[i]``, float64 array of N values.

    Both N x C x H x W, uint8 (scaled by 1/255), bool or float in [0, 1]; ``references`` may be
    a single 1 x C x H x W image, compared with every image.
    """
    x, y = _unit_float(images, "images"), _unit_float(references, "references")
    if len(y) == 1 and len(x) != 1:
        y = y.expand(len(x), *y.shape[1:])
    if x.shape != y.shape:
        raise ValueError(f"images and references differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    if min(x.shape[-2:]) < SSIM_MIN_SIZE:
        raise ValueError(f"SSIM needs images of at least {SSIM_MIN_SIZE} px a side, got {tuple(x.shape[-2:])}")
    values = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            values.append(
                structural_similarity_index_measure(
                    x[i : i + batch_size], y[i : i + batch_size], gaussian_kernel=True, sigma=SSIM_SIGMA,
                    kernel_size=SSIM_WINDOW, data_range=1.0, k1=0.01, k2=0.03, reduction="none",
                )
            )
    return torch.cat(values).double().numpy() if values else np.zeros(0)
