"""Provenance: every synthetic image medisynth writes says that it is synthetic and what made it.

A renamed PNG on a shared drive no longer has its labels.csv beside it, so the file itself carries
the record (PNG text chunks), and labels.csv and sample.json repeat it::

    synthetic          "true"
    medisynth_version  the package version that wrote the file
    model              the model name (e.g. "cgan")
    run                the run folder as given to the sampler
    run_id             ``Run.id``: 12 hex digits of the SHA-256 of the run's model.json + config.json, so a
                       copy or an ``medisynth export`` of the run has the same id
    checkpoint_step    the training step of the weights that made the image
    seed               the sampling seed
    class              the class name written to labels.csv ("unlabelled" for an unconditional model)

``medisynth prepare`` reads the record back (``is_marked_synthetic``) and keeps such files out of
val and test: a file whose split is free goes to train, a file the source puts in val or test is
an error naming it (``pin_synthetic_to_train``).

Import direction: this module is at the bottom (it imports only ``errors``); the sampler writes
with it, prepare reads with it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from medisynth.errors import MedisynthError

if TYPE_CHECKING:  # pandas is not imported at run time: prepare's worker processes import this module
    import pandas as pd

#: the provenance fields, in the order labels.csv gets them
FIELDS = ("synthetic", "medisynth_version", "model", "run", "run_id", "checkpoint_step", "seed", "class")
#: the labels.csv columns that carry provenance (``class`` is the csv's ``label`` column already)
CSV_FIELDS = ("medisynth_version", "run_id", "checkpoint_step")
#: a free-text PNG chunk any image viewer shows ("Description" is a registered PNG keyword)
DESCRIPTION_KEY = "Description"


@dataclass(frozen=True)
class Provenance:
    """Who made a synthetic image: one per (run, class) of a sampling call."""

    model: str
    run: str
    run_id: str
    checkpoint_step: int
    seed: int
    class_name: str

    def fields(self) -> dict[str, str]:
        """The record as text fields (PNG chunks, DICOM/NIfTI descriptions)."""
        from medisynth import __version__

        return {
            "synthetic": "true", "medisynth_version": __version__, "model": self.model, "run": self.run,
            "run_id": self.run_id, "checkpoint_step": str(self.checkpoint_step), "seed": str(self.seed),
            "class": self.class_name,
        }

    def description(self) -> str:
        """One human-readable sentence that says what the file is."""
        return (f"SYNTHETIC image made by medisynth model {self.model} (run {self.run_id}, step {self.checkpoint_step}, "
                f"seed {self.seed}, class {self.class_name}); not a patient image")

    def comment(self) -> str:
        """The description followed by the record as JSON (DICOM ImageComments, NIfTI comment extension)."""
        return f"{self.description()}; provenance: {json.dumps(self.fields(), sort_keys=True)}"

    def png_text(self) -> dict[str, str]:
        """The record as PNG text chunks (``medisynth.io.write_png(text=...)`` writes them as UTF-8 iTXt,
        so any class name survives)."""
        return {**self.fields(), DESCRIPTION_KEY: self.description()}


def read_provenance(path: Path | str) -> Optional[dict[str, str]]:
    """The provenance record stored in an image file (PNG, DICOM, NIfTI), or None when it has none.

    Only headers are read: PIL collects text chunks written before the pixel data without decoding
    pixels (medisynth writes them there); DICOM is read up to the pixels; NIfTI's header extension."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith(".dcm"):
        return _from_dicom(path)
    if name.endswith(".nii") or name.endswith(".nii.gz"):
        return _from_nifti(path)
    if not name.endswith(".png"):
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            info = dict(image.info)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
        return None  # an unreadable file is reported by the decoder that reads its pixels
    if "synthetic" not in info:
        return None
    return {key: str(info[key]) for key in FIELDS if key in info}


def _from_comment(text: str) -> Optional[dict[str, str]]:
    """The record in a ``Provenance.comment()`` text (None when there is none)."""
    start = text.find("{", text.find("provenance: ") if "provenance: " in text else len(text))
    if start < 0:
        return None
    try:
        record = json.loads(text[start:])
    except json.JSONDecodeError:
        return None
    return {str(k): str(v) for k, v in record.items()} if isinstance(record, dict) and "synthetic" in record else None


def _from_dicom(path: Path) -> Optional[dict[str, str]]:
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # pydicom raises many types; an unreadable file is reported by the pixel reader
        return None
    return _from_comment(str(getattr(ds, "ImageComments", "") or ""))


def _from_nifti(path: Path) -> Optional[dict[str, str]]:
    import nibabel as nib

    try:
        extensions = nib.load(path).header.extensions
    except Exception:  # as above: the volume reader reports damaged files
        return None
    for extension in extensions:
        record = _from_comment(extension.get_content().decode("utf-8", "replace"))
        if record:
            return record
    return None


def is_marked_synthetic(path: Path | str | None) -> bool:
    """Whether the file at ``path`` carries medisynth's synthetic mark."""
    if path is None:
        return False
    record = read_provenance(path)
    return bool(record) and record.get("synthetic", "").strip().lower() == "true"


def pin_synthetic_to_train(index: "pd.DataFrame") -> "pd.Series":
    """prepare's rule: the ``fixed_split`` column with every synthetic row pinned to train.

    ``index`` has ``fixed_split`` (None where the split is free), ``source`` and, when any row is
    synthetic, ``synthetic`` (1 for synthetic rows). A synthetic row that the source puts in val or
    test is a MedisynthError naming the file: evaluation on synthetic images would flatter the model."""
    import pandas as pd

    fixed = index["fixed_split"].copy() if "fixed_split" in index else pd.Series([None] * len(index), index=index.index)
    if "synthetic" not in index:
        return fixed
    synthetic = pd.to_numeric(index["synthetic"], errors="coerce").fillna(0).astype(int) == 1
    for i in index.index[synthetic]:
        split = fixed[i]
        if isinstance(split, str) and split != "train":
            raise MedisynthError(
                f"{index.at[i, 'source']}: is a synthetic image (medisynth provenance) but the source puts it in "
                f"the {split} split; synthetic images may only train. Move it out of the {split} images or drop it"
            )
        fixed[i] = "train"
    return fixed
