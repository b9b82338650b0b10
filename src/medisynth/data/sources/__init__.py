"""Data-set layouts that ``medisynth prepare`` reads. Importing registers them; detection asks
them in this order, the most specific layouts first (a MedMNIST npz, DICOM and NIfTI files,
image + mask pairs, a label CSV, and last plain class folders)."""
from medisynth.data.sources.base import SOURCE_REGISTRY, Record, Source, detect_source, get_source, register_source
from medisynth.data.sources import medmnist, dicom, nifti, pairs, csv_source, folders  # noqa: E402,F401  (order = detection order)

__all__ = ["SOURCE_REGISTRY", "Record", "Source", "detect_source", "get_source", "register_source"]
