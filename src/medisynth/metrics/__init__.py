"""Metrics of synthetic images against real ones; one module per metric.

``calculate_metrics(real_features, fake_features, metrics=[...])`` computes the
distribution metrics in one feature space and returns a flat dict of floats.
"""
from __future__ import annotations

import warnings

import numpy as np

from medisynth.metrics._common import SmallSampleWarning
from medisynth.metrics.fid import fid_from_features
from medisynth.metrics.inception_score import inception_score
from medisynth.metrics.kid import kid_from_features
from medisynth.metrics.prdc import prdc

DISTRIBUTION_METRICS = ("fid", "kid", "prdc", "is")


def calculate_metrics(
    real_features,
    fake_features,
    metrics=("fid", "kid", "prdc"),
    fake_logits=None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    prdc_k: int = 5,
    seed: int = 0,
) -> dict:
    """Distribution metrics between two N x D feature sets.

    Returns ``{"fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage",
    "is_mean", "is_std", "warnings": [...]}`` for the metrics asked for ("is" needs
    ``fake_logits``). A metric that cannot be computed (too few samples) is None and its
    reason is in "warnings"; small-sample warnings are collected there too.
    """
    unknown = set(metrics) - set(DISTRIBUTION_METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {DISTRIBUTION_METRICS}")
    out: dict = {"n_real": int(len(real_features)), "n_fake": int(len(fake_features))}
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SmallSampleWarning)
        for name in metrics:
            try:
                if name == "fid":
                    out["fid"] = fid_from_features(real_features, fake_features)
                elif name == "kid":
                    out["kid_mean"], out["kid_std"] = kid_from_features(
                        real_features, fake_features, kid_subsets, kid_subset_size, seed
                    )
                elif name == "prdc":
                    out.update(prdc(real_features, fake_features, k=prdc_k))
                elif name == "is" and fake_logits is not None:
                    out["is_mean"], out["is_std"] = inception_score(fake_logits)
            except ValueError as e:
                notes.append(f"{name}: {e}")
    notes += [str(w.message) for w in caught if issubclass(w.category, SmallSampleWarning)]
    for w in caught:
        if not issubclass(w.category, SmallSampleWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for key, value in out.items():
        if isinstance(value, float) and not np.isfinite(value):
            out[key] = None
            notes.append(f"{key} was not finite and is reported as null")
    out["warnings"] = list(dict.fromkeys(notes))
    return out


__all__ = ["calculate_metrics", "DISTRIBUTION_METRICS", "SmallSampleWarning"]
