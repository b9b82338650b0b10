"""Kidney CT phantom: shapes, class findings, determinism, folder layout, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from medisynth.errors import MedisynthError
from medisynth.io import read_image
from medisynth.phantom import CT_CLASSES, generate_ct_dataset, render_ct
from medisynth.phantom.common import class_counts, image_rng
from medisynth.phantom.ct import DEFAULT_CT_PROPORTIONS, render_ct_layers

SEEDS = range(4)


@pytest.mark.parametrize("size", [32, 64, 128, 256])
@pytest.mark.parametrize("name", CT_CLASSES)
def test_shape_dtype(size, name):
    image = render_ct(name, size, image_rng(0, size))
    assert image.shape == (size, size) and image.dtype == np.uint8
    # air black, bone white (at 32 px the thin cortex is blurred into the marrow)
    assert image.min() == 0 and image.max() >= (170 if size == 32 else 200)


def test_anatomy_gray_levels():
    r = render_ct_layers("Normal", 128, image_rng(1, 0))
    img = r.image.astype(float)
    assert img[~r.body].mean() < 10                                 # air outside the body
    assert 60 < img[r.body].mean() < 160                             # soft tissue / fat mix
    assert img[r.kidneys].mean() > img[r.body & ~r.kidneys].mean()   # enhancing kidneys
    labels, n = ndimage.label(r.kidneys)
    assert n == 2                                                    # two separate kidneys


def _pair(name, seed, size=128):
    return render_ct_layers("Normal", size, image_rng(8, seed)), render_ct_layers(name, size, image_rng(8, seed))


@pytest.mark.parametrize("seed", SEEDS)
def test_normal_has_no_finding_and_findings_change_only_one_kidney(seed):
    normal, cyst = _pair("Cyst", seed)
    assert not normal.lesion.any() and normal.lesion_side == ""
    diff = np.abs(cyst.image.astype(int) - normal.image.astype(int)) > 20
    grown = ndimage.binary_dilation(cyst.lesion, iterations=3)
    assert diff.any() and not (diff & ~grown).any()


@pytest.mark.parametrize("seed", SEEDS)
def test_stone_is_a_small_very_bright_blob_in_a_kidney(seed):
    normal, stone = _pair("Stone", seed)
    assert 0 < stone.lesion.sum() < 0.002 * stone.lesion.size * 4     # a few pixels, not an organ
    assert stone.image[stone.lesion].max() >= 240
    assert stone.image[stone.lesion].mean() > normal.image[stone.lesion].mean() + 60
    assert (stone.lesion & ndimage.binary_dilation(normal.kidneys, iterations=2)).sum() == stone.lesion.sum()


@pytest.mark.parametrize("seed", SEEDS)
def test_cyst_is_a_dark_round_homogeneous_region_in_a_kidney(seed):
    normal, cyst = _pair("Cyst", seed)
    m = cyst.lesion
    assert m.sum() > 30
    assert (m & normal.kidneys).sum() > 0.3 * m.sum()                 # sits in (and may bulge from) a kidney
    core = ndimage.binary_erosion(m, iterations=1)
    kidney_tissue = normal.kidneys & ~m
    assert cyst.image[core].mean() < normal.image[kidney_tissue].mean() - 20   # fluid darker than parenchyma
    assert cyst.image[core].std() < 12                                # homogeneous
    ys, xs = np.nonzero(m)
    r_eq = np.sqrt(m.sum() / np.pi)
    dist = np.hypot(ys - ys.mean(), xs - xs.mean())
    assert dist.max() < 1.35 * r_eq + 1.5                             # round: no long arms


@pytest.mark.parametrize("seed", SEEDS)
def test_tumor_is_heterogeneous_and_distorts_the_kidney(seed):
    normal, tumor = _pair("Tumor", seed)
    m = tumor.lesion
    core = ndimage.binary_erosion(m, iterations=2)
    assert (m & ~normal.kidneys).sum() > 0.2 * m.sum()               # grows beyond the old contour
    assert tumor.image[core].std() > 15                               # heterogeneous (a cyst: < 12)
    cyst = render_ct_layers("Cyst", 128, image_rng(8, seed))
    assert m.sum() > cyst.lesion.sum() * 0.8                          # typically larger than a cyst


def test_same_state_same_image():
    a = render_ct("Tumor", 64, image_rng(2, 2))
    assert np.array_equal(a, render_ct("Tumor", 64, image_rng(2, 2)))
    assert not np.array_equal(a, render_ct("Tumor", 64, image_rng(2, 3)))


@pytest.mark.parametrize("name", ["normal", "Cysts", ""])
def test_bad_class(name):
    with pytest.raises(MedisynthError, match="Normal, Cyst, Tumor, Stone"):
        render_ct(name, 64, image_rng(0))


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_layout_like_the_ct_kidney_set(tmp_path):
    out = generate_ct_dataset(tmp_path / "ct", n=20, size=32, seed=1)
    counts = class_counts(20, DEFAULT_CT_PROPORTIONS, CT_CLASSES)
    assert counts == [8, 5, 4, 3]
    for name, c in zip(CT_CLASSES, counts):
        files = sorted((out / name).iterdir())
        assert sorted(p.name for p in files) == sorted(f"{name}- ({k}).png" for k in range(1, c + 1))
        assert read_image(files[0]).shape == (32, 32, 1)
    params = json.loads((out / "phantom.json").read_text())
    assert params["counts"] == dict(zip(CT_CLASSES, counts)) and params["kind"] == "ct"
    assert "seed=1" in (out / "README.txt").read_text()


def test_dataset_deterministic_and_prefix_stable(tmp_path):
    a = _files(generate_ct_dataset(tmp_path / "a", n=8, size=32, seed=5))
    b = _files(generate_ct_dataset(tmp_path / "b", n=8, size=32, seed=5))
    big = _files(generate_ct_dataset(tmp_path / "c", n=12, size=32, seed=5, proportions="1,1,1,1"))
    assert a == b
    shared = [k for k in a if k.endswith(".png")]
    assert shared and all(big[k] == a[k] for k in shared)    # "<Class>- (N).png" depends on (seed, class, N) only


def test_zero_share_class_gets_no_folder(tmp_path):
    out = generate_ct_dataset(tmp_path / "ct", n=6, size=32, proportions="1,1,0,1")
    assert not (out / "Tumor").exists()
    assert len(list((out / "Stone").iterdir())) == 2


@pytest.mark.parametrize(
    "kwargs, flag",
    [({"n": 7}, "--n"), ({"proportions": "1,2,3,4,5"}, "--proportions"), ({"proportions": "1,-1,1,1"}, "--proportions"),
     ({"size": 8}, "--size"), ({"size": 4096}, "--size")],
)
def test_bad_arguments(tmp_path, kwargs, flag):
    with pytest.raises(MedisynthError, match=flag):
        generate_ct_dataset(tmp_path / "ct", **{"n": 8, "size": 32, **kwargs})
    assert not (tmp_path / "ct").exists()
