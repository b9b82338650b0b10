"""Atomic outputs: whole or nothing, ordinary permissions; image reading errors name the file."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir, atomic_write_text, read_image, write_png


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("interrupted")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "whole.txt").write_text("x")
    assert (tmp_path / "out" / "whole.txt").read_text() == "x"
    with pytest.raises(MedisynthError, match="already exists"):
        with atomic_dir(tmp_path / "out"):
            pass


def test_outputs_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "report") as tmp:
            atomic_write_text(tmp / "report.html", "<html></html>")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "report" / "report.html").stat().st_mode) == 0o644


def test_truncated_image_error_names_the_file(tmp_path):
    path = tmp_path / "eye.png"
    write_png(path, np.full((32, 32, 3), 120, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(MedisynthError, match="eye.png.*--skip-bad"):
        read_image(path)


@pytest.mark.parametrize("shape", [(8, 6), (8, 6, 1), (8, 6, 3)])
@pytest.mark.parametrize("atomic", [True, False])
def test_write_png_round_trips_pixels_and_text(tmp_path, shape, atomic):
    from PIL import Image

    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "x.png"
    write_png(path, array, text={"medisynth:run": "runs/a", "seed": "3"}, atomic=atomic)
    channels = 3 if len(shape) == 3 and shape[2] == 3 else 1
    assert np.array_equal(read_image(path, channels), array.reshape(8, 6, channels))
    with Image.open(path) as img:
        assert img.text == {"medisynth:run": "runs/a", "seed": "3"}
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary file left behind


def test_write_png_without_text_has_no_text_chunks(tmp_path):
    from PIL import Image

    write_png(tmp_path / "x.png", np.zeros((4, 4), np.uint8))
    with Image.open(tmp_path / "x.png") as img:
        assert img.text == {}


def _dicom(path, stored: np.ndarray, **elements) -> None:
    """A tiny uncompressed grayscale DICOM file of ``stored`` (uint8 -> 8 bits, else 16 bits)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    bits = stored.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.PixelData = stored.tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


@pytest.mark.parametrize("case,expected", [
    ("dicom 8-bit", np.arange(16, dtype=np.uint8).reshape(4, 4) * 16),
    ("nifti 2-D", np.arange(16, dtype=np.uint8).reshape(4, 4) * 16),
    ("nifti one slice", np.arange(16, dtype=np.uint8).reshape(4, 4) * 16),
])
def test_read_image_decodes_8_bit_dicom_and_nifti_images(tmp_path, case, expected):
    import nibabel as nib

    if case.startswith("dicom"):
        path = tmp_path / "a.dcm"
        _dicom(path, expected, RescaleSlope=1, RescaleIntercept=0)
    else:  # stored as prepare's nifti source shows a slice: rot90 of the RAS slice
        data = np.rot90(expected, -1)
        path = tmp_path / "a.nii.gz"
        nib.save(nib.Nifti1Image(np.ascontiguousarray(data if case == "nifti 2-D" else data[:, :, None]), np.eye(4)),
                 path)
    image = read_image(path)
    assert image.dtype == np.uint8 and np.array_equal(image[..., 0], expected)
    assert read_image(path, channels=3).shape == (4, 4, 3)


@pytest.mark.parametrize("case,match", [
    ("dicom in HU", r"ct\.dcm: holds -1024\.\.976, not 8-bit pixels; .*--source dicom\|nifti --window-level"),
    ("nifti volume", r"vol\.nii\.gz: holds a volume of shape \(4, 4, 3\), not one 2-D image; .*--source nifti"),
    ("damaged nifti", r"bad\.nii: cannot read NIfTI volume .*pass --skip-bad"),
])
def test_read_image_refuses_scans_that_are_not_one_8_bit_image(tmp_path, case, match):
    import nibabel as nib

    if case == "dicom in HU":
        path = tmp_path / "ct.dcm"
        _dicom(path, np.array([[0, 2000]] * 2, dtype=np.uint16), RescaleSlope=1, RescaleIntercept=-1024)
    elif case == "nifti volume":
        path = tmp_path / "vol.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), np.uint8), np.eye(4)), path)
    else:
        path = tmp_path / "bad.nii"
        path.write_bytes(b"not a nifti file")
    with pytest.raises(MedisynthError, match=match):
        read_image(path)
