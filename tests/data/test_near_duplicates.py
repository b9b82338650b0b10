"""Near-duplicate grouping in prepare: signatures, the blocked pair search, the split, the summary."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from medisynth.data.dataset import PreparedDataset
from medisynth.data.near_duplicates import (
    DEFAULT_THRESHOLD, near_duplicate_components, near_duplicate_pairs, nearest_similarity, normalise_signatures,
    raw_signature, signatures,
)
from medisynth.data.prepare import PrepareConfig, format_summary, prepare
from medisynth.errors import MedisynthError



def write_image(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def run(source, out, **kw):
    kw.setdefault("size", 32)
    kw.setdefault("workers", 1)
    return prepare(PrepareConfig(source=source, out=out, **kw), progress=False)


def smooth_image(seed: int, side: int = 64) -> np.ndarray:
    """A distinct, smooth grayscale picture (blurred noise): like anatomy, unlike pixel noise."""
    x = gaussian_filter(np.random.default_rng(seed).normal(size=(side, side)), 6)
    return np.clip(128 + 100 * x / np.abs(x).max(), 0, 255).astype(np.uint8)


def variant(image: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A near copy with a little noise (a neighbouring slice): k = 1 / 2 also shift it by one pixel
    down / right (a diagonal shift of fine texture can fall below 0.97: the threshold is set for
    neighbouring slices, which measure >= 0.99 on CT kidney, not for misregistration)."""
    out = np.roll(image, shift=(int(k == 1), int(k == 2)), axis=(0, 1)).astype(np.int16)
    out += np.random.default_rng(seed).integers(-3, 4, out.shape, dtype=np.int16)
    return np.clip(out, 0, 255).astype(np.uint8)


