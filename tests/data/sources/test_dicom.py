"""DICOM slices go through pydicom's modality transform: rescale slope/intercept and Modality LUT Sequence."""
from __future__ import annotations

import numpy as np
import pytest

from medisynth.data.sources.dicom import DicomSlice
from medisynth.errors import MedisynthError


def write_slice(path, stored: np.ndarray, **elements) -> str:
    """A tiny uncompressed CT slice with uint16 ``stored`` values and the given extra elements."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = "P1", "CT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.PixelData = stored.astype(np.uint16).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return str(path)


STORED = np.array([[0, 10, 1000, 3000]] * 4, dtype=np.uint16)


@pytest.mark.parametrize("slope,intercept", [(1.0, -1024.0), (2.5, -1000.0), (0.5, 7.0)])
def test_rescale_slope_and_intercept(tmp_path, slope, intercept):
    path = write_slice(tmp_path / "s.dcm", STORED, RescaleSlope=slope, RescaleIntercept=intercept)
    hu = DicomSlice(path)()
    assert hu.dtype == np.float32
    np.testing.assert_allclose(hu, STORED * slope + intercept)


def test_modality_lut_sequence_maps_stored_values(tmp_path):
    from pydicom.dataset import Dataset

    # LUT of 4 entries starting at stored value 10: 10 -> 100, 11 -> 200, 12 -> 300, 13 -> 400;
    # values below the first mapped one take the first entry, values above it the last
    lut = Dataset()
    lut.LUTDescriptor = [4, 10, 16]
    lut.ModalityLUTType = "HU"
    lut.add_new("LUTData", "OW", np.array([100, 200, 300, 400], "<u2").tobytes())  # as scanners write it
    stored = np.array([[0, 10, 11, 12], [13, 14, 500, 9]] * 2, dtype=np.uint16)
    # a slope/intercept beside the sequence must be ignored: the sequence takes precedence
    path = write_slice(tmp_path / "lut.dcm", stored, ModalityLUTSequence=[lut], RescaleSlope=2.0, RescaleIntercept=-1024.0)
    expected = np.array([[100, 100, 200, 300], [400, 400, 400, 100]] * 2, dtype=np.float32)
    np.testing.assert_array_equal(DicomSlice(path)(), expected)


def test_no_modality_transform_keeps_stored_values(tmp_path):
    path = write_slice(tmp_path / "raw.dcm", STORED)
    np.testing.assert_array_equal(DicomSlice(path)(), STORED.astype(np.float32))


def test_a_broken_rescale_is_one_clear_error(tmp_path):
    path = write_slice(tmp_path / "bad.dcm", STORED, RescaleSlope=None, RescaleIntercept=-1024.0)
    with pytest.raises(MedisynthError, match=r"bad\.dcm: cannot apply the DICOM modality transform.*--skip-bad"):
        DicomSlice(path)()


def write_colour(path, rgb: np.ndarray, photometric: str = "RGB") -> str:
    """A tiny uncompressed 8-bit colour Secondary Capture (``rgb``: H x W x 3, stored as ``photometric``)."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.pixels import convert_color_space
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.Modality = "P1", "OT"
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, photometric, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    stored = rgb if photometric == "RGB" else convert_color_space(rgb, "RGB", photometric)
    ds.PixelData = np.ascontiguousarray(stored, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    return str(path)


COLOUR = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL"])
def test_colour_files_are_8_bit_rgb_and_prepare_keeps_them_unwindowed(tmp_path, photometric):
    from medisynth.data.prepare import PrepareConfig, prepare
    from medisynth.data.sources.dicom import DicomSource

    path = write_colour(tmp_path / "dcm" / "eyes" / "a.dcm", COLOUR, photometric)
    pixels = DicomSlice(path)()
    # YBR_FULL is lossy by at most a level of rounding per channel; RGB is exact
    tolerance = 0 if photometric == "RGB" else 2
    assert pixels.dtype == np.uint8 and pixels.shape == (16, 16, 3)
    assert np.abs(pixels.astype(int) - COLOUR).max() <= tolerance
    (record,) = DicomSource(tmp_path / "dcm").records()
    assert record.raw_intensity is False  # a CT window must not touch colour pixels
    result = prepare(PrepareConfig(source=tmp_path / "dcm", out=tmp_path / "out", size=16, workers=1), progress=False)
    assert result.manifest.channels == 3
    assert np.array_equal(np.load(tmp_path / "out" / "images-00000.npy")[0], pixels)
