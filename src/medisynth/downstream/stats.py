"""Significance tests for "does adding synthetic images help?" (scipy underneath).

- ``paired_over_seeds``: seed i of protocol A and seed i of protocol B share the
  initialisation seed and batch order, so runs pair up; a paired t-test
  (``scipy.stats.ttest_rel``) and, from 6 pairs on, a Wilcoxon signed-rank test.
  With n pairs the two-sided Wilcoxon p-value cannot go below 2 / 2**n, so it
  cannot reach 0.05 for n <= 5: it is skipped and the reason is recorded. The mean
  difference comes with its 95% confidence interval from the same t distribution.
- ``paired_bootstrap_ci``: a percentile bootstrap over TEST IMAGES of the
  difference in a metric between two prediction sets of the same test images
  (one seed): captures test-set sampling noise, not training noise.
- ``mcnemar_exact``: exact McNemar test (binomial on the discordant pairs,
  ``scipy.stats.binomtest``) on per-image correctness.
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
from scipy import stats

from medisynth.report.format import format_number

WILCOXON_MIN_PAIRS = 6


def paired_over_seeds(a, b) -> dict:
    """Compare per-seed values ``b`` against ``a`` (same seeds, same order)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    diff = b - a
    out: dict = {"n_pairs": int(len(diff)), "mean_difference": float(diff.mean()) if len(diff) else None,
                 "std_difference": float(diff.std(ddof=1)) if len(diff) > 1 else None,
                 "ci95_low": None, "ci95_high": None,
                 "t_statistic": None, "t_test_p": None, "wilcoxon_p": None, "notes": []}
    if len(diff) < 2:
        out["notes"].append("fewer than 2 paired seeds: no test possible")
        return out
    # mean +- t(0.975, n-1) * s / sqrt(n): the interval the paired t-test inverts
    half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
    out["ci95_low"], out["ci95_high"] = float(diff.mean() - half), float(diff.mean() + half)
    if np.allclose(diff, diff[0]):
        out["notes"].append("the difference is identical for every seed: the t-test is undefined")
    else:
        t = stats.ttest_rel(b, a)
        out["t_statistic"], out["t_test_p"] = float(t.statistic), float(t.pvalue)
    if len(diff) >= WILCOXON_MIN_PAIRS:
        if np.any(diff != 0):
            out["wilcoxon_p"] = float(stats.wilcoxon(b, a).pvalue)
    else:
        out["notes"].append(
            f"Wilcoxon signed-rank skipped: with {len(diff)} pairs its smallest possible two-sided p is "
            f"{format_number(2 / 2 ** len(diff))}; use --seeds {WILCOXON_MIN_PAIRS} or more")
    if len(diff) < 5:
        out["notes"].append(f"only {len(diff)} seeds: low statistical power; a non-significant result is not evidence of no effect")
    return out


def paired_bootstrap_ci(y_true, pred_a, pred_b, metric: Callable, n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95) -> dict:
    """Percentile CI of ``metric(y, pred_b) - metric(y, pred_a)`` over bootstrap resamples of the test images."""
    y_true, pred_a, pred_b = map(np.asarray, (y_true, pred_a, pred_b))
    rng = np.random.default_rng(seed)
    n = len(y_true)
    diffs = np.empty(n_boot)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # resamples may miss a class
        for i in range(n_boot):
            idx = rng.integers(0, n, n)
            diffs[i] = metric(y_true[idx], pred_b[idx]) - metric(y_true[idx], pred_a[idx])
        observed = metric(y_true, pred_b) - metric(y_true, pred_a)
    lo, hi = np.quantile(diffs, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"difference": float(observed), "ci_low": float(lo), "ci_high": float(hi), "level": level, "n_boot": n_boot}


def mcnemar_exact(y_true, pred_a, pred_b) -> dict:
    """Exact McNemar test: is B right where A is wrong more (or less) often than the reverse?"""
    y_true, pred_a, pred_b = map(np.asarray, (y_true, pred_a, pred_b))
    a_ok, b_ok = pred_a == y_true, pred_b == y_true
    only_a, only_b = int((a_ok & ~b_ok).sum()), int((~a_ok & b_ok).sum())
    p = float(stats.binomtest(only_b, only_a + only_b, 0.5).pvalue) if only_a + only_b else 1.0
    return {"only_a_correct": only_a, "only_b_correct": only_b, "p": p}
