"""The work done per image in prepare's worker processes: decode, read masks, preprocess,
and the thumbnail signature used to find near-duplicate images (``near_duplicates.py``).

Kept in its own small module so that spawned workers import only numpy, PIL and scipy
(not pandas or torch) before they start.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from medisynth.data.near_duplicates import raw_signature
from medisynth.data.preprocess import PrepOptions, check_geometry, preprocess
from medisynth.data.sources.base import Record
from medisynth.errors import MedisynthError
from medisynth.io import read_image
from medisynth.provenance import is_marked_synthetic


def process_record(args: tuple[Record, PrepOptions]):
    """Worker: decode + preprocess one record.

    Returns (record, image, mask, fov, signature, notes, error message); the signature (float32, 256
    values) is computed here, in parallel, from the preprocessed image, so the main process never decodes
    twice. ``notes`` lists (kind, file) for what prepare warns about and counts (``prepare.WARNINGS``)."""
    record, options = args
    where = record.describe()
    try:
        image = record.loader() if record.loader is not None else read_image(record.path)
        notes = [(kind, where) for kind in check_geometry(image.shape, options.size)]
        (mask, soft_mask), (fov, soft_fov) = (_read_mask(p) if p else (None, False)
                                              for p in (record.mask_path, record.fov_path))
        notes += [("soft_mask", str(path)) for path, soft in ((record.mask_path, soft_mask),
                                                              (record.fov_path, soft_fov)) if soft]
        image, mask, fov = preprocess(image, options, mask, fov, raw_intensity=record.raw_intensity)
        if image.min() == image.max():
            notes.append(("flat", where))
        if is_marked_synthetic(record.path):  # a synthetic file that travelled: prepare keeps it out of val/test
            record.extra["synthetic"] = 1
        return record, image, mask, fov, raw_signature(image), tuple(notes), None
    except MedisynthError as e:
        message = str(e)
    except Exception as e:  # a damaged file can make any decoder fail; report it as that file's problem
        message = f"cannot read or preprocess ({type(e).__name__}: {e}); replace or remove the file"
    if not message.startswith(where) and not (record.path and message.startswith(str(record.path))):
        message = f"{where}: {message}"
    return record, None, None, None, None, (), message


def process_chunk(records: list[Record], options: PrepOptions) -> list[tuple]:
    """``process_record`` for several records: one message to and from the worker per chunk."""
    return [process_record((r, options)) for r in records]


#: a mask pixel strictly between these is neither background nor annotation
SOFT_LOW, SOFT_HIGH = 32, 223
#: a mask with more than this share of such pixels is soft (a probability map, an antialiased resize):
#: thresholding changes it, so it is counted. JPEG-compressed binary masks stay far below (1% at quality 50).
SOFT_MASK_SHARE = 0.05


def _read_mask(path: Path) -> tuple[np.ndarray, bool]:
    """A binary annotation as uint8 {0, 255}, and whether the file was soft (not binary; see SOFT_MASK_SHARE).

    0/1 masks are scaled, 8-bit masks (also JPEG-compressed ones) are thresholded at 128."""
    m = read_image(path, channels=1)[..., 0]
    if m.max() <= 1:
        return np.where(m > 0, 255, 0).astype(np.uint8), False
    soft = float(((m >= SOFT_LOW) & (m <= SOFT_HIGH)).mean()) > SOFT_MASK_SHARE
    return np.where(m > 127, 255, 0).astype(np.uint8), soft
