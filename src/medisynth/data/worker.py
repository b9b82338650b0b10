"""The work done per image in prepare's worker processes: decode, read masks, preprocess,
and the thumbnail signature used to find near-duplicate images (``near_duplicates.py``).

Kept in its own small module so that spawned workers import only numpy, PIL and scipy
(not pandas or torch) before they start.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from medisynth.data.near_duplicates import raw_signature
from medisynth.data.preprocess import PrepOptions, preprocess
from medisynth.data.sources.base import Record
from medisynth.errors import MedisynthError
from medisynth.io import read_image
from medisynth.provenance import is_marked_synthetic


def process_record(args: tuple[Record, PrepOptions]):
    """Worker: decode + preprocess one record.

    Returns (record, image, mask, fov, signature, error message); the signature (float32, 256 values)
    is computed here, in parallel, from the preprocessed image, so the main process never decodes twice."""
    record, options = args
    try:
        image = record.loader() if record.loader is not None else read_image(record.path)
        mask = _read_mask(record.mask_path) if record.mask_path else None
        fov = _read_mask(record.fov_path) if record.fov_path else None
        image, mask, fov = preprocess(image, options, mask, fov, raw_intensity=record.raw_intensity)
        if is_marked_synthetic(record.path):  # a synthetic file that travelled: prepare keeps it out of val/test
            record.extra["synthetic"] = 1
        return record, image, mask, fov, raw_signature(image), None
    except MedisynthError as e:
        message = str(e)
    except Exception as e:  # a damaged file can make any decoder fail; report it as that file's problem
        message = f"cannot read or preprocess ({type(e).__name__}: {e}); replace or remove the file"
    where = record.describe()
    if not message.startswith(where) and not (record.path and message.startswith(str(record.path))):
        message = f"{where}: {message}"
    return record, None, None, None, None, message


def process_chunk(records: list[Record], options: PrepOptions) -> list[tuple]:
    """``process_record`` for several records: one message to and from the worker per chunk."""
    return [process_record((r, options)) for r in records]


def _read_mask(path: Path) -> np.ndarray:
    """A binary annotation as uint8 {0, 255}: 0/1 masks are scaled, 8-bit masks (also JPEG-compressed ones)
    are thresholded at 128."""
    m = read_image(path, channels=1)[..., 0]
    return np.where(m > (0 if m.max() <= 1 else 127), 255, 0).astype(np.uint8)
