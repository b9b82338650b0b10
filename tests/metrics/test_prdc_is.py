"""Precision/recall/density/coverage on point sets with known answers; Inception Score."""
import numpy as np
import pytest
import torch

from medisynth.metrics.inception_score import inception_score
from medisynth.metrics.prdc import prdc


def test_identical_sets_score_one():
    x = np.random.default_rng(0).normal(size=(100, 4))
    out = prdc(x, x.copy(), k=5)
    assert out["precision"] == 1.0 and out["recall"] == 1.0 and out["coverage"] == 1.0
    assert out["density"] >= 1.0  # every point lies in its own ball and in its k neighbours'


def test_disjoint_far_apart_sets_score_zero():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(60, 3)), rng.normal(size=(60, 3)) + 100.0
    assert prdc(real, fake, k=3) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_hand_made_case():
    # real: 4 points on a line with unit spacing; k=1 -> every real ball has radius 1
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    # fake: one point at 0.5 (inside the balls of reals 0 and 1), one far away, and 2 in a tight cluster at 10
    fake = np.array([[0.5], [10.0], [10.1], [50.0]])
    out = prdc(real, fake, k=1)
    assert out["precision"] == pytest.approx(1 / 4)
    assert out["density"] == pytest.approx((2 + 0 + 0 + 0) / 1 / 4)
    assert out["coverage"] == pytest.approx(2 / 4)  # reals 0 and 1 have a fake in their ball
    # fake balls (k=1): 0.5 -> radius 9.5 (to 10.0) covers all 4 reals
    assert out["recall"] == pytest.approx(1.0)


def test_prdc_matches_torch_fidelity_precision_recall():
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(80, 5)), rng.normal(size=(70, 5)) * 1.5
    p, r = calculate_precision_recall_full(torch.from_numpy(fake), torch.from_numpy(real), neighborhood=3)
    out = prdc(real, fake, k=3)
    assert out["precision"] == pytest.approx(p) and out["recall"] == pytest.approx(r)


def test_prdc_with_too_few_samples_is_a_clear_error():
    with pytest.raises(ValueError, match="more than k"):
        prdc(np.zeros((3, 2)), np.ones((3, 2)), k=5)


def test_inception_score_bounds_and_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    rng = np.random.default_rng(3)
    confident_diverse = np.eye(10)[rng.integers(0, 10, 500)] * 50.0
    uniform = np.zeros((500, 10))
    assert inception_score(confident_diverse, splits=1)[0] == pytest.approx(10.0, rel=0.02)
    assert inception_score(uniform)[0] == pytest.approx(1.0)
    logits = rng.normal(size=(200, 7)) * 3
    ref = isc_features_to_metric(torch.from_numpy(logits), splits=10, rng_seed=2020)
    assert inception_score(logits, splits=10, seed=2020)[0] == pytest.approx(ref["inception_score_mean"], rel=1e-9)
