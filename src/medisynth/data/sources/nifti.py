"""``nifti``: NIfTI volumes (``.nii``/``.nii.gz``), one image per axial slice.

Volumes are reoriented to RAS (nibabel ``as_closest_canonical``) so the last axis is
axial; every ``--slice-step``-th slice is used and slices holding one constant value
(padding, empty air) are left out. Intensities stay raw (CT in HU) and are windowed by
preprocessing; RGB volumes (datatype RGB24) are 8-bit colour pixels and are not windowed.
Volumes inside class folders take the folder name as class; every volume is one group (its
slices never straddle the split).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from medisynth.data.sources.base import Record, Source, register_source
from medisynth.data.sources.dicom import class_of
from medisynth.errors import MedisynthError
from medisynth.io import read_nifti

_VOLUME: dict[str, np.ndarray] = {}  # per process: the last volume read (slices come in volume order)


def _is_nifti(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _stem(path: Path) -> str:
    name = path.name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else name[: -len(".nii")]


def load_volume(path: str) -> np.ndarray:
    """The volume as float32 X x Y x Z (RAS; Z axial), or uint8 X x Y x Z x 3 for an RGB volume;
    4-D grayscale volumes give their first time point."""
    if path not in _VOLUME:
        data = read_nifti(path)
        rgb = data.dtype == np.uint8
        if data.ndim == 4 and not rgb:
            data = data[..., 0]
        if data.ndim != (4 if rgb else 3):
            raise MedisynthError(f"{path}: expected a 3-D volume, got shape {data.shape[:3] if rgb else data.shape}")
        _VOLUME.clear()
        _VOLUME[path] = data
    return _VOLUME[path]


@dataclass(frozen=True)
class NiftiSlice:
    """Picklable loader: axial slice ``index`` of a volume, shown with anterior up."""

    path: str
    index: int

    def __call__(self) -> np.ndarray:
        return np.ascontiguousarray(np.rot90(load_volume(self.path)[:, :, self.index]))


@register_source
class NiftiSource(Source):
    name = "nifti"
    default_preprocess = "ct"
    accepted_options = ("slice_step",)

    def __init__(self, root: Path, skip_bad: bool = False, slice_step: int | None = None, **options):
        super().__init__(root, **options)
        self.skip_bad = skip_bad
        self.slice_step = int(slice_step or 1)
        if self.slice_step < 1:
            raise MedisynthError(f"--slice-step {slice_step}: use 1 or more")

    @classmethod
    def detect(cls, root: Path) -> bool:
        root = Path(root)
        if root.is_file():
            return _is_nifti(root)
        return root.is_dir() and any(_is_nifti(p) for p in root.rglob("*.nii*"))

    def records(self) -> Iterable[Record]:
        files = [self.root] if self.root.is_file() else sorted(
            p for p in self.root.rglob("*.nii*") if _is_nifti(p) and not self.dangling(p))
        if not files:
            raise MedisynthError(f"{self.root}: no NIfTI (.nii/.nii.gz) volumes found")
        base = self.root if self.root.is_dir() else self.root.parent
        labelled = all(class_of(p, base) is not None for p in files)
        for path in files:
            try:
                volume = load_volume(str(path))
            except MedisynthError as e:
                self.problem(str(path), str(e).split(": ", 1)[-1], self.skip_bad)
                continue
            rgb = volume.dtype == np.uint8
            flat = np.moveaxis(volume, 2, -1).reshape(-1, volume.shape[2])
            non_empty = np.nonzero(flat.max(axis=0) > flat.min(axis=0))[0]
            rel = path.relative_to(base).as_posix()
            rel = rel[: -len(path.name)] + _stem(path)
            for k in non_empty[:: self.slice_step]:
                yield Record(
                    id=f"{rel}#z{int(k):04d}",
                    label=class_of(path, base) if labelled else None,
                    path=path,
                    group=rel,
                    loader=NiftiSlice(str(path), int(k)),
                    raw_intensity=not rgb,  # RGB24 holds 8-bit colour pixels: nothing to window
                    where=f"{path} slice {int(k)}",
                )
        _VOLUME.clear()
