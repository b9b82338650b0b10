"""medisynth's one SSIM: the documented setting (11 px Gaussian window, sigma 1.5, [0, 1] scale)."""
import numpy as np
import pytest
from scipy import ndimage

from medisynth.metrics.ssim import SSIM_MIN_SIZE, SSIM_SIGMA, ssim


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 written out in SciPy: Gaussian sigma 1.5 truncated at 3.5 sigma (11 px),
    population (co)variances, K1 0.01, K2 0.03, data range 1, borders mirrored, map averaged."""
    blur = lambda x: ndimage.gaussian_filter(x, SSIM_SIGMA, truncate=3.5, mode="mirror")  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = np.clip(blur(a * a) - mu_a**2, 0, None)
    var_b = np.clip(blur(b * b) - mu_b**2, 0, None)
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return float((((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))).mean())


def _pair(size, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    a = np.exp(-((yy - 0.4) ** 2 + (xx - 0.6) ** 2) / 0.05)
    return a, np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)


@pytest.mark.parametrize("size", [SSIM_MIN_SIZE, 16, 48])
def test_ssim_is_the_documented_setting(size):
    a, b = _pair(size)
    assert ssim(a[None, None], b[None, None])[0] == pytest.approx(_reference_ssim(a, b), abs=1e-5)


def test_identical_images_score_one_and_uint8_float_bool_agree():
    a, b = _pair(32)
    a8, b8 = (a * 255).round().astype(np.uint8), (b * 255).round().astype(np.uint8)
    assert ssim(a8[None, None], a8[None, None])[0] == pytest.approx(1.0)
    assert ssim(a8[None, None], b8[None, None])[0] == pytest.approx(ssim(a8[None, None] / 255.0, b8[None, None] / 255.0)[0], abs=1e-6)
    mask = a > 0.5
    assert ssim(mask[None, None], mask[None, None])[0] == pytest.approx(1.0)
    assert ssim(mask[None, None], (b > 0.5)[None, None])[0] == pytest.approx(ssim(mask[None, None] * 1.0, (b > 0.5)[None, None] * 1.0)[0])


def test_colour_is_the_mean_over_channels_and_a_reference_broadcasts():
    rng = np.random.default_rng(1)
    images = rng.random((3, 3, 20, 20))
    reference = rng.random((1, 3, 20, 20))
    values = ssim(images, reference, batch_size=2)
    per_channel = [[_reference_ssim(images[i, c], reference[0, c]) for c in range(3)] for i in range(3)]
    np.testing.assert_allclose(values, np.mean(per_channel, axis=1), atol=1e-5)


@pytest.mark.parametrize(
    "images,references,match",
    [
        (np.zeros((2, 1, 16, 16)), np.zeros((3, 1, 16, 16)), "differ in shape"),
        (np.zeros((1, 1, 5, 16)), np.zeros((1, 1, 5, 16)), "at least 6 px"),
        (np.full((1, 1, 16, 16), 2.0), np.zeros((1, 1, 16, 16)), r"in \[0, 1\]"),
        (np.zeros((16, 16)), np.zeros((16, 16)), "N x C x H x W"),
    ],
)
def test_bad_inputs_are_clear_errors(images, references, match):
    with pytest.raises(ValueError, match=match):
        ssim(images, references)
