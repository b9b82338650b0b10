"""Detectability: can a classifier tell synthetic images from real ones?

A classifier two-sample test (Lopez-Paz & Oquab, ICLR 2017) in a feature space: equal numbers of
real and synthetic feature vectors, a standardised logistic regression, and its cross-validated
accuracy at saying which is which. 0.5 means the two sets cannot be told apart; near 1 means
every synthetic image gives itself away. Why it is reported beside FID/KID: a downstream classifier
trained on real images topped up with synthetic ones can learn "looks synthetic" as a stand-in for
"rare class" whenever the synthetic images are this easy to spot, and then fails on real test
images of that class. The same test on real held-out images against real training images is the
yardstick: a figure well above 0.5 there means the held-out images themselves come from elsewhere
(other scanners, other series), whatever the generator does.
"""
from __future__ import annotations

import numpy as np

from medisynth.metrics.chance import accuracy_vs_chance

DETECTABILITY_KEY = "detectability"
FOLDS = 5  # cross-validation folds: every image is predicted by a model that did not train on it
MIN_PER_SET = 2 * FOLDS  # fewer images a set and some fold lacks one of the two sets


def detectability(real: np.ndarray, fake: np.ndarray, folds: int = FOLDS, seed: int = 0) -> dict:
    """Cross-validated accuracy of telling ``fake`` (N x D) from ``real`` (M x D) feature vectors.

    The larger set is subsampled (seeded) to the smaller one's size, so chance is exactly 0.5.
    Returns ``{DETECTABILITY_KEY: accuracy, "n_per_set", "folds", "chance": accuracy_vs_chance(...)}``
    (an exact one-sided binomial test of the correct calls against 0.5). Raises ValueError when a
    set has fewer than ``2 * folds`` vectors.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    n = min(len(real), len(fake))
    if n < 2 * folds:
        raise ValueError(f"needs at least {2 * folds} vectors in each set ({len(real)} real, {len(fake)} synthetic)")
    rng = np.random.default_rng(seed)
    x = np.concatenate([real[rng.permutation(len(real))[:n]], fake[rng.permutation(len(fake))[:n]]])
    y = np.concatenate([np.zeros(n, np.int64), np.ones(n, np.int64)])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    predicted = cross_val_predict(model, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    chance = accuracy_vs_chance(y, predicted)
    return {DETECTABILITY_KEY: chance["value"], "n_per_set": int(n), "folds": int(folds), "chance": chance}


__all__ = ["DETECTABILITY_KEY", "FOLDS", "MIN_PER_SET", "detectability"]
