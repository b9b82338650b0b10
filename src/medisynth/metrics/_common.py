"""Small helpers shared by the metric modules: input checks and the small-sample warning."""
from __future__ import annotations

import warnings

import numpy as np
import torch


class SmallSampleWarning(UserWarning):
    """A metric was computed from too few samples to be trusted (it is still finite)."""


def as_features(x, name: str = "features") -> np.ndarray:
    """Any N x D array-like (numpy or torch) -> float64 numpy, checked for shape and finiteness."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be N x D, got shape {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


def warn_small(message: str) -> None:
    warnings.warn(message, SmallSampleWarning, stacklevel=3)
