"""Class counts, argument checks and seeding shared by both phantoms."""
from __future__ import annotations

import numpy as np
import pytest

from medisynth.errors import MedisynthError
from medisynth.phantom import common
from medisynth.phantom.fundus import EYEPACS_PROPORTIONS, GRADES


@pytest.mark.parametrize(
    "n, proportions, expected",
    [
        (1000, EYEPACS_PROPORTIONS, [737, 70, 148, 23, 22]),   # quotas 736.7 69.7 148.5 23.5 21.6: 3 seats to .7 .7 .6
        (100, EYEPACS_PROPORTIONS, [74, 7, 15, 2, 2]),
        (10, EYEPACS_PROPORTIONS, [2, 2, 2, 2, 2]),            # minimum of 2 taken from the largest class
        (20, EYEPACS_PROPORTIONS, [11, 2, 3, 2, 2]),          # 15,1,3,1,0 then the minimum
        (7, (1, 1, 1, 0, 0), [3, 2, 2, 0, 0]),                  # zero share -> zero images, tie -> earlier class
        (11, (1, 1, 1, 1, 1), [3, 2, 2, 2, 2]),
    ],
)
def test_class_counts_largest_remainder(n, proportions, expected):
    counts = common.class_counts(n, proportions, GRADES)
    assert counts == expected
    assert sum(counts) == n


def test_class_counts_largest_remainder_matches_quota():
    # every count is floor or ceil of its quota when no minimum is needed
    props = (5.0, 3.0, 1.5, 0.3, 0.2)
    n = 997
    counts = common.class_counts(n, props, GRADES)
    quotas = [n * p / sum(props) for p in props]
    assert sum(counts) == n
    assert all(int(np.floor(q)) <= c <= int(np.ceil(q)) for q, c in zip(quotas, counts))


@pytest.mark.parametrize("n", [0, 4, 9])
def test_too_few_images_is_an_error(n):
    with pytest.raises(MedisynthError, match="--n"):
        common.class_counts(n, EYEPACS_PROPORTIONS, GRADES)


@pytest.mark.parametrize("text", ["1,2,3", "1,2,3,4,5,6", "1,-2,3,4,5", "0,0,0,0,0", "1,x,3,4,5", "1,nan,1,1,1"])
def test_bad_proportions(text):
    with pytest.raises(MedisynthError, match="--proportions"):
        common.parse_proportions(text, EYEPACS_PROPORTIONS, GRADES)


def test_proportions_parse_and_default():
    assert common.parse_proportions(" 1, 2,3,4,5 ", EYEPACS_PROPORTIONS, GRADES) == [1, 2, 3, 4, 5]
    assert common.parse_proportions(None, EYEPACS_PROPORTIONS, GRADES) == list(EYEPACS_PROPORTIONS)


@pytest.mark.parametrize("size", [31, 1025, 0, -64])
def test_bad_size(size):
    with pytest.raises(MedisynthError, match="--size"):
        common.check_size(size)


def test_image_rng_depends_on_every_key():
    a = common.image_rng(0, 2, 5).random(4)
    assert np.array_equal(a, common.image_rng(0, 2, 5).random(4))
    assert not np.array_equal(a, common.image_rng(0, 2, 6).random(4))
    assert not np.array_equal(a, common.image_rng(1, 2, 5).random(4))


def test_stamp_blobs_draws_inside_patch_only():
    layer = np.zeros((32, 32), np.float32)
    common.stamp_blobs(layer, np.array([[0.0, 0.0]], np.float32), np.array([0.1]), 32, edge=0.1)
    ys, xs = np.nonzero(layer > 0.5)
    assert 13 <= ys.min() and ys.max() <= 18 and 13 <= xs.min() and xs.max() <= 18
    assert layer[0, 0] == 0


def test_assign_labels_exact_counts_and_stable_under_larger_n():
    counts = common.class_counts(1000, EYEPACS_PROPORTIONS, GRADES)
    labels = common.assign_labels(counts, seed=0)
    assert np.bincount(labels, minlength=5).tolist() == counts
    assert not (np.diff(labels) >= 0).all(), "classes must be interleaved, not sorted"
    more = common.assign_labels(common.class_counts(1100, EYEPACS_PROPORTIONS, GRADES), seed=0)
    assert (more[:1000] == labels).mean() > 0.9
    other_seed = common.assign_labels(counts, seed=1)
    assert not np.array_equal(other_seed, labels)
