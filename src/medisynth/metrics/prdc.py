"""Precision and recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020).

Each real sample gets a ball of radius = distance to its k-th nearest real neighbour.
  precision: fraction of fake samples inside at least one real ball (fidelity)
  recall:    fraction of real samples inside at least one fake ball (fake balls likewise)
  density:   mean number of real balls containing a fake sample, / k (can exceed 1)
  coverage:  fraction of real samples whose ball contains at least one fake sample
"""
from __future__ import annotations

import numpy as np
import torch

from medisynth.metrics._common import as_features, warn_small


def _kth_neighbour_radius(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values  # +1: the point itself is at distance 0


def prdc(real_features, fake_features, k: int = 5) -> dict[str, float]:
    real = torch.from_numpy(as_features(real_features, "real features"))
    fake = torch.from_numpy(as_features(fake_features, "fake features"))
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"precision/recall need more than k={k} samples per set")
    if min(len(real), len(fake)) < 10 * k:
        warn_small(f"precision/recall/density/coverage from {min(len(real), len(fake))} samples with k={k}: coarse")
    real_radius = _kth_neighbour_radius(real, k)
    fake_radius = _kth_neighbour_radius(fake, k)
    d_real_fake = torch.cdist(real, fake)  # R x F
    inside_real_ball = d_real_fake <= real_radius[:, None]  # [r, f]: fake f inside real ball r
    inside_fake_ball = d_real_fake <= fake_radius[None, :]  # [r, f]: real r inside fake ball f
    return {
        "precision": float(inside_real_ball.any(dim=0).double().mean()),
        "recall": float(inside_fake_ball.any(dim=1).double().mean()),
        "density": float(inside_real_ball.double().sum(dim=0).mean() / k),
        "coverage": float((d_real_fake.min(dim=1).values <= real_radius).double().mean()),
    }
