"""sample --format dicom|nifti: files pydicom/nibabel read, that say they are synthetic, and that prepare
reads back with the same pixels and labels (in train only)."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest

from medisynth.data.prepare import PrepareConfig, prepare
from medisynth.data.preprocess import window_ct
from medisynth.errors import MedisynthError
from medisynth.io import read_image
from medisynth.provenance import is_marked_synthetic, read_provenance
from medisynth.runs import Run
from medisynth.sampling import SampleConfig, sample
from medisynth.sampling.formats import SECONDARY_CAPTURE
from medisynth.training import toy
from medisynth.training.config import TrainConfig
from medisynth.training.trainer import train

CT = {"kind": "ct", "window_level": 40.0, "window_width": 400.0}


def _run(root, channels=1, preprocessing=None):
    data = toy.write_toy_dataset(root / "data", size=16, channels=channels)
    if preprocessing:  # the toy pixels stand in for windowed CT
        manifest = json.loads((data / "manifest.json").read_text())
        manifest["preprocessing"] = preprocessing
        (data / "manifest.json").write_text(json.dumps(manifest))
    train(TrainConfig(data=data, model="toy-cgan", out=root / "run", steps=2, batch_size=4, log_every=1,
                      sample_every=0, device="cpu", progress=False))
    return root / "run"


@pytest.fixture(scope="module")
def ct_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("ct"), preprocessing=CT)


@pytest.fixture(scope="module")
def gray_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("gray"))


def _sample(run, out, image_format):
    sample(SampleConfig(run=run, out=out, per_class={"0": 3, "1": 2}, seed=7, device="cpu", progress=False,
                        format=image_format))
    return pd.read_csv(out / "labels.csv", dtype=str)


@pytest.fixture(scope="module")
def colour_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("rgb"), channels=3)


def _png_pixels(run, tmp_path, colour=False) -> dict[str, np.ndarray]:
    """The same request as PNGs: (class, number) -> uint8 H x W (H x W x 3 with ``colour``)."""
    table = _sample(run, tmp_path / "png", "png")
    channels = slice(None) if colour else 0
    return {(row.label, row.image[-6:]): read_image(tmp_path / "png" / "images" / f"{row.image}.png")[..., channels]
            for row in table.itertuples()}


def test_dicom_is_a_synthetic_secondary_capture_with_the_ct_window(ct_run, tmp_path):
    table = _sample(ct_run, tmp_path / "dcm", "dicom")
    expected = _png_pixels(ct_run, tmp_path)
    uids = set()
    for row in table.itertuples():
        path = tmp_path / "dcm" / "images" / f"{row.image}.dcm"
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == SECONDARY_CAPTURE and list(ds.ImageType) == ["DERIVED", "SECONDARY"]
        assert ds.ConversionType == "SYN" and ds.PatientID == "SYNTHETIC" and "PatientBirthDate" not in ds
        assert "SYNTHETIC" in ds.SeriesDescription and "toy-cgan" in ds.SeriesDescription
        assert "SYNTHETIC" in ds.ImageComments and "not a patient image" in ds.ImageComments
        # the stored values map to HU through the data's window, and windowing them gives the pixels back
        assert float(ds.RescaleSlope) == pytest.approx(400 / 255) and float(ds.RescaleIntercept) == pytest.approx(-160)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        assert np.array_equal(window_ct(hu, 40, 400), expected[(row.label, row.image[-6:])])
        record = read_provenance(path)
        assert record["run_id"] == Run(ct_run).id and record["class"] == row.label and record["seed"] == "7"
        uids.add(ds.SOPInstanceUID)
    assert len(uids) == len(table)


def test_nifti_is_one_slice_stack_per_class_with_provenance(ct_run, tmp_path):
    table = _sample(ct_run, tmp_path / "nii", "nifti")
    expected = _png_pixels(ct_run, tmp_path)
    for label, count in (("0", 3), ("1", 2)):
        path = tmp_path / "nii" / "images" / label / f"syn_{label}.nii.gz"
        image = nib.load(path)
        assert image.shape == (16, 16, count) and b"SYNTHETIC" in image.header["descrip"].tobytes()
        assert is_marked_synthetic(path) and read_provenance(path)["class"] == label
        hu = np.asarray(image.dataobj, dtype=np.float64)
        for k in range(count):
            assert np.array_equal(window_ct(np.rot90(hu[:, :, k]), 40, 400), expected[(label, f"{k + 1:06d}")])
    assert list(table["image"]) == [f"0/syn_0#z{k:04d}" for k in range(3)] + [f"1/syn_1#z{k:04d}" for k in range(2)]


@pytest.mark.parametrize("image_format", ["dicom", "nifti"])
@pytest.mark.parametrize("which", ["ct", "gray"])
def test_prepare_reads_them_back_with_the_same_pixels_and_labels(ct_run, gray_run, tmp_path, image_format, which):
    run = ct_run if which == "ct" else gray_run
    table = _sample(run, tmp_path / "out", image_format)
    expected = _png_pixels(run, tmp_path)
    window = {"window_level": 40, "window_width": 400} if which == "ct" else {"window_level": 127.5, "window_width": 255}
    result = prepare(PrepareConfig(source=tmp_path / "out" / "images", out=tmp_path / "prepared", size=16, workers=1,
                                   **window), progress=False)
    index = pd.read_csv(result.out / "index.csv", dtype={"class_name": str, "id": str})
    assert sorted(index["id"]) == sorted(table["image"])
    labels = table.set_index("image")["label"]
    assert list(index["class_name"]) == list(labels[index["id"]])
    assert set(index["split"]) == {"train"} and (index["synthetic"] == 1).all()  # read back as synthetic
    images = np.load(result.out / "images-00000.npy")
    numbers = {image: f"{i + 1:06d}" for label in ("0", "1")
               for i, image in enumerate(table.loc[table["label"] == label, "image"])}
    for row in index.itertuples():
        assert np.array_equal(images[row.row][..., 0], expected[(row.class_name, numbers[row.id])])


@pytest.mark.parametrize("image_format", ["dicom", "nifti"])
def test_colour_runs_are_written_as_rgb_and_read_back(colour_run, tmp_path, image_format):
    table = _sample(colour_run, tmp_path / "out", image_format)
    expected = _png_pixels(colour_run, tmp_path, colour=True)
    if image_format == "dicom":
        for row in table.itertuples():
            ds = pydicom.dcmread(tmp_path / "out" / "images" / f"{row.image}.dcm")
            assert (ds.PhotometricInterpretation, ds.SamplesPerPixel, ds.PlanarConfiguration) == ("RGB", 3, 0)
            assert "RescaleSlope" not in ds and "SYNTHETIC" in ds.ImageComments  # colour is never rescaled
            assert np.array_equal(ds.pixel_array, expected[(row.label, row.image[-6:])])
    else:
        image = nib.load(tmp_path / "out" / "images" / "0" / "syn_0.nii.gz")
        assert image.header["datatype"] == 128 and image.shape == (16, 16, 3)  # NIfTI RGB24, 3 slices
    result = prepare(PrepareConfig(source=tmp_path / "out" / "images", out=tmp_path / "prepared", size=16,
                                   workers=1), progress=False)
    assert result.manifest.channels == 3
    index = pd.read_csv(result.out / "index.csv", dtype={"class_name": str, "id": str})
    assert sorted(index["id"]) == sorted(table["image"]) and (index["synthetic"] == 1).all()
    images = np.load(result.out / "images-00000.npy")
    numbers = {image: f"{i + 1:06d}" for label in ("0", "1")
               for i, image in enumerate(table.loc[table["label"] == label, "image"])}
    for row in index.itertuples():
        assert np.array_equal(images[row.row], expected[(row.class_name, numbers[row.id])])


def test_unknown_format_names_are_refused(tmp_path, gray_run):
    with pytest.raises(MedisynthError, match="--format 'jpeg2000': choose one of png, dicom, nifti"):
        _sample(gray_run, tmp_path / "y", "jpeg2000")
    assert not (tmp_path / "y").exists()


def test_cli_sample_format(gray_run, tmp_path):
    from typer.testing import CliRunner

    from medisynth.cli import app

    result = CliRunner().invoke(app, ["sample", str(gray_run), "--out", str(tmp_path / "s"), "--n", "2",
                                      "--format", "nifti", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "s" / "images").rglob("*.nii.gz")) == ["syn_0.nii.gz", "syn_1.nii.gz"]
    assert json.loads((tmp_path / "s" / "sample.json").read_text())["request"]["format"] == "nifti"
