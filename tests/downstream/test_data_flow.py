"""What each protocol trains, validates and tests on: no synthetic image ever reaches val or test."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medisynth.errors import MedisynthError
from medisynth.downstream.data import (
    PROTOCOLS,
    ProtocolData,
    check_no_leak,
    load_synthetic,
    load_real,
    protocol_data,
    top_up_counts,
)
from medisynth.downstream.toy import toy_images, write_image_folder, write_toy_prepared

CLASSES = ["0", "1", "2"]


@pytest.fixture()
def real(tmp_path):
    write_toy_prepared(tmp_path / "real", {"train": [8, 4, 1], "val": [2, 2, 2], "test": [3, 3, 3]})
    return load_real(tmp_path / "real")


@pytest.fixture()
def synthetic(tmp_path):
    labels = [1] * 6 + [2] * 3  # class 2 has too few to reach 8
    write_image_folder(tmp_path / "syn", toy_images(labels, 16, 3, seed=9), [CLASSES[k] for k in labels])
    return load_synthetic(tmp_path / "syn", CLASSES, 16, 3)


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_val_and_test_are_always_the_real_splits(protocol, real, synthetic):
    data = protocol_data(protocol, real, synthetic, seed=0)
    for part, source in ((data.val, real.val), (data.test, real.test)):
        assert part.ids == source.ids and not part.synthetic.any()
        assert not any(i.startswith("synthetic/") for i in part.ids)
        assert not set(part.ids) & set(synthetic.ids)
        assert np.array_equal(part.images.numpy(), source.images.numpy())


def test_real_plus_synthetic_tops_up_train_only(real, synthetic):
    data = protocol_data("real+synthetic", real, synthetic, seed=0)
    counts = np.bincount(data.train.labels, minlength=3)
    assert data.added_per_class == [0, 4, 3] and data.shortfall_per_class == [0, 0, 4]
    assert counts.tolist() == [8, 8, 4]
    assert int(data.train.synthetic.sum()) == 7
    assert set(real.train.ids) <= set(data.train.ids)  # every real train image stays
    # a different seed picks a different subset of the synthetic class-1 images
    other = protocol_data("real+synthetic", real, synthetic, seed=1)
    assert set(other.train.ids) != set(data.train.ids)


def test_synthetic_only_trains_only_on_synthetic(real, synthetic):
    data = protocol_data("synthetic", real, synthetic, seed=0)
    assert data.train.synthetic.all() and set(data.train.ids) == set(synthetic.ids)


@pytest.mark.parametrize("protocol,augment,balanced,weighted", [
    ("real", "none", False, False), ("real-aug", "classic", False, False), ("real-balanced", "none", True, False),
    ("real-weighted", "none", False, True)])
def test_real_protocols_have_no_synthetic(protocol, augment, balanced, weighted, real):
    data = protocol_data(protocol, real, None, seed=0)
    assert not data.train.synthetic.any() and data.train.ids == real.train.ids
    assert (data.augment, data.class_balanced, data.class_weighted) == (augment, balanced, weighted)


def test_check_no_leak_catches_a_synthetic_test_image(real, synthetic):
    from medisynth.downstream.data import ImageSet

    bad = ProtocolData("real", real.train, real.val, ImageSet.concat(real.test, synthetic.subset([0])),
                       "none", False, [0, 0, 0], [0, 0, 0])
    with pytest.raises(AssertionError, match="test"):
        check_no_leak(bad, expect_synthetic_train=False, expect_real_train=True)


def test_top_up_counts():
    added, short = top_up_counts(np.array([10, 3, 0]), np.array([5, 5, 5]))
    assert added.tolist() == [0, 5, 5] and short.tolist() == [0, 2, 5]


def test_synthetic_folder_errors(tmp_path, real):
    write_image_folder(tmp_path / "bad", toy_images([0], 16, 3), ["Tumour"])
    with pytest.raises(MedisynthError, match="'Tumour' is not a class"):
        load_synthetic(tmp_path / "bad", CLASSES, 16, 3)
    write_image_folder(tmp_path / "big", toy_images([0], 32, 3), ["0"])
    with pytest.raises(MedisynthError, match="32x32"):
        load_synthetic(tmp_path / "big", CLASSES, 16, 3)
    with pytest.raises(MedisynthError, match="labels.csv not found"):
        load_synthetic(tmp_path, CLASSES, 16, 3)
    with pytest.raises(MedisynthError, match="needs synthetic"):
        protocol_data("real+synthetic", real, None)


def test_balance_output_folder_reads_only_its_synthetic_rows(tmp_path):
    folder = write_image_folder(tmp_path / "mix", toy_images([0, 1, 2], 16, 3), ["0", "1", "2.0"],
                                extra={"synthetic": [0, 1, 1]})
    s = load_synthetic(folder, CLASSES, 16, 3)
    assert s.labels.tolist() == [1, 2] and s.synthetic.all()
    assert pd.read_csv(folder / "labels.csv").shape[0] == 3
