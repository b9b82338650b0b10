"""Precision/recall/density/coverage on point sets with known answers and against medisynth's
former hand-written implementation; Inception Score likewise (both now via torch-fidelity)."""
import warnings

import numpy as np
import pytest
import torch

from medisynth.metrics import SmallSampleWarning
from medisynth.metrics.inception_score import inception_score
from medisynth.metrics.prdc import one_point_coverage, prdc


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


def _former_prdc(real, fake, k):
    """medisynth's hand-written precision/recall/density/coverage before torch-fidelity."""
    real, fake = torch.from_numpy(real), torch.from_numpy(fake)
    real_radius = torch.cdist(real, real).kthvalue(k + 1, dim=1).values
    fake_radius = torch.cdist(fake, fake).kthvalue(k + 1, dim=1).values
    d = torch.cdist(real, fake)
    inside_real, inside_fake = d <= real_radius[:, None], d <= fake_radius[None, :]
    return {
        "precision": float(inside_real.any(dim=0).double().mean()),
        "recall": float(inside_fake.any(dim=1).double().mean()),
        "density": float(inside_real.double().sum(dim=0).mean() / k),
        "coverage": float((d.min(dim=1).values <= real_radius).double().mean()),
    }


@pytest.mark.parametrize("n_real,n_fake,dim,k", [(80, 70, 5, 3), (60, 90, 16, 5), (40, 40, 2, 1)])
def test_prdc_matches_the_former_implementation(n_real, n_fake, dim, k):
    rng = np.random.default_rng(dim)
    real, fake = rng.normal(size=(n_real, dim)), rng.normal(size=(n_fake, dim)) * 1.5 + 0.3
    out, ref = prdc(real, fake, k=k), _former_prdc(real, fake, k)
    assert out == pytest.approx(ref, rel=1e-6)  # torch-fidelity averages precision/recall in float32
    assert abs(out["precision"] - out["recall"]) > 0.05  # swapping real and fake would fail the line above


def test_one_point_coverage_hand_made():
    # k=1 on a line of unit spacing: every ball has radius 1, the mean of the others (1.5) lies in the balls of 1 and 2
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert one_point_coverage(real, np.array([[0.0], [3.0]]), k=1) == 0.5
    assert one_point_coverage(real, np.array([[100.0], [102.0]]), k=1) == 0.0


@pytest.mark.parametrize("n, dim, blind", [(21, 128, True), (500, 2, False)])
def test_one_point_coverage_is_near_real_coverage_only_with_few_samples_in_many_dimensions(n, dim, blind):
    """The hubness the diverse verdict guards against: at 21 samples in 128 dimensions the mean of a set lies in
    about as many k-NN balls as a second real set does; at 500 samples in 2 dimensions in few of them."""
    rng = np.random.default_rng(0)
    real, other = rng.normal(size=(n, dim)), rng.normal(size=(n, dim))
    ratio = one_point_coverage(real, other, k=5) / prdc(real, other, k=5)["coverage"]
    assert (ratio >= 0.8) == blind, ratio


def test_prdc_with_too_few_samples_is_a_clear_error():
    with pytest.raises(ValueError, match="more than k"):
        prdc(np.zeros((3, 2)), np.ones((3, 2)), k=5)


def _former_inception_score(logits, splits, seed):
    """medisynth's hand-written Inception Score before torch-fidelity."""
    x = torch.from_numpy(logits)[torch.from_numpy(np.random.RandomState(seed).permutation(len(logits)))]
    log_p = x.log_softmax(dim=1)
    p, n, scores = log_p.exp(), len(x), []
    for i in range(splits):
        chunk = slice(i * n // splits, (i + 1) * n // splits)
        log_q = p[chunk].mean(dim=0, keepdim=True).log()
        scores.append(float((p[chunk] * (log_p[chunk] - log_q)).sum(dim=1).mean().exp()))
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score_bounds():
    rng = np.random.default_rng(3)
    confident_diverse = np.eye(10)[rng.integers(0, 10, 500)] * 50.0
    uniform = np.zeros((500, 10))
    assert inception_score(confident_diverse, splits=1)[0] == pytest.approx(10.0, rel=0.02)
    assert inception_score(uniform)[0] == pytest.approx(1.0)


@pytest.mark.parametrize("n,classes,splits,seed", [(200, 7, 10, 2020), (120, 1008, 10, 0), (9, 3, 10, 1)])
def test_inception_score_matches_the_former_implementation(n, classes, splits, seed):
    logits = np.random.default_rng(n).normal(size=(n, classes)) * 3
    used_splits = max(1, min(splits, n // 2))  # medisynth keeps at least 2 samples a split
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        out = inception_score(logits, splits=splits, seed=seed)
    assert out == pytest.approx(_former_inception_score(logits, used_splits, seed), rel=1e-9)
