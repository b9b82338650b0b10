"""What each protocol trains, validates and tests on: no synthetic image ever reaches val or test."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from medisynth.errors import MedisynthError
from medisynth.downstream.data import (
    PROTOCOLS,
    SYNTHETIC_SHARE,
    ProtocolData,
    balanced_mix_weights,
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
    labels = [0] * 2 + [1] * 6 + [2] * 3  # class 2 has too few to reach 8
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


def test_balanced_mix_draws_every_class_equally_and_half_of_each_synthetic(real, synthetic):
    data = protocol_data("real-balanced+synthetic", real, synthetic, seed=0)
    assert set(data.train.ids) == set(real.train.ids) | set(synthetic.ids)  # every real and synthetic image
    assert data.added_per_class == [2, 6, 3] and not data.class_balanced
    w, labels, syn = data.draw_weights, data.train.labels, data.train.synthetic
    assert np.isclose(w.sum(), 1.0)
    for c in range(3):
        assert np.isclose(w[labels == c].sum(), 1 / 3)
        assert np.isclose(w[(labels == c) & syn].sum(), SYNTHETIC_SHARE / 3)
        for part in (syn, ~syn):  # within a class and a part, every image equally likely
            assert np.ptp(w[(labels == c) & part]) == 0


@pytest.mark.parametrize("share", [0.0, 0.25, 1.0])
def test_balanced_mix_weights_give_a_class_without_real_images_all_its_draws(share):
    w = balanced_mix_weights(np.array([0, 0, 1, 1]), np.array([False, True, True, True]), 2, share)
    assert np.isclose(w[:2].sum(), 0.5) and np.isclose(w[1], share / 2)
    assert np.isclose(w[2:].sum(), 0.5)  # class 1 has only synthetic images: they take its whole half


def test_balanced_mix_needs_synthetic_images_of_every_class(real, synthetic):
    with pytest.raises(MedisynthError, match="has none of 0, 2.*--per-class"):
        protocol_data("real-balanced+synthetic", real, synthetic.subset(np.nonzero(synthetic.labels == 1)[0]))


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
    ("real-balanced-aug", "classic", True, False), ("real-weighted", "none", False, True)])
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
