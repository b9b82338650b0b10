"""Preprocessing: fundus field-of-view crop, padding, Graham normalisation, CT windowing, masks."""
from __future__ import annotations

import numpy as np
import pytest

from medisynth.data.preprocess import (
    PrepOptions, find_fov, find_fov_box, graham_normalise, pad_to_square, preprocess, resize, window_ct,
)
from medisynth.errors import MedisynthError


def test_fov_box_is_the_circle_not_the_text(helpers):
    image = helpers.fundus_like(0, width=200, height=160, centre=(70, 90), radius=40)
    top, left, bottom, right = find_fov_box(image)
    expected = (90 - 40, 70 - 40, 90 + 41, 70 + 41)  # rows 50..130, cols 30..110 inclusive
    assert np.all(np.abs(np.array((top, left, bottom, right)) - expected) <= 2)


def test_fov_mask_fills_dark_spots_inside_the_disc(helpers):
    image = helpers.fundus_like(1)
    image[85:95, 65:75] = 0  # a dark lesion inside the field of view
    _, fov = find_fov(image)
    assert fov[90, 70] == 255 and fov[0, 0] == 0


def test_fundus_preprocess_crops_to_the_disc(helpers):
    image = helpers.fundus_like(2)
    out, mask, fov = preprocess(image, PrepOptions(size=64, kind="fundus"))
    assert out.shape == (64, 64, 3) and mask is None
    # the disc fills the output: corners are black, the centre and the edge midpoints are inside
    assert fov.shape == (64, 64) and fov[32, 32] == 255 and fov[32, 1] == 255 and fov[1, 32] == 255
    assert fov[0, 0] == 0 and out[0, 0].max() == 0


def test_source_fov_mask_sets_the_crop(helpers):
    image = helpers.fundus_like(6)
    fov = np.zeros(image.shape[:2], np.uint8)
    fov[60:120, 40:100] = 255  # a 60x60 FOV mask inside the bright disc
    out, _, out_fov = preprocess(image, PrepOptions(size=60, kind="fundus"), fov=fov)
    assert np.array_equal(out, image[60:120, 40:100])  # cropped to the mask's box, no resampling at 60 px
    assert out_fov.min() == 255


@pytest.mark.parametrize("shape,expected", [((10, 4, 3), (10, 10, 3)), ((3, 8), (8, 8)), ((5, 5, 1), (5, 5, 1))])
def test_pad_to_square(shape, expected):
    array = np.full(shape, 7, dtype=np.uint8)
    out = pad_to_square(array)
    assert out.shape == expected
    assert out.sum() == array.sum()  # padding adds only zeros
    if shape[0] > shape[1]:  # padded left and right, centred
        pad = (shape[0] - shape[1]) // 2
        assert out[:, :pad].max() == 0 and out[:, pad].min() == 7


def test_resize_keeps_binary_masks_binary():
    mask = np.zeros((100, 100), dtype=np.uint8)
    mask[20:80, 20:80] = 255
    out = resize(mask, 32, is_mask=True)
    assert set(np.unique(out).tolist()) == {0, 255}


def test_graham_output_centres_on_grey_inside_fov(helpers):
    image = helpers.fundus_like(3)
    out, _, fov = preprocess(image, PrepOptions(size=64, kind="fundus", graham=True))
    inside = out[fov > 0]
    assert abs(float(inside.mean()) - 128) < 20  # local mean subtracted, +128
    assert out[fov == 0].max() == 0  # outside the field of view stays black
    plain, _, _ = preprocess(image, PrepOptions(size=64, kind="fundus"))
    assert not np.array_equal(plain, out)


def test_graham_of_a_flat_image_is_flat_grey():
    flat = np.full((40, 40, 3), 90, dtype=np.uint8)
    out = graham_normalise(flat, None, sigma=3)
    assert np.all(out == 128)


@pytest.mark.parametrize(
    "hu,level,width,expected",
    [(-1000, 40, 400, 0), (240, 40, 400, 255), (40, 40, 400, 128), (-160, 40, 400, 0), (3000, 40, 400, 255),
     (-1000, -600, 1500, 60)],
)
def test_ct_window(hu, level, width, expected):
    assert int(window_ct(np.array([hu], dtype=np.float32), level, width)[0]) == expected


def test_ct_preprocess_windows_raw_hu():
    hu = np.full((32, 32), -1000, dtype=np.float32)
    hu[8:24, 8:24] = 240
    out, _, _ = preprocess(hu, PrepOptions(size=16, kind="ct"), raw_intensity=True)
    assert out.dtype == np.uint8 and out.shape == (16, 16, 1)
    assert out[0, 0, 0] == 0 and out[8, 8, 0] == 255


def test_mask_gets_the_same_crop_as_the_image(helpers):
    image = helpers.fundus_like(4)
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    mask[88:93, 30:111] = 255  # a horizontal "vessel" across the disc, through its centre row
    out, out_mask, _ = preprocess(image, PrepOptions(size=81, kind="fundus"), mask=mask)
    rows = np.nonzero(out_mask.any(axis=1))[0]
    cols = np.nonzero(out_mask.any(axis=0))[0]
    assert abs(rows.mean() - 40) <= 2  # the vessel stays through the centre of the cropped disc
    assert cols.min() <= 1 and cols.max() >= 79  # and spans it edge to edge


def test_mask_of_another_size_is_an_error(helpers):
    with pytest.raises(MedisynthError, match="mask size"):
        preprocess(helpers.fundus_like(5), PrepOptions(size=32, kind="fundus"), mask=np.zeros((10, 10), np.uint8))


@pytest.mark.parametrize("channels,expected", [(1, 1), (3, 3), (None, 3)])
def test_channels(channels, expected, helpers):
    out, _, _ = preprocess(helpers.noise_image(0), PrepOptions(size=16, channels=channels))
    assert out.shape == (16, 16, expected)


@pytest.mark.parametrize("bad", [dict(size=8), dict(channels=2), dict(kind="xray"), dict(window_width=0)])
def test_bad_options(bad):
    with pytest.raises(MedisynthError):
        PrepOptions(**bad).check()
