"""Data-set layouts that ``medisynth prepare`` reads. Importing registers them; detection asks
them in this order, the most specific layouts first (a MedMNIST npz, image + mask pairs, DICOM
and NIfTI files, a label CSV, and last plain class folders). Pairs come before DICOM/NIfTI
because a pair layout may hold DICOM/NIfTI files (``pipeline vessels --format dicom|nifti``)."""
from medisynth.data.sources.base import SOURCE_REGISTRY, Record, Source, detect_source, get_source, register_source
from medisynth.data.sources import medmnist, pairs, dicom, nifti, csv_source, folders  # noqa: E402,F401  (order = detection order)

__all__ = ["SOURCE_REGISTRY", "Record", "Source", "detect_source", "get_source", "register_source"]
