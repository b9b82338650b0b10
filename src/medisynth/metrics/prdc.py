"""Precision and recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020).

Each real sample gets a ball of radius = distance to its k-th nearest real neighbour
(the point itself excluded).
  precision: fraction of fake samples inside at least one real ball (fidelity)
  recall:    fraction of real samples inside at least one fake ball (fake balls likewise)
  density:   mean number of real balls containing a fake sample, / k (can exceed 1)
  coverage:  fraction of real samples whose ball contains at least one fake sample

Precision and recall come from torch-fidelity's ``prc_features_to_metric``. torch-fidelity has
no density/coverage, so they are computed here from the same balls, built with torch-fidelity's
own distance function and the same k-th-neighbour rule (``knn_radii``).
"""
from __future__ import annotations

import torch
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, calc_cdist_full, prc_features_to_metric

from medisynth.defaults import PRDC_K
from medisynth.metrics._common import as_features, warn_small


def knn_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each row of ``x`` to its k-th nearest other row (torch-fidelity's ball radius)."""
    return calc_cdist_full(x, x).kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


def density_coverage(real: torch.Tensor, fake: torch.Tensor, k: int) -> dict[str, float]:
    """Density and coverage of ``fake`` against the k-NN balls of ``real`` (both N x D tensors)."""
    real_radius = knn_radii(real, k)
    d_real_fake = calc_cdist_full(real, fake)  # [r, f]
    inside_real_ball = d_real_fake <= real_radius[:, None]  # fake f inside real ball r
    return {
        "density": float(inside_real_ball.double().sum(dim=0).mean() / k),
        "coverage": float(inside_real_ball.any(dim=1).double().mean()),
    }


def one_point_coverage(real_features, other_features, k: int = PRDC_K) -> float:
    """Coverage of ``real`` by ONE point, the mean of ``other``: what a set collapsed onto one average image scores.

    With few samples in many dimensions the k-NN balls are wide and the mean of any set lies inside most of them
    (hubness), so a collapsed or blurry set can cover as much as real images do. When this figure comes near the
    coverage of ``other`` itself, coverage at this sample size cannot tell collapse from variety."""
    real = torch.from_numpy(as_features(real_features, "real features"))
    centre = torch.from_numpy(as_features(other_features, "other features")).mean(dim=0, keepdim=True)
    if len(real) <= k:
        raise ValueError(f"coverage needs more than k={k} real samples")
    return density_coverage(real, centre, k)["coverage"]


def prdc(real_features, fake_features, k: int = PRDC_K) -> dict[str, float]:
    """Precision, recall, density and coverage with k-NN balls of ``k`` neighbours."""
    real = torch.from_numpy(as_features(real_features, "real features"))
    fake = torch.from_numpy(as_features(fake_features, "fake features"))
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in dimension: {real.shape[1]} vs {fake.shape[1]}")
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall need more than k={k} samples per set")
    if min(len(real), len(fake)) < 10 * k:
        warn_small(f"precision/recall/density/coverage from {min(len(real), len(fake))} samples with k={k}: coarse")
    # torch-fidelity's convention: features_1 is the generated set, features_2 the real one
    pr = prc_features_to_metric(fake, real, prc_neighborhood=k, save_cpu_ram=False, verbose=False)
    return {"precision": pr[KEY_METRIC_PRECISION], "recall": pr[KEY_METRIC_RECALL], **density_coverage(real, fake, k)}
