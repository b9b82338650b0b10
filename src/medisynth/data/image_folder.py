"""Reading medisynth's image-folder layout: ``DIR/images/<id>.png`` + ``DIR/labels.csv`` (image,label,...).

``medisynth sample``, ``balance`` and ``phantom fundus`` write it; ``evaluate`` and ``utility`` read it
back through these helpers, so both understand the same files and give the same errors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from medisynth.errors import MedisynthError
from medisynth.io import IMAGE_EXTENSIONS


def read_labels_table(folder: Path) -> Optional[pd.DataFrame]:
    """``folder/labels.csv`` as strings (None when there is none); it must have image and label columns."""
    labels_csv = Path(folder) / "labels.csv"
    if not labels_csv.is_file():
        return None
    try:
        table = pd.read_csv(labels_csv, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise MedisynthError(f"{labels_csv}: cannot be read as CSV ({e}); rewrite it with columns image,label") from None
    missing = {"image", "label"} - set(table.columns)
    if missing:
        raise MedisynthError(f"{labels_csv}: missing column(s) {', '.join(sorted(missing))}; it needs image,label")
    return table


def find_image(image_dir: Path, image_id: str, labels_csv: Path) -> Path:
    """The file of ``image_id`` in ``image_dir`` (the id may carry its extension or not)."""
    image_id = image_id.strip()
    direct = image_dir / image_id
    if direct.suffix and direct.is_file():
        return direct
    for ext in IMAGE_EXTENSIONS:
        if (image_dir / f"{image_id}{ext}").is_file():
            return image_dir / f"{image_id}{ext}"
    raise MedisynthError(f"{labels_csv}: image {image_id!r} is listed but {image_dir}/{image_id}.png does not exist; "
                         "add it or remove the row")


def class_indices(labels: pd.Series, class_names: list[str], labels_csv: Path) -> np.ndarray:
    """Class names (as written in labels.csv; "2.0" counts as "2") -> indices into ``class_names``."""
    index = {name: k for k, name in enumerate(class_names)}

    def lookup(label: str):
        label = label.strip()
        if label in index:
            return index[label]
        try:
            number = float(label)
        except ValueError:
            return None
        return index.get(str(int(number))) if number.is_integer() else None

    mapped = labels.map(lookup)
    unknown = sorted(set(labels[mapped.isna()]))
    if unknown:
        raise MedisynthError(
            f"{labels_csv}: label(s) {', '.join(map(repr, unknown))} is not a class of the real data set "
            f"({', '.join(class_names)}); use images of a model trained on that data set, or fix the label column"
        )
    return mapped.to_numpy(dtype=np.int64)
