"""Metrics of synthetic images against real ones; one module per metric.

``calculate_metrics(real_features, fake_features, metrics=[...])`` computes the
distribution metrics in one feature space and returns a flat dict of floats. FID, KID,
Inception Score and precision/recall are computed by torch-fidelity's feature-level
functions; density/coverage by medisynth on the same k-NN balls (prdc.py).
"""
from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import numpy as np

from medisynth.defaults import PRDC_K
from medisynth.metrics._common import SmallSampleWarning
from medisynth.registry import Registry

# the torch-fidelity metrics are imported on use: torch-fidelity imports torchvision (seconds), which a
# submodule such as copy_detection (``sample --max-similarity``) does not need


class DistributionMetric(NamedTuple):
    """A metric of ``calculate_metrics``: the keys it writes and the function that computes them.

    ``compute(real, fake, fake_logits=..., kid_subsets=..., kid_subset_size=..., prdc_k=..., seed=...)``
    returns a dict with exactly ``keys``, or raises ValueError (too few samples...): then every
    key is None and the reason goes to "warnings".
    """

    keys: tuple[str, ...]
    compute: Callable[..., dict]

    def __call__(self, real, fake, **options) -> dict:
        return self.compute(real, fake, **options)


def _fid(real, fake, **_) -> dict:
    from medisynth.metrics.fid import fid_from_features

    return {"fid": fid_from_features(real, fake)}


def _kid(real, fake, *, kid_subsets, kid_subset_size, seed, **_) -> dict:
    from medisynth.metrics.kid import kid_from_features

    mean, std = kid_from_features(real, fake, kid_subsets, kid_subset_size, seed)
    return {"kid_mean": mean, "kid_std": std}


def _prdc(real, fake, *, prdc_k, **_) -> dict:
    from medisynth.metrics.prdc import prdc

    return prdc(real, fake, k=prdc_k)


def _inception_score(real, fake, *, fake_logits, **_) -> dict:
    if fake_logits is None:
        raise ValueError("needs classifier logits of the synthetic images; this feature space has none")
    from medisynth.metrics.inception_score import inception_score

    mean, std = inception_score(fake_logits)
    return {"is_mean": mean, "is_std": std}


METRICS: Registry[DistributionMetric] = Registry("metric")
METRICS.register("fid", DistributionMetric(("fid",), _fid))
METRICS.register("kid", DistributionMetric(("kid_mean", "kid_std"), _kid))
METRICS.register("prdc", DistributionMetric(("precision", "recall", "density", "coverage"), _prdc))
METRICS.register("is", DistributionMetric(("is_mean", "is_std"), _inception_score))
DISTRIBUTION_METRICS = tuple(METRICS)


def calculate_metrics(
    real_features,
    fake_features,
    metrics=("fid", "kid", "prdc"),
    fake_logits=None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    prdc_k: int = PRDC_K,
    seed: int = 0,
) -> dict:
    """Distribution metrics between two N x D feature sets.

    Returns ``{"n_real", "n_fake", "fid", "kid_mean", "kid_std", "precision", "recall", "density",
    "coverage", "is_mean", "is_std", "warnings": [...]}`` for the metrics asked for ("is" needs
    ``fake_logits``). A metric that cannot be computed (too few samples) is None and its
    reason is in "warnings"; small-sample warnings are collected there too.
    """
    unknown = set(metrics) - set(METRICS)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}; choose from {DISTRIBUTION_METRICS}")
    options = {"fake_logits": fake_logits, "kid_subsets": kid_subsets, "kid_subset_size": kid_subset_size, "prdc_k": prdc_k, "seed": seed}
    out: dict = {"n_real": int(len(real_features)), "n_fake": int(len(fake_features))}
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SmallSampleWarning)
        for name in metrics:
            metric = METRICS[name]
            try:
                out.update(metric.compute(real_features, fake_features, **options))
            except ValueError as e:
                out.update(dict.fromkeys(metric.keys))
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


__all__ = ["calculate_metrics", "DISTRIBUTION_METRICS", "METRICS", "DistributionMetric", "SmallSampleWarning"]
