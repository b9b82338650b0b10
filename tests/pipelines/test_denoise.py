"""The deconvolution + threshold clean-up of generated vessel maps, on blurred trees whose truth is known."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage import filters, measure

from medisynth.errors import MedisynthError
from medisynth.pipelines.denoise import DenoiseOptions, deconvolve, denoise_vessel_map, dice, gaussian_psf, remove_small_components


def blurred(tree: np.ndarray, sigma: float, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """What a VAE gives: the tree blurred by a Gaussian, scaled to [0, 1], with some pixel noise."""
    b = ndimage.gaussian_filter(tree.astype(float), sigma)
    b /= b.max()
    return np.clip(b + np.random.default_rng(seed).normal(0, noise, b.shape), 0, 1)


@pytest.mark.parametrize("size,depth,sigma,min_dice", [(64, 4, 1.0, 0.85), (128, 5, 1.0, 0.85), (128, 5, 1.5, 0.75)])
def test_recovers_a_blurred_tree_thin_and_connected(tree_factory, size, depth, sigma, min_dice):
    truth = tree_factory(size, depth=depth)
    assert measure.label(truth, connectivity=2).max() == 1
    clean = denoise_vessel_map(blurred(truth, sigma), DenoiseOptions(psf_sigma=sigma))
    assert dice(clean, truth) > min_dice
    assert measure.label(clean, connectivity=2).max() <= 2
    assert clean.sum() < 1.6 * truth.sum()  # not blurred wide


@pytest.mark.parametrize("sigma", [1.0, 1.5])
def test_deconvolution_beats_thresholding_the_blur(tree_factory, sigma):
    truth = tree_factory(128, depth=5)
    soft = blurred(truth, sigma)
    plain = soft > filters.threshold_otsu(soft)
    clean = denoise_vessel_map(soft, DenoiseOptions(psf_sigma=sigma))
    assert dice(clean, truth) > dice(plain, truth) + 0.05


def test_deconvolution_sharpens():
    dot = np.zeros((21, 21))
    dot[10, 10] = 1
    soft = ndimage.gaussian_filter(dot, 1.5)
    soft /= soft.max()
    sharp = deconvolve(soft, 1.5, 30)
    assert sharp[10, 10] == pytest.approx(1.0)
    assert sharp[10, 13] < soft[10, 13]  # energy pulled back towards the centre


def test_fixed_threshold_and_fov(vessel_tree):
    soft = blurred(vessel_tree, 1.0)
    fov = np.zeros_like(vessel_tree)
    fov[:, :32] = True
    clean = denoise_vessel_map(soft, DenoiseOptions(threshold=0.5), fov=fov)
    assert clean.any() and not clean[:, 32:].any()


def test_flat_map_gives_an_empty_tree():
    assert not denoise_vessel_map(np.full((32, 32), 0.3)).any()


def test_small_specks_are_removed_and_thinning_keeps_connectivity(vessel_tree):
    soft = blurred(vessel_tree, 1.0)
    soft[5, 5] = soft[5, 60] = 1.0  # isolated specks
    clean = denoise_vessel_map(soft, DenoiseOptions(min_size=5))
    assert not clean[5, 5] and not clean[5, 60]
    thinned = denoise_vessel_map(soft, DenoiseOptions(min_size=5, thin_iterations=3))
    assert thinned.sum() < clean.sum()
    assert measure.label(thinned, connectivity=2).max() == measure.label(clean, connectivity=2).max()


def test_remove_small_components_boundary():
    a = np.zeros((10, 10), bool)
    a[0, :3] = True  # 3 px
    a[5, :5] = True  # 5 px
    kept = remove_small_components(a, 4)
    assert not kept[0].any() and kept[5, :5].all()


def test_psf_is_normalised():
    assert gaussian_psf(1.3).sum() == pytest.approx(1.0)


@pytest.mark.parametrize("options,match", [
    (DenoiseOptions(threshold=1.5), "--threshold"),
    (DenoiseOptions(psf_sigma=-1), "psf_sigma"),
    (DenoiseOptions(hysteresis=0), "hysteresis"),
])
def test_bad_options_are_clear_errors(options, match):
    with pytest.raises(MedisynthError, match=match):
        denoise_vessel_map(np.zeros((8, 8)), options)


def test_a_colour_map_is_refused():
    with pytest.raises(MedisynthError, match="one H x W channel"):
        denoise_vessel_map(np.zeros((8, 8, 3)))


def test_fast_richardson_lucy_matches_scikit_image():
    """Away from the border (where the two pad differently) our separable RL equals skimage's."""
    from skimage import restoration

    rng = np.random.default_rng(0)
    soft = ndimage.gaussian_filter((rng.random((64, 64)) > 0.9).astype(float), 1.5)
    soft /= soft.max()
    ours = deconvolve(soft, 1.5, 10)
    pad = 7
    reference = restoration.richardson_lucy(np.pad(soft, pad, mode="symmetric"), gaussian_psf(1.5), num_iter=10, clip=False)
    reference = np.clip(reference[pad:-pad, pad:-pad], 0, 1)
    assert np.abs(ours[10:-10, 10:-10] - reference[10:-10, 10:-10]).max() < 1e-3
