"""Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) over ``splits`` chunks.

Computed from classifier logits: Inception's 1008 ImageNet logits in the ``inception`` space,
the grade classifier's logits in the ``domain`` space (there it is at most the number of classes).
"""
from __future__ import annotations

import numpy as np
import torch

from medisynth.metrics._common import as_features, warn_small


def inception_score(logits, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    x = torch.from_numpy(as_features(logits, "logits"))
    n = len(x)
    splits = max(1, min(splits, n // 2))
    if n < 100:
        warn_small(f"Inception Score from {n} samples: the estimate is noisy")
    x = x[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    log_p = x.log_softmax(dim=1)
    p = log_p.exp()
    scores = []
    for i in range(splits):
        chunk = slice(i * n // splits, (i + 1) * n // splits)
        log_q = p[chunk].mean(dim=0, keepdim=True).log()
        kl = (p[chunk] * (log_p[chunk] - log_q)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))
