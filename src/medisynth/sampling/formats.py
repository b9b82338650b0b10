"""DICOM and NIfTI output of ``medisynth sample`` and ``medisynth pipeline vessels`` (``--format dicom|nifti``;
PNG is ``medisynth.io.write_png``).

Grayscale and RGB images. ``sample`` writes them in class folders, so ``medisynth prepare DIR/images``
reads them back with its dicom / nifti source, class from the folder::

    DIR/images/<class>/syn_<class>_000001.dcm   one DICOM Secondary Capture file per image
    DIR/images/<class>/syn_<class>.nii.gz        one NIfTI volume per class: the images as a 2-D slice stack

(``pipeline vessels`` writes one file per image in its DRIVE layout: see ``medisynth.pipelines.vessels``.)

Both say they are synthetic. DICOM: ImageType DERIVED\\SECONDARY, ConversionType SYN (synthetic
image), SeriesDescription and ImageComments naming the model and the provenance record (JSON), new
UIDs, no patient identity (PatientID/PatientName fixed to SYNTHETIC). NIfTI: the header description
says SYNTHETIC and a comment extension holds the provenance record (JSON).

Grayscale intensities: pixels are stored as the uint8 values the model made, with a linear map to the
units of the run's training data. A run trained on CT windowed at (level L, width W) gets slope W / 255
and intercept L - W / 2 (DICOM RescaleSlope/RescaleIntercept, NIfTI scl_slope/scl_inter), so the window
survives and ``prepare`` with the same window recovers the pixels exactly; other data get slope 1,
intercept 0 and the window level 127.5, width 255 (written as WindowCenter/WindowWidth).

Colour: DICOM PhotometricInterpretation RGB, SamplesPerPixel 3, PlanarConfiguration 0 (R, G, B of a
pixel together), 8 bits; NIfTI datatype RGB24 (the colour type that ITK, 3D Slicer and FSLeyes show as
colour and nibabel reads as a structured array), X x Y x slices. Neither format rescales colour, so no
window is written; ``prepare`` reads both as 8-bit RGB pixels (``medisynth.io.read_dicom_frame``/``read_nifti``).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np

from medisynth.errors import MedisynthError
from medisynth.provenance import Provenance
from medisynth.sampling.writer import safe_name

FORMATS = ("png", "dicom", "nifti")
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # SOP class: Secondary Capture Image Storage
SYNTHETIC_PATIENT = "SYNTHETIC"


@dataclass(frozen=True)
class IntensityWindow:
    """The map from stored uint8 values to the data's units, and the display window in those units."""

    level: float = 127.5
    width: float = 255.0

    @property
    def slope(self) -> float:
        return self.width / 255.0

    @property
    def intercept(self) -> float:
        return self.level - self.width / 2.0

    @classmethod
    def of_data(cls, manifest: Optional[dict]) -> "IntensityWindow":
        """The CT window the run's data set was prepared with, else the identity (0..255)."""
        prep = (manifest or {}).get("preprocessing") or {}
        if prep.get("kind") == "ct" and prep.get("window_width"):
            return cls(float(prep["window_level"]), float(prep["window_width"]))
        return cls()


#: the file name ending of each format
SUFFIXES = {"png": ".png", "dicom": ".dcm", "nifti": ".nii.gz"}


def check_format(name: str, channels: Optional[int] = None) -> None:
    """A known format name that takes ``channels``-channel images (None: only the name is checked)."""
    if name not in FORMATS:
        raise MedisynthError(f"--format {name!r}: choose one of {', '.join(FORMATS)}")
    if name != "png" and channels is not None and channels not in (1, 3):
        raise MedisynthError(f"--format {name}: writes grayscale or RGB images, but this run makes {channels}-channel "
                             "images; use --format png")


def _shown(image: np.ndarray) -> np.ndarray:
    """uint8 C x H x W (a sampled image) -> H x W or H x W x 3, as the image is shown."""
    return np.ascontiguousarray(image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0))


