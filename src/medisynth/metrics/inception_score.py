"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) over ``splits`` chunks,
computed by torch-fidelity's ``isc_features_to_metric`` from classifier logits.

The logits are Inception's 1008 ImageNet logits in the ``inception`` space and the grade
classifier's logits in the ``domain`` space (there the score is at most the number of classes).
medisynth adds the input checks, at least 2 samples per split, and a SmallSampleWarning under
100 samples.
"""
from __future__ import annotations

import torch
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

from medisynth.metrics._common import as_features, warn_small


def inception_score(logits, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """(mean, std) of the Inception Score of N x C logits over ``splits`` shuffled chunks."""
    x = as_features(logits, "logits")
    n = len(x)
    splits = max(1, min(splits, n // 2))
    if n < 100:
        warn_small(f"Inception Score from {n} samples: the estimate is noisy")
    out = isc_features_to_metric(torch.from_numpy(x), splits=splits, shuffle=True, rng_seed=seed)
    return out[KEY_METRIC_ISC_MEAN], out[KEY_METRIC_ISC_STD]
