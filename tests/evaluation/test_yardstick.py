"""Real-vs-real yardsticks: disjoint stratified halves, held-out partner, ratios near 1 for real-like sets."""
from __future__ import annotations

import numpy as np
import pytest

from medisynth.evaluation.yardstick import heldout_told_apart, matched_subset, real_vs_real, stratified_halves


def test_halves_are_disjoint_equal_and_stratified():
    labels = np.array([0] * 10 + [1] * 7 + [2] * 4)
    a, b = stratified_halves(labels, len(labels), np.random.default_rng(0))
    assert len(a) == len(b) and not set(a) & set(b)
    assert abs(np.sum(labels[a] == 2) - np.sum(labels[b] == 2)) <= 1


def test_matched_subset_copies_class_counts():
    pool = np.array([0] * 20 + [1] * 20)
    s = matched_subset(np.array([0, 0, 0, 1]), pool, len(pool), np.random.default_rng(0))
    assert sorted(pool[s].tolist()) == [0, 0, 0, 1]


@pytest.mark.parametrize("use_heldout", [True, False])
def test_same_distribution_gives_ratio_near_one_and_a_shift_does_not(use_heldout):
    rng = np.random.default_rng(0)
    real, heldout = rng.normal(size=(60, 6)), rng.normal(size=(20, 6))
    kw = dict(heldout=heldout if use_heldout else None, repeats=3, kid_subsets=5, prdc_k=3)
    like = real_vs_real(real, None, rng.normal(size=(60, 6)), None, **kw)
    shifted = real_vs_real(real, None, rng.normal(size=(60, 6)) + 2.0, None, **kw)
    assert like["method"] == ("heldout" if use_heldout else "halves")
    assert like["n_per_set"] == (20 if use_heldout else 30)
    assert 0.5 < like["ratio"]["fid"] < 1.5 and shifted["ratio"]["fid"] > 5
    assert shifted["ratio"]["coverage"] < 0.3


def test_heldout_told_apart_lists_the_spaces_where_a_classifier_beats_chance_over_all_spaces_tested():
    def row(p_value):
        return {"available": True, "detectability": 0.6, "chance": {"p_value": p_value, "alpha": 0.05}}

    found = {
        "domain": {"synthetic": row(1e-9), "heldout": row(0.5)},
        "pixels": {"synthetic": row(1e-9), "heldout": row(1e-6)},
        "ssl": {"synthetic": row(1e-9), "heldout": {"available": False, "reason": "too few"}},
        "inception": {"synthetic": row(1e-9)},  # the reference is not the training split: no held-out row
    }
    assert heldout_told_apart(found) == ["pixels"]
    # p = 0.03 beats 0.05 alone, not 0.05 / 2 when two spaces were tested (one such "difference" in ten at random)
    found["pixels"]["heldout"] = row(0.03)
    assert heldout_told_apart(found) == []
    assert heldout_told_apart({"pixels": found["pixels"]}) == ["pixels"]
    assert heldout_told_apart({}) == []


def test_too_few_real_images_is_unavailable():
    assert real_vs_real(np.zeros((3, 2)), None, np.zeros((5, 2)), None)["available"] is False


def test_pixel_figures_and_inception_score_get_yardsticks():
    from medisynth.evaluation.yardstick import pixel_yardstick

    rng = np.random.default_rng(0)
    real, heldout = rng.integers(0, 128, (30, 1, 16, 16), dtype=np.uint8), rng.integers(0, 128, (12, 1, 16, 16), dtype=np.uint8)
    bright = rng.integers(128, 256, (30, 1, 16, 16), dtype=np.uint8)
    y = pixel_yardstick(real, None, bright, None, heldout, None, repeats=2)
    assert y["method"] == "heldout" and y["n_per_set"] == 12
    assert y["ratio"]["wasserstein"] > 10 and y["synthetic"]["mean_image_mse"] > y["real_vs_real"]["mean_image_mse"]
    feats = rng.normal(size=(42, 4))
    logits = {"real": feats[:30], "heldout": feats[30:], "fake": rng.normal(size=(30, 4))}
    r = real_vs_real(feats[:30], None, logits["fake"], None, heldout=feats[30:], repeats=2, kid_subsets=3, prdc_k=3, logits=logits)
    assert r["real_vs_real"]["is_mean"] >= 1 and r["synthetic"]["is_mean"] >= 1
