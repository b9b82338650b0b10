"""`medisynth pipeline vessels`: end to end on tiny runs, the DRIVE output layout, bad runs."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
from typer.testing import CliRunner

from medisynth.cli import app
from medisynth.errors import MedisynthError
from medisynth.io import read_image
from medisynth.models import DataSpec, build_model
from medisynth.pipelines.fov import circle_fov
from medisynth.pipelines.vessels import VesselPipelineConfig, check_models, drive_names, run_pipeline


def config(root, out="pairs", **kw) -> VesselPipelineConfig:
    settings = {"n": 3, "device": "cpu", "batch_size": 2, **kw}
    return VesselPipelineConfig(vessel_run=root / "vessels", translate_run=root / "p2p", out=root / out, **settings)


def read_layout(folder, n):
    images, vessels, fovs = [], [], []
    for i in range(1, n + 1):
        a, b, c = drive_names(i, 2)
        images.append(read_image(folder / "training" / "images" / a))
        vessels.append(read_image(folder / "training" / "1st_manual" / b)[..., 0])
        fovs.append(read_image(folder / "training" / "mask" / c)[..., 0])
    return np.stack(images), np.stack(vessels), np.stack(fovs)


def test_pipeline_writes_drive_layout_pairs(tiny_runs):
    result = run_pipeline(config(tiny_runs))
    out = tiny_runs / "pairs"
    assert result.n == 3 and result.image_size == 32
    names = sorted(p.name for p in (out / "training" / "images").iterdir())
    assert names == ["01_training.png", "02_training.png", "03_training.png"]
    images, vessels, fovs = read_layout(out, 3)
    assert images.shape == (3, 32, 32, 3)
    assert set(np.unique(vessels)) <= {0, 255} and set(np.unique(fovs)) <= {0, 255}
    assert not (vessels[fovs == 0]).any()  # vessels only inside the field of view
    assert np.array_equal(fovs[0] > 0, circle_fov(32))
    report = json.loads((out / "pipeline.json").read_text())
    assert report["n"] == 3 and len(report["images"]) == 3 and report["runs"]["sr"] is None
    assert not [p for p in tiny_runs.iterdir() if p.name.startswith(".pairs")]  # no temporary left behind
    # the synthetic photographs and vessel maps say so (the FOV masks are plain geometry)
    from medisynth.provenance import read_provenance
    from medisynth.runs import Run

    record = read_provenance(out / "training" / "images" / "01_training.png")
    assert record["synthetic"] == "true" and record["run_id"] == Run(tiny_runs / "p2p").id
    assert record["model"].endswith("->pix2pix") and record["seed"] == "0"
    assert read_provenance(out / "training" / "1st_manual" / "01_manual1.png") == record
    assert read_provenance(out / "training" / "mask" / "01_training_mask.png") is None


def test_pipeline_is_reproducible_by_seed(tiny_runs):
    run_pipeline(config(tiny_runs, "a", seed=1))
    run_pipeline(config(tiny_runs, "b", seed=1))
    run_pipeline(config(tiny_runs, "c", seed=2))
    a, b, c = (read_layout(tiny_runs / x, 3) for x in "abc")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_sr_run_doubles_the_size_and_masks_stay_aligned(tiny_runs):
    base = run_pipeline(config(tiny_runs, "base", seed=4))
    up = run_pipeline(config(tiny_runs, "up", seed=4, sr_run=tiny_runs / "sr"))
    assert (base.image_size, up.image_size) == (32, 64)
    _, small, _ = read_layout(tiny_runs / "base", 3)
    images, vessels, fovs = read_layout(tiny_runs / "up", 3)
    assert images.shape == (3, 64, 64, 3) and fovs.shape == (3, 64, 64)
    # nearest-neighbour upsampling of the same trees (then clipped to the finer FOV circle)
    expected = small.repeat(2, 1).repeat(2, 2) & (fovs > 0) * 255
    assert np.array_equal(vessels, expected)


def test_output_reads_back_as_pairs(tiny_runs):
    from medisynth.data.dataset import PreparedDataset
    from medisynth.data.prepare import PrepareConfig, prepare

    run_pipeline(config(tiny_runs))
    prepared = prepare(PrepareConfig(source=tiny_runs / "pairs", out=tiny_runs / "prepared", source_kind="pairs",
                                     size=32, val_fraction=0.0, test_fraction=0.0, workers=1))
    assert prepared.manifest.num_images == 3 and prepared.manifest.has_masks
    ds = PreparedDataset(tiny_runs / "prepared", split=None, with_masks=True)
    assert ds.masks_uint8().shape == (3, 32, 32)


def read_scan(path) -> np.ndarray:
    """A DICOM/NIfTI file of the pipeline read with pydicom/nibabel alone, as shown (H x W or H x W x 3)."""
    if path.suffix == ".dcm":
        return pydicom.dcmread(path).pixel_array
    data = np.asarray(nib.load(path).dataobj)
    if data.dtype.names:  # NIfTI RGB24
        data = np.stack([data[c] for c in "RGB"], axis=-1)
    assert data.shape[2] == 1  # one image per file
    return np.rot90(data[:, :, 0])  # slices are stored turned so that rot90 shows them (as prepare does)


def prepared_arrays(source, out):
    from medisynth.data.dataset import PreparedDataset
    from medisynth.data.prepare import PrepareConfig, prepare

    prepare(PrepareConfig(source=source, out=out, source_kind="pairs", size=32, val_fraction=0.0, test_fraction=0.0,
                          workers=1))
    dataset = PreparedDataset(out, split=None, with_masks=True)
    ids = list(pd.read_csv(out / "index.csv", dtype={"id": str})["id"])
    return ids, dataset.images_uint8(), dataset.masks_uint8()


@pytest.mark.parametrize("image_format,suffix", [("dicom", ".dcm"), ("nifti", ".nii.gz")])
def test_dicom_and_nifti_pairs_hold_the_png_pixels_and_read_back(tiny_runs, image_format, suffix):
    from medisynth.provenance import read_provenance
    from medisynth.runs import Run

    run_pipeline(config(tiny_runs, "png", seed=3))
    result = run_pipeline(config(tiny_runs, "scans", seed=3, format=image_format))
    out = tiny_runs / "scans"
    assert result.format == image_format and f"as {image_format} files" in result.summary()
    assert json.loads((out / "pipeline.json").read_text())["format"] == image_format
    images, vessels, fovs = read_layout(tiny_runs / "png", 3)
    for i in range(3):
        paths = [out / "training" / folder / name
                 for folder, name in zip(("images", "1st_manual", "mask"), drive_names(i + 1, 2, suffix))]
        for path, expected in zip(paths, (images[i], vessels[i], fovs[i])):
            assert np.array_equal(read_scan(path), expected), path
            record = read_provenance(path)  # every DICOM/NIfTI file says what made it
            assert record["synthetic"] == "true" and record["run_id"] == Run(tiny_runs / "p2p").id
            assert record["model"] == "resvae->pix2pix" and record["seed"] == "3"
    if image_format == "dicom":
        photo, vessel = (pydicom.dcmread(out / "training" / f / n) for f, n in
                         (("images", "01_training.dcm"), ("1st_manual", "01_manual1.dcm")))
        assert (photo.PhotometricInterpretation, photo.SamplesPerPixel, photo.PlanarConfiguration) == ("RGB", 3, 0)
        assert vessel.PhotometricInterpretation == "MONOCHROME2" and float(vessel.RescaleSlope) == 1.0
        assert list(photo.ImageType) == ["DERIVED", "SECONDARY"] and photo.PatientID == "SYNTHETIC"
        assert "SYNTHETIC" in photo.SeriesDescription and "pix2pix" in photo.SeriesDescription
        assert photo.StudyInstanceUID == vessel.StudyInstanceUID and photo.SeriesInstanceUID != vessel.SeriesInstanceUID
    else:
        photo = nib.load(out / "training" / "images" / "01_training.nii.gz")
        assert photo.header["datatype"] == 128 and b"SYNTHETIC" in photo.header["descrip"].tobytes()  # RGB24
    # prepare (pairs, also when detected): the same ids, photographs and vessel masks as from the PNGs
    from medisynth.data.sources import detect_source

    assert detect_source(out).name == "pairs"
    png_ids, png_images, png_masks = prepared_arrays(tiny_runs / "png", tiny_runs / "prepared-png")
    ids, scan_images, scan_masks = prepared_arrays(out, tiny_runs / "prepared-scans")
    assert ids == png_ids == ["training/01_training", "training/02_training", "training/03_training"]
    assert np.array_equal(scan_images, png_images) and np.array_equal(scan_masks, png_masks)
    index = pd.read_csv(tiny_runs / "prepared-scans" / "index.csv")
    assert (index["synthetic"] == 1).all()


def test_existing_output_needs_overwrite(tiny_runs):
    run_pipeline(config(tiny_runs))
    with pytest.raises(MedisynthError, match="--overwrite"):
        run_pipeline(config(tiny_runs))
    run_pipeline(config(tiny_runs, overwrite=True))


def test_vessel_run_trained_on_images_is_refused(run_factory, tiny_runs):
    run_factory("rgb-vessels", "resvae", 32, 3, {"width": 8, "latent_dim": 8, "blocks": 1}, target="images")
    cfg = config(tiny_runs)
    cfg.vessel_run = tiny_runs / "rgb-vessels"
    with pytest.raises(MedisynthError, match="--vessel-run.*--target masks"):
        run_pipeline(cfg)


def test_translate_run_that_is_not_pix2pix_is_refused(run_factory, tiny_runs):
    cfg = config(tiny_runs)
    cfg.translate_run = tiny_runs / "sr"
    with pytest.raises(MedisynthError, match="--translate-run.*pix2pix"):
        run_pipeline(cfg)


def test_sr_run_with_other_channels_is_refused(run_factory, tiny_runs):
    run_factory("sr-gray", "edsr", 32, 1, {"n_resblocks": 1, "n_feats": 4})
    with pytest.raises(MedisynthError, match="--sr-run.*1-channel"):
        run_pipeline(config(tiny_runs, sr_run=tiny_runs / "sr-gray"))


def test_missing_run_folder_names_the_flag(tiny_runs):
    cfg = config(tiny_runs)
    cfg.translate_run = tiny_runs / "nope"
    with pytest.raises(MedisynthError, match="--translate-run .*nope"):
        run_pipeline(cfg)
    assert not (tiny_runs / "pairs").exists()


def test_check_models_rejects_a_colour_vessel_model():
    vessel = build_model("resvae", DataSpec(32, 3), {"width": 8, "latent_dim": 8, "blocks": 1})
    translator = build_model("pix2pix", DataSpec(32, 3), {"ngf": 4, "ndf": 4})
    with pytest.raises(MedisynthError, match="1-channel vessel maps"):
        check_models(vessel, translator, None)


@pytest.mark.parametrize("cfg_change,match", [({"n": 0}, "--n"), ({"fov": "square"}, "--fov"),
                                              ({"format": "tiff"}, "--format 'tiff': choose one of png, dicom, nifti")])
def test_bad_settings(tiny_runs, cfg_change, match):
    cfg = config(tiny_runs, **cfg_change)
    with pytest.raises(MedisynthError, match=match):
        run_pipeline(cfg)


def test_cli_vessels_and_eval(tiny_runs):
    runner = CliRunner()
    res = runner.invoke(app, ["pipeline", "vessels", "--vessel-run", str(tiny_runs / "vessels"), "--translate-run",
                              str(tiny_runs / "p2p"), "--n", "2", "--out", str(tiny_runs / "cli"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "wrote 2 image + vessel-mask pairs" in res.output
    res = runner.invoke(app, ["pipeline", "vessels-eval", str(tiny_runs / "cli"), "--synthetic", str(tiny_runs / "cli"),
                              "--size", "32", "--out", str(tiny_runs / "eval.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tiny_runs / "eval.json").read_text())["n_synthetic"] == 2


def test_cli_vessels_format_and_eval_of_nifti_pairs(tiny_runs):
    runner = CliRunner()
    res = runner.invoke(app, ["pipeline", "vessels", "--vessel-run", str(tiny_runs / "vessels"), "--translate-run",
                              str(tiny_runs / "p2p"), "--n", "2", "--out", str(tiny_runs / "cli"), "--device", "cpu",
                              "--format", "nifti"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tiny_runs / "cli" / "training" / "1st_manual").iterdir()) == [
        "01_manual1.nii.gz", "02_manual1.nii.gz"]
    res = runner.invoke(app, ["pipeline", "vessels-eval", str(tiny_runs / "cli"), "--synthetic", str(tiny_runs / "cli"),
                              "--size", "32", "--out", str(tiny_runs / "eval.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tiny_runs / "eval.json").read_text())["n_synthetic"] == 2
    res = runner.invoke(app, ["pipeline", "vessels", "--vessel-run", str(tiny_runs / "vessels"), "--translate-run",
                              str(tiny_runs / "p2p"), "--out", str(tiny_runs / "bad"), "--format", "jpeg"])
    # a MedisynthError: ``medisynth.cli.main`` prints its one line and exits 2
    assert isinstance(res.exception, MedisynthError) and not (tiny_runs / "bad").exists()
    assert str(res.exception) == "--format 'jpeg': choose one of png, dicom, nifti"


def test_round_trip_through_prepare_and_the_trainer(tiny_runs):
    """Pipeline output -> prepare (pairs) -> `train --model pix2pix` -> that run translates in the pipeline."""
    from medisynth.data.prepare import PrepareConfig, prepare
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    run_pipeline(config(tiny_runs, n=4))
    prepare(PrepareConfig(source=tiny_runs / "pairs", out=tiny_runs / "prepared", source_kind="pairs", size=32,
                          val_fraction=0.0, test_fraction=0.0, workers=1))
    train(TrainConfig(data=tiny_runs / "prepared", model="pix2pix", out=tiny_runs / "trained", steps=2, batch_size=2,
                      hyper={"ngf": 4, "ndf": 4}, device="cpu", progress=False, sample_every=0))
    cfg = config(tiny_runs, "again")
    cfg.translate_run = tiny_runs / "trained"
    assert run_pipeline(cfg).n == 3
