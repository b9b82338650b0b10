"""Frechet distance between Gaussians fitted to two feature sets (FID, Heusel et al. 2017),
computed by torch-fidelity's feature-level functions.

    FID = |mu_r - mu_f|^2 + tr(S_r) + tr(S_f) - 2 tr((S_r S_f)^(1/2))

torch-fidelity takes tr((S_r S_f)^(1/2)) as the sum of the square roots of the eigenvalues of
S_r S_f, keeping only their real parts, so round-off never gives a complex or NaN result.
medisynth adds the input checks, a SmallSampleWarning when there are fewer samples than
feature dimensions (the covariances are then singular and FID is biased upwards), and a
floor at 0 (identical sets can give -1e-12).
"""
from __future__ import annotations

import numpy as np
import torch
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric

from medisynth.metrics._common import as_features, warn_small


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean vector and (unbiased, N-1) covariance matrix of N x D features (torch-fidelity's)."""
    x = as_features(features)
    if len(x) < 2:
        raise ValueError("FID needs at least 2 samples per set")
    stats = fid_features_to_statistics(torch.from_numpy(x))
    return stats["mu"], np.atleast_2d(stats["sigma"])  # D = 1 gives a 0-d covariance


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """FID from two (mean, covariance) pairs, >= 0."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"statistics have different shapes: {mu1.shape} vs {mu2.shape}")
    fid = fid_statistics_to_metric({"mu": mu1, "sigma": sigma1}, {"mu": mu2, "sigma": sigma2}, verbose=False)
    return max(fid[KEY_METRIC_FID], 0.0)


def covariances_singular(n: int, dim: int) -> bool:
    """Whether FID's covariances from ``n`` samples of ``dim`` features are singular (rank < dim): FID is then
    dominated by its small-sample bias."""
    return n <= dim


def fid_from_features(real_features, fake_features) -> float:
    """FID between two N x D feature sets; warns (SmallSampleWarning) when N <= D."""
    real, fake = as_features(real_features, "real features"), as_features(fake_features, "fake features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {real.shape[1]} vs {fake.shape[1]}")
    n, dim = min(len(real), len(fake)), real.shape[1]
    if covariances_singular(n, dim):
        warn_small(
            f"FID from {n} samples in {dim} feature dimensions: covariances are singular and FID is "
            "strongly biased upwards; compare only FIDs computed with the same sample sizes"
        )
    return frechet_distance(*feature_statistics(real), *feature_statistics(fake))
