"""Fundus phantom: shapes, masks, FOV, lesions by grade, determinism, data-set layout, bad input."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from medisynth.errors import MedisynthError
from medisynth.io import read_image
from medisynth.phantom import generate_fundus_dataset, render_fundus
from medisynth.phantom import common
from medisynth.phantom.common import class_counts, image_rng
from medisynth.phantom.fundus import EYEPACS_PROPORTIONS, GRADES, render_fundus_layers

SEEDS = range(4)


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_shapes_dtypes_and_masks(size):
    image, mask, fov = render_fundus(2, size, image_rng(0, size))
    assert image.shape == (size, size, 3) and image.dtype == np.uint8
    assert mask.shape == fov.shape == (size, size) and mask.dtype == fov.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 255} and set(np.unique(fov)) == {0, 255}
    assert not (mask & ~fov).any(), "vessel pixels outside the field of view"
    assert 0.02 < (mask > 0).sum() / (fov > 0).sum() < 0.3     # a tree, not noise or a flood
    assert (image[fov == 0] == 0).all(), "outside the field of view must be black"
    inside = image[fov > 0].astype(float)
    assert inside[:, 0].mean() > inside[:, 1].mean() > inside[:, 2].mean()   # orange-red retina


@pytest.mark.parametrize("seed", SEEDS)
def test_fov_mask_is_a_circle(seed):
    size = 128
    _, _, fov = render_fundus(0, size, image_rng(9, seed))
    ys, xs = np.nonzero(fov)
    cy, cx = ys.mean(), xs.mean()
    radius = np.sqrt(len(ys) / np.pi)
    yy, xx = np.mgrid[:size, :size]
    dist = np.hypot(yy - cy, xx - cx)
    assert (fov[dist < radius - 1.0] == 255).all()
    assert (fov[dist > radius + 1.0] == 0).all()
    assert 0.85 * size / 2 < radius < size / 2


def test_vessel_mask_marks_dark_pixels():
    image, mask, fov = render_fundus(0, 128, image_rng(3, 0))
    green = image[..., 1].astype(float)
    inside = fov > 0
    assert green[(mask > 0)].mean() < green[inside & (mask == 0)].mean() - 10


def test_same_generator_state_same_image_and_different_states_differ():
    a = render_fundus(3, 64, image_rng(1, 1))
    b = render_fundus(3, 64, image_rng(1, 1))
    c = render_fundus(3, 64, image_rng(1, 2))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def _areas(grade, seed, size=128):
    return render_fundus_layers(grade, size, image_rng(5, seed))


@pytest.mark.parametrize("seed", SEEDS)
def test_grade_0_has_no_lesions_and_grade_1_only_microaneurysms(seed):
    g0, g1 = _areas(0, seed), _areas(1, seed)
    assert all(not m.any() for m in g0.lesions.values())
    assert g1.lesions["microaneurysm"].sum() > 0
    assert all(not m.any() for k, m in g1.lesions.items() if k != "microaneurysm")
    # same generator state: same eye; the image changes only at the red dots, and gets darker there
    changed = np.abs(g1.image.astype(int) - g0.image.astype(int)).max(-1) > 12
    assert changed.any()
    near_dots = np.zeros_like(changed)
    ys, xs = np.nonzero(g1.lesions["microaneurysm"])
    for y, x in zip(ys, xs):
        near_dots[max(y - 3, 0):y + 4, max(x - 3, 0):x + 4] = True
    assert not (changed & ~near_dots).any()
    dots = g1.lesions["microaneurysm"]
    assert g1.image[dots][:, 1].mean() < g0.image[dots][:, 1].mean() - 15     # red dots: green drops


@pytest.mark.parametrize("seed", SEEDS)
def test_moderate_adds_haemorrhages_and_exudates_or_cotton_wool(seed):
    r = _areas(2, seed)
    assert r.lesions["haemorrhage"].any()
    assert r.lesions["hard_exudate"].any() or r.lesions["cotton_wool"].any()
    assert not r.lesions["venous_beading"].any() and not r.lesions["neovascular"].any()


@pytest.mark.parametrize("seed", SEEDS)
def test_severe_has_more_haemorrhage_in_all_quadrants_and_beading(seed):
    moderate, severe = _areas(2, seed), _areas(3, seed)
    assert severe.lesions["haemorrhage"].sum() > 2 * moderate.lesions["haemorrhage"].sum()
    ys, xs = np.nonzero(severe.lesions["haemorrhage"])
    c = 64
    quadrants = {(y < c, x < c) for y, x in zip(ys, xs)}
    assert len(quadrants) == 4
    assert severe.lesions["venous_beading"].any()
    assert not severe.lesions["neovascular"].any() and not severe.lesions["vitreous_haze"].any()


@pytest.mark.parametrize("seed", SEEDS)
def test_proliferative_has_new_vessels_or_vitreous_haze(seed):
    r = _areas(4, seed)
    assert r.lesions["neovascular"].sum() + r.lesions["vitreous_haze"].sum() > 0
    assert r.lesions["neovascular"].any()              # this implementation always draws NVD/NVE
    assert r.lesions["haemorrhage"].any()


@pytest.mark.parametrize("eye, side", [("left", -1), ("right", 1)])
def test_disc_on_the_side_of_the_eye(eye, side):
    r = render_fundus_layers(0, 128, image_rng(2, 0), eye=eye)
    lum = r.image.astype(float).mean(-1)
    brightest_x = np.unravel_index(np.argmax(lum), lum.shape)[1]
    assert np.sign(brightest_x - 64) == side
    assert np.sign(r.disc[1]) == side


@pytest.mark.parametrize("grade", ["5", -1, "x", 2.5])
def test_bad_grade(grade):
    with pytest.raises(MedisynthError, match="grade"):
        render_fundus(grade, 64, image_rng(0))


@pytest.mark.parametrize("size", [16, 2048])
def test_bad_size(size):
    with pytest.raises(MedisynthError, match="--size"):
        render_fundus(0, size, image_rng(0))


# ----------------------------------------------------------------------------- data set
def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_dataset_layout_csv_and_counts(tmp_path):
    out = generate_fundus_dataset(tmp_path / "f", n=14, size=32, seed=3)
    rows = list(csv.DictReader((out / "labels.csv").open()))
    assert list(rows[0].keys()) == ["image", "label", "mask", "fov", "patient"]
    assert len(rows) == 14
    expected = class_counts(14, EYEPACS_PROPORTIONS, GRADES)
    assert [sum(r["label"] == g for r in rows) for g in GRADES] == expected
    assert min(expected) >= 2
    for r in rows:
        assert r["image"].startswith("phantom_") and "." not in r["image"]
        image = read_image(out / "images" / f"{r['image']}.png")
        mask = read_image(out / r["mask"])
        fov = read_image(out / r["fov"])
        assert image.shape == (32, 32, 3) and mask.shape == fov.shape == (32, 32, 1)
        assert set(np.unique(mask)) <= {0, 255}
    assert len({r["patient"] for r in rows}) == 7             # two eyes per patient
    params = json.loads((out / "phantom.json").read_text())
    assert params["n"] == 14 and params["seed"] == 3 and list(params["counts"].values()) == expected
    readme = (out / "README.txt").read_text()
    assert "seed=3" in readme and "SYNTHETIC" in readme
    assert sorted(p.name for p in out.iterdir()) == [".medisynth.json", "README.txt", "fov", "images", "labels.csv", "masks", "phantom.json"]
    assert not list(tmp_path.glob(".f.tmp-*"))               # the temporary folder was renamed away


def test_dataset_is_deterministic_and_seed_matters(tmp_path):
    a = _files(generate_fundus_dataset(tmp_path / "a", n=10, size=32, seed=1))
    b = _files(generate_fundus_dataset(tmp_path / "b", n=10, size=32, seed=1))
    c = _files(generate_fundus_dataset(tmp_path / "c", n=10, size=32, seed=2))
    assert a == b
    assert a["images/phantom_000000.png"] != c["images/phantom_000000.png"]


def test_parallel_workers_give_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "CHUNK", 4)                    # 12 images -> 3 work units over 2 processes
    one = _files(generate_fundus_dataset(tmp_path / "one", n=12, size=32, seed=4, workers=1))
    two = _files(generate_fundus_dataset(tmp_path / "two", n=12, size=32, seed=4, workers=2))
    assert one == two


def test_image_depends_on_index_and_grade_not_on_n(tmp_path):
    small = generate_fundus_dataset(tmp_path / "s", n=10, size=32, seed=6)
    large = generate_fundus_dataset(tmp_path / "l", n=16, size=32, seed=6)
    label = {}
    for root in (small, large):
        label[root] = {r["image"]: r["label"] for r in csv.DictReader((root / "labels.csv").open())}
    same = [i for i in label[small] if label[small][i] == label[large][i]]
    assert same
    for i in same:
        assert (small / "images" / f"{i}.png").read_bytes() == (large / "images" / f"{i}.png").read_bytes()
        assert (small / "masks" / f"{i}.png").read_bytes() == (large / "masks" / f"{i}.png").read_bytes()


def test_existing_output_needs_overwrite(tmp_path):
    out = generate_fundus_dataset(tmp_path / "f", n=10, size=32, seed=0)
    with pytest.raises(MedisynthError, match="--overwrite"):
        generate_fundus_dataset(out, n=10, size=32, seed=0)
    generate_fundus_dataset(out, n=12, size=32, seed=0, overwrite=True)
    assert len((out / "labels.csv").read_text().splitlines()) == 13


@pytest.mark.parametrize(
    "kwargs, flag",
    [
        ({"n": 4}, "--n"),
        ({"n": 9}, "--n"),
        ({"proportions": "1,2,3"}, "--proportions"),
        ({"proportions": [1, 1, -1, 1, 1]}, "--proportions"),
        ({"size": 31}, "--size"),
        ({"size": 1025}, "--size"),
        ({"seed": -1}, "--seed"),
        ({"workers": 0}, "--workers"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, flag):
    with pytest.raises(MedisynthError, match=flag):
        generate_fundus_dataset(tmp_path / "f", **{"n": 10, "size": 32, **kwargs})
    assert not (tmp_path / "f").exists()
