"""PreparedDataset on a prepared set: items, tensors, the class-balanced sampler, masks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from medisynth.data.dataset import PreparedDataset, float_to_uint8, uint8_to_float
from medisynth.data.prepare import PrepareConfig, prepare
from medisynth.errors import MedisynthError


@pytest.fixture
def prepared(tmp_path, helpers):
    """An imbalanced prepared set (class 0: 36 images, class 1: 12) with vessel masks."""
    root = tmp_path / "src"
    lines = ["image,label,mask"]
    for i in range(48):
        helpers.write_image(root / "images" / f"x{i:02d}.png", helpers.noise_image(i, size=(20, 20)))
        mask = np.zeros((20, 20), np.uint8)
        mask[:, i % 20] = 255
        helpers.write_image(root / "masks" / f"x{i:02d}.png", mask)
        lines.append(f"x{i:02d},{0 if i % 4 else 1},masks/x{i:02d}.png")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    prepare(PrepareConfig(source=root, out=tmp_path / "prep", size=16, workers=1), progress=False)
    return tmp_path / "prep"


def test_items_are_monai_style_dicts(prepared):
    ds = PreparedDataset(prepared, split="train", with_masks=True)
    item = ds[0]
    assert item["image"].shape == (3, 16, 16) and item["image"].dtype == torch.float32
    assert -1.0 <= item["image"].min() and item["image"].max() <= 1.0
    assert item["label"] in (0, 1)
    assert item["mask"].shape == (1, 16, 16) and set(item["mask"].unique().tolist()) <= {0.0, 1.0}
    assert item["mask"].sum() > 0


def test_splits_partition_the_set(prepared):
    sizes = {s: len(PreparedDataset(prepared, split=s)) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == len(PreparedDataset(prepared, split=None)) == 48
    assert all(n > 0 for n in sizes.values())


def test_to_tensor_shapes_and_round_trip(prepared):
    ds = PreparedDataset(prepared, split="train")
    images, labels = ds.to_tensor("cpu")
    assert images.dtype == torch.uint8 and images.shape == (len(ds), 3, 16, 16)
    assert labels.dtype == torch.int64 and labels.tolist() == ds.labels.tolist()
    assert torch.equal(images[0].permute(1, 2, 0), torch.from_numpy(ds.image_uint8(0)))
    assert torch.equal(float_to_uint8(uint8_to_float(images)), images)


def test_class_balanced_sampler_draws_classes_equally(prepared):
    ds = PreparedDataset(prepared, split=None)
    assert ds.class_counts().tolist() == [36, 12]
    drawn = ds.labels[list(ds.class_balanced_sampler(num_samples=4000, seed=1))]
    share = np.bincount(drawn, minlength=2) / len(drawn)
    assert abs(share[1] - 0.5) < 0.05  # without balancing class 1 would be 25 %


def test_masks_requested_from_a_set_without_masks(tmp_path, image_folder):
    prepare(PrepareConfig(source=image_folder, out=tmp_path / "plain", size=16, workers=1), progress=False)
    with pytest.raises(MedisynthError, match="no masks"):
        PreparedDataset(tmp_path / "plain", with_masks=True)
    with pytest.raises(MedisynthError, match="unknown split"):
        PreparedDataset(tmp_path / "plain", split="training")
