"""FID and KID against reference computations (SciPy sqrtm, closed forms, torch-fidelity)."""
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from medisynth.metrics import SmallSampleWarning, calculate_metrics
from medisynth.metrics.fid import feature_statistics, fid_from_features, frechet_distance
from medisynth.metrics.kid import kid_from_features, mmd2_unbiased


def _sqrtm_fid(a, b):
    mu1, s1 = a.mean(0), np.cov(a, rowvar=False)
    mu2, s2 = b.mean(0), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_fid_of_a_set_against_itself_is_zero():
    x = np.random.default_rng(0).normal(size=(300, 16))
    assert fid_from_features(x, x) == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("dim,shift", [(4, 0.5), (16, 2.0), (32, 0.0)])
def test_fid_matches_scipy_sqrtm(dim, shift):
    rng = np.random.default_rng(dim)
    a = rng.normal(size=(500, dim))
    b = rng.normal(size=(400, dim)) @ rng.normal(size=(dim, dim)) * 0.5 + shift
    assert fid_from_features(a, b) == pytest.approx(_sqrtm_fid(a, b), rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("dim,shift,scale", [(3, 1.0, 2.0), (8, 0.0, 0.5)])
def test_fid_closed_form_for_isotropic_gaussians(dim, shift, scale):
    # N(m1, I) vs N(m2, s^2 I): FID = |m1 - m2|^2 + d (1 - s)^2
    mu1, mu2 = np.zeros(dim), np.full(dim, shift)
    expected = dim * shift**2 + dim * (1 - scale) ** 2
    assert frechet_distance(mu1, np.eye(dim), mu2, scale**2 * np.eye(dim)) == pytest.approx(expected)


def test_fid_matches_torch_fidelity():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 10)), rng.normal(size=(250, 10)) * 1.3 + 0.2
    ref = fid_statistics_to_metric(
        fid_features_to_statistics(torch.from_numpy(a)), fid_features_to_statistics(torch.from_numpy(b)), verbose=False
    )["frechet_inception_distance"]
    assert fid_from_features(a, b) == pytest.approx(ref, rel=1e-9)


def test_fid_with_fewer_samples_than_dimensions_warns_and_stays_finite_real():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(10, 64)), rng.normal(size=(12, 64))
    with pytest.warns(SmallSampleWarning, match="singular"):
        fid = fid_from_features(a, b)
    assert isinstance(fid, float) and np.isfinite(fid) and fid >= 0


def test_calculate_metrics_collects_small_sample_warnings_without_nan():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(8, 64)), rng.normal(size=(8, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may escape: all is collected
        out = calculate_metrics(a, b, metrics=("fid", "kid", "prdc"), prdc_k=3)
    assert any("singular" in w for w in out["warnings"])
    for key in ("fid", "kid_mean", "precision", "coverage"):
        assert out[key] is not None and np.isfinite(out[key]) and not isinstance(out[key], complex)


def _naive_unbiased_mmd2(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_the_naive_unbiased_estimator():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(20, 5)), rng.normal(size=(20, 5)) + 0.3
    assert mmd2_unbiased(x, y) == pytest.approx(_naive_unbiased_mmd2(x, y), rel=1e-9)
    mean, std = kid_from_features(x, y, subsets=3, subset_size=20)
    assert mean == pytest.approx(_naive_unbiased_mmd2(x, y), rel=1e-9) and std == pytest.approx(0.0, abs=1e-12)


def test_kid_matches_torch_fidelity():
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(120, 8)), rng.normal(size=(100, 8)) + 0.1
    ref = kid_features_to_metric(
        torch.from_numpy(a), torch.from_numpy(b), kid_subsets=10, kid_subset_size=50, verbose=False, rng_seed=7,
        kid_kernel="poly", kid_kernel_poly_degree=3, kid_kernel_poly_gamma=None, kid_kernel_poly_coef0=1,
    )
    mean, std = kid_from_features(a, b, subsets=10, subset_size=50, seed=7)
    assert mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-9)
    assert std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-9)


def test_kid_separates_shifted_sets():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(200, 8))
    same, _ = kid_from_features(x[:100], x[100:], subsets=5, subset_size=100)
    shifted, _ = kid_from_features(x[:100], x[100:] + 2.0, subsets=5, subset_size=100)
    assert abs(same) < 0.05 < shifted


def test_feature_statistics_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        feature_statistics(np.array([[0.0, np.nan], [1.0, 2.0]]))