def planted_vectors(n_base=200, copies=3, dim=256, seed=0):
    """Random unit vectors, some with planted near copies; returns (signatures, base index per row)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n_base, dim))
    rows, owner = [], []
    for i, b in enumerate(base):
        for _ in range(copies if i % 4 == 0 else 1):  # every 4th vector gets near copies
            rows.append(b + 0.1 * rng.normal(size=dim))
            owner.append(i)
    sig = np.asarray(rows, np.float32)
    return sig / np.linalg.norm(sig, axis=1, keepdims=True), np.array(owner)


@pytest.mark.parametrize("block", [1, 7, 64, 5000])
def test_blocked_pair_search_equals_brute_force(block):
    sig, _ = planted_vectors()
    found = np.concatenate(list(near_duplicate_pairs(sig, 0.97, block)))
    brute = {(i, j) for i, j in itertools.combinations(range(len(sig)), 2) if sig[i] @ sig[j] >= 0.97}
    assert len(brute) > 50  # the planted copies are found at all
    assert {tuple(p) for p in found.tolist()} == brute
    assert len(found) == len(brute)  # each pair once


@pytest.mark.parametrize("block", [3, 2048])
def test_components_are_the_planted_groups(block):
    sig, owner = planted_vectors()
    comp = near_duplicate_components(sig, 0.97, block)
    # same component <=> same planted base vector (independent random vectors have cosine ~ 0)
    assert (pd.Series(comp).groupby(owner).nunique() == 1).all()
    assert pd.Series(owner).groupby(comp).nunique().max() == 1
    assert comp[0] == 0 and (comp <= np.arange(len(comp))).all()  # named by the first row of the component


def test_a_chain_is_one_component():
    # 0 ~ 1 ~ 2 but 0 !~ 2: single linkage joins all three (neighbouring slices of one run)
    angles = np.array([0.0, 0.2, 0.4, 2.0])
    sig = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
    assert near_duplicate_components(sig, 0.97).tolist() == [0, 0, 0, 3]


@pytest.mark.parametrize("threshold", [0, 1, None])
def test_threshold_zero_or_one_disables(threshold):
    sig, _ = planted_vectors()
    assert near_duplicate_components(sig, threshold).tolist() == list(range(len(sig)))


def test_signature_ignores_brightness_and_sees_noise_as_near():
    images = [smooth_image(s) for s in range(30)]
    sig = normalise_signatures(np.stack([raw_signature(im) for im in images]
                                        + [raw_signature(np.clip(images[0].astype(int) + 20, 0, 255)),
                                           raw_signature(variant(images[1], 0, seed=0))]))
    assert sig[30] @ sig[0] > 0.99 and sig[31] @ sig[1] > 0.99  # brightness; noise of +-3 grey levels
    others = sig[:30] @ sig[:30].T
    assert others[~np.eye(30, dtype=bool)].max() < DEFAULT_THRESHOLD  # distinct pictures stay apart


@pytest.fixture
def slices_folder(tmp_path):
    """Image folder: 16 distinct pictures x 4 near copies each, 2 classes (8 pictures per class)."""
    root = tmp_path / "slices"
    lines = ["image,label"]
    for b in range(16):
        base = smooth_image(100 + b)
        for k in range(4):
            name = f"s{b:02d}_{k}"
            write_image(root / "images" / f"{name}.png", variant(base, k, seed=1000 * b + k))
            lines.append(f"{name},{'ab'[b % 2]}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def _picture(index: pd.DataFrame) -> pd.Series:
    return index["id"].str.split("_").str[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_near_copies_land_in_one_split_and_distinct_pictures_do_not_merge(slices_folder, tmp_path, seed):
    result = run(slices_folder, tmp_path / "out", seed=seed)
    index = pd.read_csv(tmp_path / "out" / "index.csv")
    picture = _picture(index)
    assert (index.groupby(picture)["split"].nunique() == 1).all()
    assert index.groupby(picture)["near_group"].nunique().eq(1).all()  # each picture's copies: one group
    assert index["near_group"].nunique() == 16  # ... and distinct pictures: separate groups
    assert set(index["split"]) == {"train", "val", "test"}
    m = result.manifest
    assert m.near_duplicates == 64 and m.split["near_duplicate_threshold"] == DEFAULT_THRESHOLD
    assert "near-duplicate images (cosine >= 0.97" in format_summary(m) and "64 (kept on one side" in format_summary(m)
    assert "warning" not in format_summary(m)


def test_threshold_zero_switches_grouping_off(slices_folder, tmp_path):
    result = run(slices_folder, tmp_path / "out", near_duplicate_threshold=0)
    index = pd.read_csv(tmp_path / "out" / "index.csv")
    assert result.manifest.near_duplicates == 0 and result.manifest.split["near_duplicate_threshold"] is None
    assert (index["near_group"] == index["index"]).all()
    assert (index.groupby(_picture(index))["split"].nunique() > 1).any()  # copies now straddle the split
    assert "near-duplicate" not in format_summary(result.manifest)


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_bad_threshold_is_one_clear_error(slices_folder, tmp_path, threshold):
    with pytest.raises(MedisynthError, match="--near-duplicate-threshold"):
        run(slices_folder, tmp_path / "out", near_duplicate_threshold=threshold)
    assert not (tmp_path / "out").exists()


def test_one_giant_unit_is_reported_not_hidden(tmp_path):
    root = tmp_path / "same"
    lines = ["image,label"]
    base = smooth_image(7)
    # class a: eight near copies of one picture; class b: distinct pictures. (Where copies of one picture
    # make up most of the set, centring on the set's mean removes the picture itself and the copies
    # separate again: the guard below is for a class, not a whole set, of near-identical images.)
    for i in range(8):
        write_image(root / "images" / f"a{i}.png", variant(base, i % 4, seed=i))
        lines.append(f"a{i},a")
    for i in range(24):
        write_image(root / "images" / f"b{i}.png", smooth_image(200 + i))
        lines.append(f"b{i},b")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    m = run(root, tmp_path / "out").manifest
    assert m.split["largest_unit_share"] == {"a": 1.0, "b": pytest.approx(1 / 24, abs=1e-3)}
    summary = format_summary(m)
    assert "holds 100% of class a" in summary and "class b" not in summary.split("warning", 1)[1]
    assert m.counts["train"]["a"] == 8  # behaviour unchanged: the unit goes whole to one side


def test_cli_flag(slices_folder, tmp_path):
    from typer.testing import CliRunner

    from medisynth.cli.app import app

    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["prepare", str(slices_folder), "--out", str(out), "--size", "16", "--workers", "1",
                                   "--near-duplicate-threshold", "0"])
    assert res.exit_code == 0, res.output
    assert "near-duplicate" not in res.output
    assert pd.read_json(out / "manifest.json", typ="series")["near_duplicates"] == 0


@pytest.mark.shared_data
def test_ct_kidney_neighbouring_slices_no_longer_leak(shared_data, tmp_path):
    root = shared_data / "CT_Kidney_Normal_Cyst_Tumor_Stone"
    leak = {}
    for name, threshold in (("before", 0), ("after", DEFAULT_THRESHOLD)):
        run(root, tmp_path / name, size=32, workers=2, near_duplicate_threshold=threshold)
        ds = PreparedDataset(tmp_path / name, split=None)
        split = pd.read_csv(tmp_path / name / "index.csv")["split"].to_numpy()
        sig = signatures(ds.images_uint8())
        train = split == "train"
        leak[name] = float(np.mean(nearest_similarity(sig[~train], sig[train]) >= DEFAULT_THRESHOLD))
    print(f"CT kidney, 32 px: held-out images with a train image at cosine >= {DEFAULT_THRESHOLD}: {leak}")
    assert leak["before"] > 0.9
    assert leak["after"] <= 0.01
