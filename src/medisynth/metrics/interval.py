"""KID and coverage for small classes, with a bootstrap confidence interval.

Per-class FID needs tens of images; the small data sets medisynth is for have 5-20 images in a
rare class. KID (unbiased MMD^2, torch-fidelity's polynomial kernel with ``metrics.kid``'s settings) and coverage
(Naeem et al. 2020) stay defined down to a handful of images, and a percentile bootstrap over
images says how far to trust them: both sets are resampled with replacement, and pairs made of
two copies of the SAME image are left out of every within-set sum (kernel U-statistic, k-NN
radius), so a resampled duplicate never looks like a perfect neighbour.

The estimate itself is computed on the full sets; only its interval comes from the bootstrap.
"""
from __future__ import annotations

import numpy as np

from medisynth.defaults import PRDC_K
from medisynth.metrics._common import as_features
from medisynth.metrics.kid import KID_KERNEL

MIN_IMAGES = 5  # below this per set the bootstrap has too few distinct images to say anything
MAX_IMAGES = 400  # larger classes are subsampled (seeded) for the interval: the kernels stay small
LEVEL = 0.95


def small_sample_k(n_real: int, k: int = PRDC_K) -> int:
    """The coverage neighbourhood size for ``n_real`` images: ``k``, shrunk so that a ball is
    at most about a third of the class (with 6 images and k = 5 every ball would hold the class)."""
    return int(max(1, min(k, n_real // 3)))


def _mmd2(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray, same_x: np.ndarray, same_y: np.ndarray) -> float:
    """Unbiased MMD^2 for unequal sizes; within-set pairs flagged in ``same_*`` are left out."""
    keep_x, keep_y = ~same_x, ~same_y
    if not keep_x.any() or not keep_y.any():  # a resample of one image repeated: no within-set pair
        return float("nan")
    return float(k_xx[keep_x].mean() + k_yy[keep_y].mean() - 2.0 * k_xy.mean())


def _coverage(d_rr: np.ndarray, d_rf: np.ndarray, same_r: np.ndarray, k: int) -> float:
    d = np.where(same_r, np.inf, d_rr)
    radius = np.partition(d, k - 1, axis=1)[:, k - 1]  # k-th nearest other real image
    return float(np.mean(d_rf.min(axis=1) <= radius))


def kid_coverage_interval(real_features, fake_features, k: int = PRDC_K, n_boot: int = 200, seed: int = 0,
                          level: float = LEVEL) -> dict:
    """KID and coverage of two small feature sets with percentile-bootstrap intervals.

    Returns ``{"n_real", "n_fake", "k", "kid", "kid_ci", "coverage", "coverage_ci", "bootstrap", "level"}``
    (``*_ci`` = [low, high]). Raises ValueError below ``MIN_IMAGES`` images in either set.
    """
    real, fake = as_features(real_features, "real features"), as_features(fake_features, "fake features")
    rng = np.random.default_rng(seed)
    n_real_all, n_fake_all = len(real), len(fake)
    if min(n_real_all, n_fake_all) < MIN_IMAGES:
        raise ValueError(f"needs at least {MIN_IMAGES} images per set, got {n_real_all} real and {n_fake_all} synthetic")
    if n_real_all > MAX_IMAGES:
        real = real[np.sort(rng.choice(n_real_all, MAX_IMAGES, replace=False))]
    if n_fake_all > MAX_IMAGES:
        fake = fake[np.sort(rng.choice(n_fake_all, MAX_IMAGES, replace=False))]
    k = small_sample_k(len(real), k)
    from torch_fidelity.metric_kid import kernel_poly  # KID's own kernel, with KID's settings

    k_rr, k_ff, k_rf = (kernel_poly(x, y, **KID_KERNEL) for x, y in ((real, real), (fake, fake), (real, fake)))
    diff = real[:, None, :] - real[None, :, :]
    d_rr = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    d_rf = np.sqrt(np.maximum(0.0, (real**2).sum(1)[:, None] + (fake**2).sum(1)[None, :] - 2.0 * real @ fake.T))

    def stats(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        same_a, same_b = a[:, None] == a[None, :], b[:, None] == b[None, :]
        kid = _mmd2(k_rr[np.ix_(a, a)], k_ff[np.ix_(b, b)], k_rf[np.ix_(a, b)], same_a, same_b)
        return kid, _coverage(d_rr[np.ix_(a, a)], d_rf[np.ix_(a, b)], same_a, k)

    kid, coverage = stats(np.arange(len(real)), np.arange(len(fake)))
    boot = np.array([stats(rng.integers(0, len(real), len(real)), rng.integers(0, len(fake), len(fake))) for _ in range(n_boot)])
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.nanpercentile(boot, [tail, 100 - tail], axis=0)
    return {
        "n_real": int(n_real_all), "n_fake": int(n_fake_all), "k": k,
        "kid": kid, "kid_ci": [float(lo[0]), float(hi[0])],
        "coverage": coverage, "coverage_ci": [float(lo[1]), float(hi[1])],
        "bootstrap": int(n_boot), "level": float(level),
    }


__all__ = ["MIN_IMAGES", "kid_coverage_interval", "small_sample_k"]