class DicomFiles:
    """Secondary Capture files, one per image; one study per writer (one sampling call or pipeline run),
    one series per ``series`` key (a class, or a pipeline output folder)."""

    def __init__(self, folder: Path, window: IntensityWindow):
        from pydicom.uid import generate_uid

        self.folder, self.window = Path(folder), window
        self.study = generate_uid()
        self.series: dict[str, tuple[str, int]] = {}
        self.now = datetime.now(timezone.utc)

    def write(self, label: str, number: int, image: np.ndarray, provenance: Provenance) -> str:
        """uint8 C x H x W -> DIR/images/<class>/syn_<class>_<number>.dcm; returns the id prepare will give it."""
        folder = self.folder / safe_name(label)
        folder.mkdir(exist_ok=True)
        name = f"syn_{safe_name(label)}_{number:06d}"
        self.save(folder / f"{name}.dcm", _shown(image), provenance, label, number,
                  f"SYNTHETIC medisynth {provenance.model} class {label}")
        return f"{safe_name(label)}/{name}"

    def save(self, path: Path, pixels: np.ndarray, provenance: Provenance, series: str, number: int,
             description: str) -> None:
        """uint8 H x W (grayscale) or H x W x 3 (RGB) -> one Secondary Capture file at ``path``."""
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

        if series not in self.series:
            self.series[series] = (generate_uid(), len(self.series) + 1)
        series_uid, series_number = self.series[series]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = SECONDARY_CAPTURE, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = self.study, series_uid
        ds.StudyDate = ds.ContentDate = self.now.strftime("%Y%m%d")
        ds.StudyTime = ds.ContentTime = self.now.strftime("%H%M%S")
        # no patient identity: a fixed synthetic patient, nothing else of the patient module
        ds.PatientID, ds.PatientName = SYNTHETIC_PATIENT, "SYNTHETIC^MEDISYNTH"
        ds.Modality = "OT"
        ds.ConversionType = "SYN"  # DICOM's defined term for a synthetic image
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.BurnedInAnnotation = "NO"
        ds.Manufacturer = "medisynth"
        ds.SeriesDescription = description[:64]  # LO: at most 64 characters
        ds.SeriesNumber, ds.InstanceNumber = series_number, number
        ds.ImageComments = provenance.comment()
        pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        if pixels.ndim == 3:
            ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        else:
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.RescaleSlope, ds.RescaleIntercept = f"{self.window.slope:.10g}", f"{self.window.intercept:.10g}"
            ds.RescaleType = "HU" if (self.window.level, self.window.width) != (127.5, 255.0) else "US"
            ds.WindowCenter, ds.WindowWidth = f"{self.window.level:.10g}", f"{self.window.width:.10g}"
        ds.PixelData = pixels.tobytes()
        ds.save_as(path, enforce_file_format=True)

    def end_class(self) -> None:
        pass


#: NIfTI's RGB24 voxel type as nibabel spells it
RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])


def save_nifti(path: Path, slices: list[np.ndarray], provenance: Provenance, window: IntensityWindow) -> None:
    """uint8 images (H x W, or H x W x 3 for RGB24), as shown -> one NIfTI volume, slice z = image z."""
    import nibabel as nib

    # prepare shows slice z as rot90(volume[:, :, z]); store each image turned the other way
    volume = np.ascontiguousarray(np.stack([np.rot90(s, -1) for s in slices], axis=2), dtype=np.uint8)
    colour = volume.ndim == 4
    if colour:
        volume = volume.view(RGB24)[..., 0]
    image = nib.Nifti1Image(volume, affine=np.eye(4))  # RAS, 1 mm pixels: no scanner geometry to keep
    header = image.header
    header.set_data_dtype(RGB24 if colour else np.uint8)
    if not colour:  # NIfTI scales only grayscale
        header.set_slope_inter(window.slope, window.intercept)
        header["cal_min"], header["cal_max"] = window.level - window.width / 2, window.level + window.width / 2
    header["descrip"] = f"SYNTHETIC medisynth {provenance.model} run {provenance.run_id}".encode()[:79]
    header.extensions.append(nib.nifti1.Nifti1Extension("comment", provenance.comment().encode()))
    nib.save(image, path)


class NiftiFiles:
    """One NIfTI volume per class, the images as slices along the third axis (written when the class ends).

    One class's uint8 pixels are held in memory until then."""

    def __init__(self, folder: Path, window: IntensityWindow):
        self.folder, self.window = Path(folder), window
        self.slices: list[np.ndarray] = []
        self.label: Optional[str] = None
        self.provenance: Optional[Provenance] = None

    def write(self, label: str, number: int, image: np.ndarray, provenance: Provenance) -> str:
        self.label, self.provenance = label, provenance
        self.slices.append(_shown(image))
        return f"{safe_name(label)}/syn_{safe_name(label)}#z{len(self.slices) - 1:04d}"

    def end_class(self) -> None:
        if not self.slices:
            return
        folder = self.folder / safe_name(self.label)
        folder.mkdir(exist_ok=True)
        save_nifti(folder / f"syn_{safe_name(self.label)}.nii.gz", self.slices, self.provenance, self.window)
        self.slices, self.label, self.provenance = [], None, None


def open_format(name: str, folder: Path, window: IntensityWindow):
    """The file writer of ``--format name`` (dicom or nifti)."""
    return {"dicom": DicomFiles, "nifti": NiftiFiles}[name](folder, window)
