"""``dicom``: a folder of DICOM files, one image per slice (per frame of a multi-frame file).

Grayscale pixels go through the file's modality transform (``pydicom.pixels.apply_modality_lut``:
a Modality LUT Sequence when present, else RescaleSlope/RescaleIntercept; for CT, Hounsfield
units) and are handed to preprocessing as raw intensities, which windows them
(``--window-level/--window-width``). Colour files (SamplesPerPixel 3, e.g. a fundus photograph
as Secondary Capture) are 8-bit RGB pixels already and are not windowed.
Files inside class folders (``ROOT/<Class>/.../*.dcm``) take the folder name as class;
otherwise the set is unlabelled. Slices of one patient (or series) form one group, so
neighbouring slices never land on both sides of the split.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from medisynth.data.sources.base import Record, Source, register_source
from medisynth.errors import MedisynthError
from medisynth.io import read_dicom_frame


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    if path.suffix:
        return False
    try:  # DICOM files often have no extension: look for the "DICM" magic after the preamble
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files(root: Path) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root] if _is_dicom_file(root) else []
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".") and _is_dicom_file(p))


def class_of(path: Path, root: Path) -> str | None:
    """The first folder below ``root`` that holds ``path``, or None when the file sits in ``root``."""
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else None


@dataclass(frozen=True)
class DicomSlice:
    """Picklable loader: frame ``frame`` of a DICOM file after its modality transform (float32;
    Hounsfield units for CT), or its uint8 RGB pixels for a colour file."""

    path: str
    frame: int = 0

    def __call__(self) -> np.ndarray:
        return read_dicom_frame(self.path, self.frame)


@register_source
class DicomSource(Source):
    name = "dicom"
    default_preprocess = "ct"

    def __init__(self, root: Path, skip_bad: bool = False, **options):
        super().__init__(root, **options)
        self.skip_bad = skip_bad

    @classmethod
    def detect(cls, root: Path) -> bool:
        root = Path(root)
        if root.is_file():
            return _is_dicom_file(root)
        return root.is_dir() and any(p.suffix.lower() == ".dcm" for p in root.rglob("*.dcm"))

    def records(self) -> Iterable[Record]:
        import pydicom

        if self.root.is_dir():
            for link in self.root.rglob("*.dcm"):
                self.dangling(link)
        files = dicom_files(self.root)
        if not files:
            raise MedisynthError(f"{self.root}: no DICOM (.dcm) files found")
        base = self.root if self.root.is_dir() else self.root.parent
        classes = {class_of(p, base) for p in files}
        labelled = None not in classes
        for path in files:
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception as e:
                self.problem(str(path), f"not a readable DICOM file ({type(e).__name__}: {e}); remove it", self.skip_bad)
                continue
            frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
            group = str(getattr(ds, "PatientID", "") or getattr(ds, "SeriesInstanceUID", "") or path.parent)
            rel = path.relative_to(base).with_suffix("").as_posix()
            for frame in range(frames):
                yield Record(
                    id=rel if frames == 1 else f"{rel}#{frame}",
                    label=class_of(path, base) if labelled else None,
                    path=path,
                    group=group,
                    loader=DicomSlice(str(path), frame),
                    raw_intensity=int(getattr(ds, "SamplesPerPixel", 1) or 1) == 1,
                    where=str(path) if frames == 1 else f"{path} frame {frame}",
                )
