"""FID and KID (computed by torch-fidelity) against independent references: SciPy sqrtm,
closed forms, a naive MMD loop, and medisynth's former NumPy implementation."""
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from medisynth.metrics import SmallSampleWarning, calculate_metrics
from medisynth.metrics.fid import feature_statistics, fid_from_features, frechet_distance
from medisynth.metrics.kid import kid_from_features


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


def _former_fid(a, b):
    """medisynth's hand-written FID before it went through torch-fidelity (eigenvalues, clipped)."""
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvals(s1 @ s2).real, 0.0, None)).sum()
    return max(float((mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean), 0.0)


@pytest.mark.parametrize("n_real,n_fake,dim", [(200, 250, 10), (30, 40, 64), (500, 300, 2)])
def test_fid_matches_the_former_implementation(n_real, n_fake, dim):
    rng = np.random.default_rng(dim)
    a, b = rng.normal(size=(n_real, dim)), rng.normal(size=(n_fake, dim)) * 1.3 + 0.2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        assert fid_from_features(a, b) == pytest.approx(_former_fid(a, b), rel=1e-7)


def test_fid_of_one_dimensional_features():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(400, 1)), rng.normal(size=(300, 1)) * 2 + 1
    expected = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2  # 1-d closed form
    assert fid_from_features(a, b) == pytest.approx(expected, rel=1e-9)


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        mean, std = kid_from_features(x, y, subsets=3, subset_size=20)
    assert mean == pytest.approx(_naive_unbiased_mmd2(x, y), rel=1e-9) and std == pytest.approx(0.0, abs=1e-12)


def _former_kid(real, fake, subsets, subset_size, seed):
    """medisynth's hand-written KID before torch-fidelity: the same subset draws, the naive-free estimator."""
    rng = np.random.RandomState(seed)
    k = lambda x, y: (x @ y.T / x.shape[1] + 1) ** 3  # noqa: E731
    values = []
    for _ in range(subsets):
        x, y = real[rng.choice(len(real), subset_size, replace=False)], fake[rng.choice(len(fake), subset_size, replace=False)]
        m = subset_size
        kxx, kyy = k(x, x), k(y, y)
        values.append((kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * k(x, y).sum() / m**2)
    return float(np.mean(values)), float(np.std(values))


@pytest.mark.parametrize("n_real,n_fake,subset_size,seed", [(120, 100, 50, 7), (60, 90, 1000, 0), (40, 40, 40, 3)])
def test_kid_matches_the_former_implementation(n_real, n_fake, subset_size, seed):
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(n_real, 8)), rng.normal(size=(n_fake, 8)) + 0.1
    mean, std = kid_from_features(a, b, subsets=10, subset_size=subset_size, seed=seed)
    ref_mean, ref_std = _former_kid(a, b, 10, min(subset_size, n_real, n_fake), seed)
    assert mean == pytest.approx(ref_mean, rel=1e-9) and std == pytest.approx(ref_std, rel=1e-9)


@pytest.mark.parametrize("n_real,n_fake,subset_size,subsets,seed", [(300, 120, 100, 7, 0), (90, 90, 90, 3, 5), (50, 400, 1000, 4, 2)])
def test_kid_with_kernels_computed_once_matches_torch_fidelity(n_real, n_fake, subset_size, subsets, seed):
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    from medisynth.metrics.kid import KID_KERNEL

    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(n_real, 16)), rng.normal(size=(n_fake, 16)) * 1.2 + 0.1
    m = min(subset_size, n_real, n_fake)
    ref = kid_features_to_metric(torch.from_numpy(a), torch.from_numpy(b), kid_subsets=subsets, kid_subset_size=m,
                                 rng_seed=seed, verbose=False, **KID_KERNEL)
    mean, std = kid_from_features(a, b, subsets=subsets, subset_size=subset_size, seed=seed)
    assert mean == pytest.approx(ref[KEY_METRIC_KID_MEAN], rel=1e-9, abs=1e-12)
    assert std == pytest.approx(ref[KEY_METRIC_KID_STD], rel=1e-7, abs=1e-12)


def test_kid_of_sets_above_the_kernel_once_size_goes_through_torch_fidelity(monkeypatch):
    import medisynth.metrics.kid as kid

    rng = np.random.default_rng(11)
    a, b = rng.normal(size=(60, 4)), rng.normal(size=(50, 4))
    once = kid.kid_from_features(a, b, subsets=3, subset_size=40, seed=1)
    calls = []
    library = kid.kid_features_to_metric
    monkeypatch.setattr(kid, "kid_features_to_metric", lambda *args, **kw: calls.append(1) or library(*args, **kw))
    monkeypatch.setattr(kid, "KERNEL_ONCE_MAX", 55)
    assert kid.kid_from_features(a, b, subsets=3, subset_size=40, seed=1) == pytest.approx(once, rel=1e-9)
    assert calls == [1]


def test_kid_shrinks_the_subset_to_a_small_set_and_warns():
    rng = np.random.default_rng(8)
    with pytest.warns(SmallSampleWarning, match="subsets of only 20"):
        kid_from_features(rng.normal(size=(20, 4)), rng.normal(size=(30, 4)), subsets=2, subset_size=1000)


def test_kid_separates_shifted_sets():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(200, 8))
    same, _ = kid_from_features(x[:100], x[100:], subsets=5, subset_size=100)
    shifted, _ = kid_from_features(x[:100], x[100:] + 2.0, subsets=5, subset_size=100)
    assert abs(same) < 0.05 < shifted


def test_feature_statistics_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        feature_statistics(np.array([[0.0, np.nan], [1.0, 2.0]]))


@pytest.mark.parametrize(
    "metrics,n,keys,reason",
    [
        (("fid",), 1, ("fid",), "fid: FID needs at least 2 samples"),
        (("kid",), 1, ("kid_mean", "kid_std"), "kid: KID needs at least 2 samples"),
        (("prdc",), 4, ("precision", "recall", "density", "coverage"), "prdc: precision/recall need more than k=5"),
        (("is",), 50, ("is_mean", "is_std"), "is: needs classifier logits"),
    ],
)
def test_a_metric_that_cannot_be_computed_is_none_with_its_reason(metrics, n, keys, reason):
    rng = np.random.default_rng(9)
    out = calculate_metrics(rng.normal(size=(n, 3)), rng.normal(size=(n, 3)), metrics=metrics)
    assert all(out[k] is None for k in keys) and any(w.startswith(reason) for w in out["warnings"])


def test_calculate_metrics_keys_and_values_come_from_the_metric_functions():
    from medisynth.metrics.inception_score import inception_score
    from medisynth.metrics.prdc import prdc

    rng = np.random.default_rng(10)
    a, b, logits = rng.normal(size=(120, 6)), rng.normal(size=(110, 6)) + 0.2, rng.normal(size=(110, 4))
    out = calculate_metrics(a, b, metrics=("fid", "kid", "prdc", "is"), fake_logits=logits, kid_subsets=5, kid_subset_size=50, seed=3)
    assert set(out) == {"n_real", "n_fake", "fid", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "is_mean", "is_std", "warnings"}
    assert out["fid"] == fid_from_features(a, b)
    assert (out["kid_mean"], out["kid_std"]) == kid_from_features(a, b, 5, 50, 3)
    assert {k: out[k] for k in ("precision", "recall", "density", "coverage")} == prdc(a, b, k=5)
    assert (out["is_mean"], out["is_std"]) == inception_score(logits)
    with pytest.raises(ValueError, match="unknown metrics"):
        calculate_metrics(a, b, metrics=("fid", "lpips"))
