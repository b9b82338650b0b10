"""Pixel-level figures: SSIM/PSNR against the nearest real image, mean-image MSE, intensity histograms.

SSIM is medisynth's one SSIM (ssim.py: torchmetrics, 11 px Gaussian window); PSNR comes from
torchmetrics (computed per pair, batched). Images are compared on a
[0, 1] intensity scale; the "nearest real image" is chosen by the caller (in evaluate: the
most similar training image in the memorization embedding, see memorization.py).
"""
from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance
from torchmetrics.functional.image import peak_signal_noise_ratio

from medisynth.metrics._images import as_uint8_nchw, to_unit_float
from medisynth.metrics.ssim import ssim


def paired_ssim_psnr(fake, real_matched, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Per-pair SSIM and PSNR (dB) of fake[i] against real_matched[i] (both uint8 N x C x H x W)."""
    fake, real_matched = as_uint8_nchw(fake), as_uint8_nchw(real_matched)
    if fake.shape != real_matched.shape:
        raise ValueError(f"paired images differ in shape: {tuple(fake.shape)} vs {tuple(real_matched.shape)}")
    psnr = []
    with torch.inference_mode():
        for i in range(0, len(fake), batch_size):
            a, b = to_unit_float(fake[i : i + batch_size]), to_unit_float(real_matched[i : i + batch_size])
            mse = (a - b).pow(2).flatten(1).mean(dim=1)
            # identical images have infinite PSNR; cap at 100 dB so JSON stays finite
            psnr.append(peak_signal_noise_ratio(a, b, data_range=1.0, reduction="none", dim=(1, 2, 3)).where(mse > 0, torch.tensor(100.0)))
    return ssim(fake, real_matched, batch_size), torch.cat(psnr).clamp(max=100.0).numpy().astype(np.float64)


def mean_image(images) -> np.ndarray:
    """The pixel-wise mean image, float in [0, 1], C x H x W."""
    images = as_uint8_nchw(images)
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    for i in range(0, len(images), 512):
        total += images[i : i + 512].double().sum(dim=0)
    return (total / len(images) / 255.0).numpy()


def mean_image_mse(real, fake) -> float:
    """MSE between the mean real and the mean synthetic image ([0, 1] scale; seed 000's comparison)."""
    return float(np.mean((mean_image(real) - mean_image(fake)) ** 2))


def intensity_histograms(images, bins: int = 256) -> np.ndarray:
    """C x bins normalised intensity histograms of uint8 images (one per channel)."""
    images = as_uint8_nchw(images)
    c = images.shape[1]
    counts = np.zeros((c, 256), dtype=np.float64)
    for i in range(0, len(images), 512):
        chunk = images[i : i + 512].transpose(0, 1).reshape(c, -1).numpy()
        for ch in range(c):
            counts[ch] += np.bincount(chunk[ch], minlength=256)
    if bins != 256:
        counts = counts.reshape(c, bins, 256 // bins).sum(axis=2)
    return counts / counts.sum(axis=1, keepdims=True)


def histogram_distance(real, fake) -> dict[str, float]:
    """Intensity-histogram distances, averaged over channels.

    wasserstein: earth mover's distance between the intensity distributions on a [0, 1] scale
    (0 = identical; 0.1 = intensities shifted by a tenth of the range).
    jensen_shannon: Jensen-Shannon distance (base 2) of the 256-bin histograms, in [0, 1].
    """
    h_real, h_fake = intensity_histograms(real), intensity_histograms(fake)
    levels = np.arange(256) / 255.0
    w = [wasserstein_distance(levels, levels, h_real[c], h_fake[c]) for c in range(len(h_real))]
    js = [jensenshannon(h_real[c], h_fake[c], base=2) for c in range(len(h_real))]
    return {"wasserstein": float(np.mean(w)), "jensen_shannon": float(np.nan_to_num(np.mean(js)))}
