"""prepare on the real data in ../shared/data (skipped where it is absent). Small sizes keep it fast."""
from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medisynth.data.dataset import PreparedDataset
from medisynth.data.prepare import PrepareConfig, prepare
from medisynth.errors import MedisynthError

pytestmark = pytest.mark.shared_data


def run(source, out, **kw):
    kw.setdefault("workers", 2)
    return prepare(PrepareConfig(source=source, out=out, **kw), progress=False)


def test_eyepacs_sample_groups_both_eyes(shared_data, tmp_path):
    result = run(shared_data / "EyePACS_sample", tmp_path / "out", size=32)
    m = result.manifest
    assert m.source["layout"] == "csv" and m.class_names == ["0", "1", "2", "3", "4"]
    assert m.num_images == len(pd.read_csv(shared_data / "EyePACS_sample" / "trainLabels.csv"))
    assert m.preprocessing["kind"] == "fundus" and m.has_fov
    index = pd.read_csv(tmp_path / "out" / "index.csv", dtype={"group": str, "id": str})
    patients = index["id"].str.replace(r"_(left|right)$", "", regex=True)
    assert (patients == index["group"]).all()
    assert (index.groupby("group")["split"].nunique() == 1).all()


def test_ct_kidney_class_folders_and_duplicates(shared_data, tmp_path):
    root = shared_data / "CT_Kidney_Normal_Cyst_Tumor_Stone"
    # exact duplicates by decoded pixels, counted independently of medisynth
    digests = Counter(
        hashlib.sha1(np.asarray(Image.open(p)).tobytes()).hexdigest() for p in sorted(root.rglob("*.jpg"))
    )
    expected_dups = sum(n - 1 for n in digests.values())
    # near-duplicate grouping off: this test is about exact copies and fine stratification (with it on, the
    # neighbouring slices form ~46 units and the fractions are coarse: see test_near_duplicates.py)
    result = run(root, tmp_path / "out", size=32, near_duplicate_threshold=0)
    m = result.manifest
    assert m.near_duplicates == 0 and m.split["near_duplicate_threshold"] is None
    assert m.source["layout"] == "folders" and m.class_names == ["Cyst", "Normal", "Stone", "Tumor"]
    assert m.num_images == sum(digests.values()) and m.channels == 1
    assert m.duplicates >= expected_dups > 0  # (downsizing may make a few more images identical)
    index = pd.read_csv(tmp_path / "out" / "index.csv")
    assert (index.groupby("sha1")["split"].nunique() == 1).all()  # no copy on both sides
    for c in m.class_names:  # stratified: every class has ~15 % in val and test
        n = sum(m.counts[s][c] for s in m.counts)
        assert abs(m.counts["test"][c] / n - 0.15) < 0.03


def test_drive_pairs_with_masks(shared_data, tmp_path):
    result = run(shared_data / "DRIVE", tmp_path / "out", size=48)
    m = result.manifest
    assert m.num_images == 40 and m.has_masks and m.has_fov and m.source["layout"] == "pairs"
    ds = PreparedDataset(tmp_path / "out", split=None, with_masks=True)
    masks = ds.masks_uint8()
    assert masks.shape == (40, 48, 48) and 0.03 < (masks > 0).mean() < 0.3  # vessels: a thin share of pixels
    index = pd.read_csv(tmp_path / "out" / "index.csv")
    assert index["origin"].value_counts().to_dict() == {"training": 20, "test": 20}


def test_hrf_missing_masks_error_then_three_skips(shared_data, tmp_path):
    with pytest.raises(MedisynthError, match=r"3 image\(s\) without annotation.*11_h.*12_h.*13_h"):
        run(shared_data / "HRF", tmp_path / "out", size=32)
    result = run(shared_data / "HRF", tmp_path / "out", size=32, skip_bad=True)
    m = result.manifest
    assert m.num_images == 42 and len(m.skipped) == 3
    assert sorted(s["item"].rsplit("/", 1)[-1] for s in m.skipped) == ["11_h.png", "12_h.png", "13_h.png"]
    assert m.class_names == ["dr", "glaucoma", "healthy"]
    assert {c: sum(m.counts[s][c] for s in m.counts) for c in m.class_names} == {"dr": 15, "glaucoma": 15, "healthy": 12}


def test_pneumoniamnist_official_split(shared_data, tmp_path):
    result = run(shared_data / "PneumoniaMNIST", tmp_path / "out", size=28)
    m = result.manifest
    assert {s: sum(c.values()) for s, c in m.counts.items()} == {"train": 4708, "val": 524, "test": 624}
    assert m.counts["train"] == {"0": 1214, "1": 3494}
    assert m.split["fixed_by_source"]
