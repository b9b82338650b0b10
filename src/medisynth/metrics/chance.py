"""Is a classifier's held-out accuracy better than chance? One small test, reused wherever an
accuracy is reported (the domain classifier, CAS, downstream utility protocols).

``accuracy_vs_chance(y_true, y_pred)`` answers with an exact one-sided binomial test
(``scipy.stats.binomtest``) of the number of correct predictions against the accuracy of the
best constant guess, max_c P(y_true = c). Why that chance level: a predictor that ignores the
image scores sum_c q_c p_c <= max_c p_c in expectation (q = how often it says c), so testing
against the largest class share is conservative for every such predictor, including "always
say the majority class" on an imbalanced set.

``metric="balanced"`` tests balanced accuracy (mean per-class recall; chance 1/K for every
label-ignoring predictor) with a permutation test instead: shuffling the predictions against the
labels gives its null distribution, and the binomial does not apply to a mean of recalls.
"""
from __future__ import annotations

import numpy as np

ALPHA = 0.05  # one-sided significance level: below it a classifier counts as better than chance


def accuracy_vs_chance(y_true, y_pred, alpha: float = ALPHA, metric: str = "accuracy",
                       permutations: int = 2000, seed: int = 0) -> dict:
    """Held-out accuracy against chance.

    Returns ``{"metric", "value", "chance", "n", "p_value", "alpha", "better_than_chance", "test"}``;
    with no samples ``value`` and ``p_value`` are None and ``better_than_chance`` is False.
    """
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    y_pred = np.asarray(y_pred).astype(np.int64).ravel()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(y_true)} vs {len(y_pred)}")
    n = int(len(y_true))
    out = {"metric": metric, "value": None, "chance": None, "n": n, "p_value": None, "alpha": float(alpha),
           "better_than_chance": False, "test": None}
    if n == 0:
        return out
    if metric == "accuracy":
        from scipy.stats import binomtest

        correct = int(np.sum(y_true == y_pred))
        chance = float(np.bincount(y_true).max() / n)
        p = 1.0 if chance >= 1.0 else float(binomtest(correct, n, chance, alternative="greater").pvalue)
        out.update(value=correct / n, chance=chance, p_value=p,
                   test="exact one-sided binomial test against the largest class share (the best constant guess)")
    elif metric == "balanced":
        classes = np.unique(y_true)
        value = _balanced_accuracy(y_true, y_pred, classes)
        rng = np.random.default_rng(seed)
        null = np.array([_balanced_accuracy(y_true, rng.permutation(y_pred), classes) for _ in range(permutations)])
        p = float((1 + np.sum(null >= value - 1e-12)) / (1 + permutations))
        out.update(value=value, chance=1.0 / len(classes), p_value=p,
                   test=f"one-sided permutation test ({permutations} shuffles of the predictions)")
    else:
        raise ValueError(f"metric {metric!r}: choose accuracy or balanced")
    out["better_than_chance"] = bool(out["p_value"] < alpha)
    return out


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray) -> float:
    return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in classes]))


__all__ = ["ALPHA", "accuracy_vs_chance"]
