"""Frechet distance between Gaussians fitted to two feature sets (FID, Heusel et al. 2017).

    FID = |mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^(1/2))

tr((S_r S_f)^(1/2)) is the sum of the square roots of the eigenvalues of S_r S_f, as in
torch-fidelity: those eigenvalues are real and >= 0 in exact arithmetic, so tiny negative
or imaginary round-off parts are dropped (never a complex or NaN result). With fewer samples
than feature dimensions the covariances are singular and FID is biased upwards: we warn.
"""
from __future__ import annotations

import numpy as np

from medisynth.metrics._common import as_features, warn_small


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector and (unbiased, N-1) covariance matrix of N x D features."""
    x = as_features(features)
    if len(x) < 2:
        raise ValueError("FID needs at least 2 samples per set")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics have different shapes: {mu1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2)
    tr_covmean = np.sqrt(np.clip(eigenvalues.real, 0.0, None)).sum()
    fid = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    return max(fid, 0.0)  # round-off can give -1e-12 for identical sets


def fid_from_features(real_features, fake_features) -> float:
    real, fake = as_features(real_features, "real features"), as_features(fake_features, "fake features")
    n, dim = min(len(real), len(fake)), real.shape[1]
    if n <= dim:
        warn_small(
            f"FID from {n} samples in {dim} feature dimensions: covariances are singular and FID is "
            "strongly biased upwards; compare only FIDs computed with the same sample sizes"
        )
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))
