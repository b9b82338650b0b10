"""Vessel statistics, the SSIM-to-reference protocol, reading pair folders and their bad inputs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.morphology import skeletonize

from medisynth.errors import MedisynthError
from medisynth.io import write_png
from medisynth.pipelines.vessel_stats import (
    VesselEvalConfig,
    evaluate_vessel_pairs,
    read_pairs,
    skeleton_points,
    ssim_to_reference,
    vessel_map_stats,
)

from medisynth.pipelines.vessels import drive_names


def shape(kind: str) -> np.ndarray:
    a = np.zeros((21, 21), bool)
    if kind == "line":
        a[10, 3:18] = True
    elif kind == "plus":
        a[10, 2:19] = True
        a[2:19, 10] = True
    elif kind == "T":
        a[3, 2:19] = True
        a[3:19, 10] = True
    return a


@pytest.mark.parametrize("kind,ends,branches", [("line", 2, 0), ("plus", 4, 1), ("T", 3, 1)])
def test_skeleton_end_and_branch_points(kind, ends, branches):
    assert skeleton_points(skeletonize(shape(kind))) == (ends, branches)


def test_vessel_map_stats_density_inside_the_fov():
    vessels = np.zeros((10, 10), bool)
    vessels[2, 1:6] = True
    vessels[7, 7] = True
    fov = np.zeros((10, 10), bool)
    fov[:, :5] = fov[7, 7] = True
    stats = vessel_map_stats(vessels, fov)
    assert stats["vessel_density"] == pytest.approx(6 / 51)
    assert stats["components"] == 2
    assert vessel_map_stats(vessels)["vessel_density"] == pytest.approx(0.06)


def test_ssim_to_reference_leaves_the_reference_out():
    rng = np.random.default_rng(0)
    images = (rng.random((3, 16, 16, 3)) * 255).astype(np.uint8)
    values = ssim_to_reference(images, images[1], skip=1)
    assert len(values) == 2 and all(v < 0.5 for v in values)
    assert ssim_to_reference(images[1:2], images[1]) == [pytest.approx(1.0)]


def test_ssim_to_reference_is_the_same_ssim_as_evaluate():
    from medisynth.metrics.pixel import paired_ssim_psnr

    rng = np.random.default_rng(1)
    images = (rng.random((3, 20, 20, 3)) * 255).astype(np.uint8)
    images[1] = np.clip(images[0].astype(int) + rng.integers(-20, 20, images[0].shape), 0, 255)
    nchw = images.transpose(0, 3, 1, 2)
    evaluate_ssim, _ = paired_ssim_psnr(nchw, np.repeat(nchw[:1], 3, axis=0))
    np.testing.assert_allclose(ssim_to_reference(images, images[0]), evaluate_ssim, atol=1e-6)
    assert evaluate_ssim[1] > 0.5 > evaluate_ssim[2]


def write_drive(root, n: int, size: int = 24, seed: int = 0, mask_size: int | None = None, mask_value: int = 255):
    rng = np.random.default_rng(seed)
    for i in range(1, n + 1):
        a, b, c = drive_names(i, 2)
        image = (rng.random((size, size, 3)) * 200 + 40).astype(np.uint8)
        ms = mask_size or size
        vessels = np.zeros((ms, ms), np.uint8)
        vessels[ms // 2, 2:-2] = mask_value
        vessels[2:-2, ms // 3] = mask_value
        write_png(root / "training" / "images" / a, image)
        write_png(root / "training" / "1st_manual" / b, vessels)
        write_png(root / "training" / "mask" / c, np.full((size, size), 255, np.uint8))
    return root


def test_evaluate_writes_a_report_with_both_protocols(tmp_path):
    real = write_drive(tmp_path / "real", 3, seed=0)
    synthetic = write_drive(tmp_path / "syn", 2, seed=1)
    report = evaluate_vessel_pairs(VesselEvalConfig(real, synthetic, tmp_path / "r.json", size=24))
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["n_real"] == 3 and saved["n_synthetic"] == 2
    # identical vessel maps in both sets: vessel SSIM 1 on both sides, identical statistics
    assert saved["ssim"]["vessels_synthetic"]["mean"] == pytest.approx(1.0)
    assert saved["ssim"]["vessels_real"]["n"] == 2  # the reference is left out
    assert saved["ssim"]["images_synthetic"]["mean"] < 0.5  # random photographs
    for key in ("vessel_density", "components", "end_points", "branch_points"):
        assert report["vessel_stats"][key]["real"]["mean"] == pytest.approx(report["vessel_stats"][key]["synthetic"]["mean"])
    with pytest.raises(MedisynthError, match="--overwrite"):
        evaluate_vessel_pairs(VesselEvalConfig(real, synthetic, tmp_path / "r.json", size=24))


def test_mask_of_another_size_names_the_file(tmp_path):
    root = write_drive(tmp_path / "d", 2, size=24, mask_size=20)
    with pytest.raises(MedisynthError, match=r"01_manual1\.png.*20x20.*24x24"):
        read_pairs(root, 24)


def test_non_binary_mask_names_the_file(tmp_path):
    root = write_drive(tmp_path / "d", 2, mask_value=128)
    with pytest.raises(MedisynthError, match=r"01_manual1\.png.*not binary"):
        read_pairs(root, 24)


def test_missing_mask_names_the_image(tmp_path):
    root = write_drive(tmp_path / "d", 2)
    (root / "training" / "1st_manual" / "02_manual1.png").unlink()
    with pytest.raises(MedisynthError, match=r"02_training\.png"):
        read_pairs(root, 24)


def test_bad_reference_index(tmp_path):
    real = write_drive(tmp_path / "real", 2)
    with pytest.raises(MedisynthError, match="--reference-index"):
        evaluate_vessel_pairs(VesselEvalConfig(real, real, None, size=24, reference_index=5))


@pytest.mark.shared_data
def test_drive_training_against_drive_test(shared_data):
    """Real against real: both halves of DRIVE have similar vessel statistics (a sanity check of the measures)."""
    drive = shared_data / "DRIVE"
    if not drive.is_dir():
        pytest.skip("DRIVE not in shared data")
    report = evaluate_vessel_pairs(VesselEvalConfig(drive / "training", drive / "test", None, size=64))
    density = report["vessel_stats"]["vessel_density"]
    assert 0.05 < density["real"]["mean"] < 0.25
    assert density["synthetic"]["mean"] == pytest.approx(density["real"]["mean"], rel=0.3)
    assert report["n_real"] == 20 and report["n_synthetic"] == 20
