"""Pixel figures, diversity, and the near-copy filter (copies flagged, distinct images not)."""
import numpy as np
import pytest
import torch

from medisynth.metrics.diversity import mean_pairwise_ms_ssim, ms_ssim_scales
from medisynth.metrics.memorization import copy_memorization, feature_memorization
from medisynth.metrics.pixel import histogram_distance, mean_image_mse, paired_ssim_psnr


def _blobs(n, size=64, channels=1, seed=0):
    """Distinct smooth images: a few Gaussian blobs at random places (uint8 N x C x H x W)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.zeros((n, channels, size, size))
    for i in range(n):
        for _ in range(4):
            cy, cx, s = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.15)
            out[i] += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return np.clip(out / out.max(axis=(1, 2, 3), keepdims=True) * 220 + 20, 0, 255).astype(np.uint8)


def _augment(images, seed=0):
    rng = np.random.default_rng(seed)
    x = np.roll(images.astype(np.float64), shift=(2, -1), axis=(2, 3)) + 12  # shift + brightness
    x += rng.normal(0, 4, size=x.shape)  # noise
    return np.clip(x, 0, 255).astype(np.uint8)


def test_ssim_psnr_of_identical_and_different_pairs():
    a = _blobs(4)
    ssim, psnr = paired_ssim_psnr(a, a)
    assert np.allclose(ssim, 1.0) and np.all(psnr == 100.0)
    ssim2, psnr2 = paired_ssim_psnr(a, _blobs(4, seed=9))
    assert np.all(ssim2 < 0.95) and np.all(psnr2 < 40)


def test_mean_image_mse_and_histogram_distance():
    a = _blobs(20)
    assert mean_image_mse(a, a) == 0.0
    assert mean_image_mse(a, np.full_like(a, 255)) > 0.1
    assert histogram_distance(a, a) == {"wasserstein": 0.0, "jensen_shannon": 0.0}
    shifted = np.clip(a.astype(int) + 25, 0, 255).astype(np.uint8)
    assert histogram_distance(a, shifted)["wasserstein"] == pytest.approx(25 / 255, rel=0.1)


@pytest.mark.parametrize("size,scales", [(32, 2), (64, 3), (128, 4), (192, 5)])
def test_ms_ssim_scales_fit_the_image_size(size, scales):
    assert ms_ssim_scales(size) == scales


def test_diversity_of_copies_is_higher_than_of_distinct_images():
    distinct = _blobs(20, size=64)
    copies = np.repeat(distinct[:1], 20, axis=0)
    d = mean_pairwise_ms_ssim(distinct, pairs=40)
    c = mean_pairwise_ms_ssim(copies, pairs=40)
    assert c["mean"] == pytest.approx(1.0, abs=1e-4) and d["mean"] < 0.9 and d["scales"] == 3


def test_copy_memorization_against_heldout_baseline():
    from medisynth.features.ssl import SSLRecipe, train_ssl_encoder
    from medisynth.metrics.copy_detection import CopyDetector

    train, heldout = _blobs(40, seed=1), _blobs(20, seed=3)
    fake = np.concatenate([train[:4], _blobs(16, seed=4)])
    encoder, _ = train_ssl_encoder(torch.from_numpy(train), SSLRecipe(steps=3, batch_size=16))
    detector = CopyDetector(train, encoder, threshold=0.95)
    out = copy_memorization(detector, fake, heldout)
    s = out["summary"]
    assert s["num_flagged"] == 4 and s["fraction_flagged"] == pytest.approx(0.2) and s["num_units_flagged"] == 4
    assert s["heldout_fraction_flagged"] == 0.0 and s["heldout_num_exact_copies"] == 0
    assert out["fake_nearest"][:4].tolist() == [0, 1, 2, 3]
    assert s["fraction_closer_than_heldout_p05"] >= 0.2
    # a copy-only synthetic set is much closer to training than held-out images are
    copies = copy_memorization(detector, train[:20], heldout)["summary"]
    assert copies["dcr_ratio"] < 0.01


def test_feature_memorization_dcr_ratio():
    rng = np.random.default_rng(0)
    train, heldout = rng.normal(size=(100, 8)), rng.normal(size=(50, 8))
    assert feature_memorization(train, train[:50], heldout)["summary"]["dcr_ratio"] == 0.0
    fresh = feature_memorization(train, rng.normal(size=(50, 8)), heldout)["summary"]["dcr_ratio"]
    assert 0.6 < fresh < 1.6
