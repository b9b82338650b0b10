"""Writing a sample folder as it is generated: images/<id>.png, labels.csv, grid.png, sample.json.

Every accepted image is written at once (100,000 images never sit in memory); the caller
opens the folder with ``medisynth.io.atomic_dir`` so it appears only when complete.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from medisynth.data.images import image_grid
from medisynth.io import write_json, write_png
from medisynth.provenance import CSV_FIELDS, Provenance

GRID_COLUMNS = 8
#: what a sample folder says about itself: the run it came from, what was asked and written, the seed
SAMPLE_JSON = "sample.json"
COLUMNS = ["image", "label", "class_index", "synthetic", "model", "run", "seed", *CSV_FIELDS]


def safe_name(name: str) -> str:
    """A class name as it may appear in a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "class"


class SampleWriter:
    """labels.csv rows and PNGs into ``folder``; keeps the first GRID_COLUMNS images of each class for grid.png."""

    def __init__(self, folder: Path, extra_columns: list[str], model: str, run: str, seed: int,
                 image_format: str = "png", window=None):
        self.folder = Path(folder)
        (self.folder / "images").mkdir()
        # DICOM/NIfTI files (``formats``) instead of PNGs; labels.csv and grid.png stay the same
        from medisynth.sampling.formats import open_format  # here: formats uses safe_name from this module

        self._files = None if image_format == "png" else open_format(image_format, self.folder / "images", window)
        self._file = open(self.folder / "labels.csv", "w", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(COLUMNS + extra_columns)
        self._fixed = [model, run, seed]
        self._grid: list[np.ndarray] = []
        self._row: list[np.ndarray] = []

    def write(self, label: str, class_index: int, number: int, image: np.ndarray, scores: list[float],
              provenance: Provenance) -> None:
        """Image ``number`` (1-based) of class ``label``: uint8 C x H x W, with its filter scores and the
        provenance record written into the PNG and repeated in labels.csv."""
        if self._files is not None:
            image_id = self._files.write(label, number, image, provenance)
        else:
            image_id = f"syn_{safe_name(label)}_{number:06d}"
            # inside the atomic output folder: no per-file rename needed
            write_png(self.folder / "images" / f"{image_id}.png", image.transpose(1, 2, 0),
                      text=provenance.png_text(), atomic=False)
        record = provenance.fields()
        self._csv.writerow([image_id, label, class_index, 1, *self._fixed, *(record[k] for k in CSV_FIELDS),
                            *(f"{s:.6f}" for s in scores)])
        if len(self._row) < GRID_COLUMNS:
            self._row.append(image)

    def end_batch(self) -> None:
        self._file.flush()

    def end_class(self) -> None:
        """Close the class's grid row (padded with black) and, for NIfTI, write the class's volume."""
        if self._files is not None:
            self._files.end_class()
        if self._row:
            self._grid += self._row + [np.zeros_like(self._row[0])] * (GRID_COLUMNS - len(self._row))
        self._row = []

    def __enter__(self) -> "SampleWriter":
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()

    def finish(self, record: dict[str, Any]) -> None:
        """Finish labels.csv, draw grid.png, write ``record`` as sample.json."""
        self._file.close()
        if self._grid:
            write_png(self.folder / "grid.png", image_grid(np.stack(self._grid), columns=GRID_COLUMNS))
        write_json(self.folder / SAMPLE_JSON, record)
