"""``csv``: a label CSV beside a folder of images.

Known conventions are recognised from the CSV header:

=============  ==============================  ===============  ==========================
convention     columns (id, label)             image folder     ids
=============  ==============================  ===============  ==========================
medisynth      image, label (+ mask, fov)      images/          id without extension
APTOS 2019     id_code, diagnosis              train_images/    id without extension
EyePACS        image, level                    train/           ``<patient>_left/right``
IDRiD          Image name, Retinopathy grade   (searched)       ``IDRiD_001`` -> .jpg
Messidor       Image name / Image,             (searched)       file name with extension
               Retinopathy grade
=============  ==============================  ===============  ==========================

Anything else works with ``--id-column``/``--label-column`` (+ ``--image-dir``). Ids
without an extension are resolved to ``.png``/``.jpg``/``.jpeg``/``.tif``...; ids not in
the image folder are looked up anywhere below the root by file name.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Iterable



from medisynth.data.manifest import SPLITS
from medisynth.data.sources._common import FileFinder, eye_group, is_image_name, normalise_label
from medisynth.data.sources.base import Record, Source, register_source
from medisynth.errors import MedisynthError
from medisynth.io import read_json

# (name, id column, label column, default image folders relative to the CSV's folder)
CONVENTIONS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("medisynth", "image", "label", ("images",)),
    ("APTOS 2019", "id_code", "diagnosis", ("train_images", "train")),
    ("EyePACS", "image", "level", ("train", "images")),
    ("IDRiD/Messidor", "Image name", "Retinopathy grade", ("images",)),
    ("Messidor", "Image", "Retinopathy grade", ("images",)),
)
FUNDUS_GRADE_COLUMNS = ("diagnosis", "level", "Retinopathy grade")
#: the international DR severity scale that APTOS, EyePACS and IDRiD grade on (Messidor uses 0-3 of it)
DR_GRADES = ("0", "1", "2", "3", "4")
GROUP_COLUMNS = ("group", "patient_id", "patient")
#: separators other than "," that spreadsheets write (";" in many locales); found from the header line
OTHER_SEPARATORS = ";\t|"


def separator(csv_path: Path) -> str:
    """The CSV's column separator: "," unless the header line holds none and ``csv.Sniffer`` finds one of
    OTHER_SEPARATORS in it."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig", errors="replace") as f:
            line = f.readline()
    except OSError:
        return ","
    if "," in line:
        return ","
    try:
        return csv.Sniffer().sniff(line, delimiters=OTHER_SEPARATORS).delimiter
    except csv.Error:
        return ","


def _header(csv_path: Path) -> list[str]:
    try:
        with open(csv_path, newline="", encoding="utf-8-sig", errors="replace") as f:
            return [c.strip() for c in next(csv.reader(f, delimiter=separator(csv_path)), [])]
    except OSError:
        return []


def _columns(csv_path: Path) -> str:
    """The header's columns and the separator they were split at, for error messages."""
    return f"columns: {', '.join(_header(csv_path))}; separated by {separator(csv_path)!r}"


def _candidate_csvs(root: Path) -> list[Path]:
    if root.is_file():
        return [root] if root.suffix.lower() == ".csv" else []
    found = sorted(root.glob("*.csv"))
    for depth in ("*/*.csv", "*/*/*.csv"):
        found += sorted(p for p in root.glob(depth) if not any(part.startswith(".") for part in p.parts))
    return found


def _missing_columns(columns: list[str], id_column: str | None, label_column: str | None) -> str:
    """What is missing for the user's --id-column/--label-column, each named with its flag (the other
    column, when not given, comes from a known convention)."""
    convention = _match_convention(columns)
    wanted = [("--id-column", id_column or (convention[1] if convention else None)),
              ("--label-column", label_column or (convention[2] if convention else None))]
    missing = [f"no column {name!r} for {flag}" if name else f"no id/label column known: pass {flag}"
               for flag, name in wanted if name not in columns]
    return "; ".join(missing)


def _match_convention(columns: list[str]):
    for convention in CONVENTIONS:
        if convention[1] in columns and convention[2] in columns:
            return convention
    return None


@register_source
class CsvSource(Source):
    name = "csv"
    default_preprocess = "none"
    accepted_options = ("id_column", "label_column", "image_dir")

    def __init__(self, root: Path, skip_bad: bool = False, id_column: str | None = None,
                 label_column: str | None = None, image_dir: str | None = None, **options):
        super().__init__(root, **options)
        self.skip_bad = skip_bad
        self.csv_path, self.id_column, self.label_column, image_dirs = self._choose(id_column, label_column)
        if self.label_column in FUNDUS_GRADE_COLUMNS:  # a DR grading set: crop the fundus field of view
            self.default_preprocess = "fundus"
        base = self.csv_path.parent if self.root.is_file() else self.root
        if image_dir is not None:
            folder = Path(image_dir) if Path(image_dir).is_absolute() else base / image_dir
            if not folder.is_dir():
                raise MedisynthError(f"--image-dir {image_dir}: {folder} is not a folder")
        else:
            folder = next((base / d for d in image_dirs if (base / d).is_dir()), self.csv_path.parent)
        self.image_dir = folder
        self.base = base
        self.separator = separator(self.csv_path)
        if self.separator != ",":  # read as the user meant, but never silently
            print(f"note: {self.csv_path}: columns separated by {self.separator!r}, not ','", file=sys.stderr)

    @classmethod
    def detect(cls, root: Path) -> bool:
        return any(_match_convention(_header(p)) for p in _candidate_csvs(Path(root)))

    def _choose(self, id_column, label_column):
        candidates = _candidate_csvs(self.root)
        if not candidates:
            raise MedisynthError(f"{self.root}: no .csv label file found; put one beside the images or pass its path")
        if id_column or label_column:
            for path in candidates:
                columns = _header(path)
                convention = _match_convention(columns)
                want_id = id_column or (convention[1] if convention else None)
                want_label = label_column or (convention[2] if convention else None)
                if want_id in columns and (want_label in columns):
                    dirs = convention[3] if convention else ("images",)
                    return path, want_id, want_label, dirs
            raise MedisynthError(f"{candidates[0]}: {_missing_columns(_header(candidates[0]), id_column, label_column)} "
                                 f"({_columns(candidates[0])})")
        for path in candidates:
            convention = _match_convention(_header(path))
            if convention:
                return path, convention[1], convention[2], convention[3]
        raise MedisynthError(
            f"{candidates[0]}: unknown label columns ({_columns(candidates[0])}); name them with "
            "--id-column and --label-column (and --image-dir for the image folder)"
        )

    def known_classes(self) -> tuple[list[str], str] | None:
        """DR grades for a grading column; the class list of the data set a ``medisynth balance`` folder
        was made from; else None (any label of a generic CSV is a class)."""
        if self.label_column in FUNDUS_GRADE_COLUMNS:
            return list(DR_GRADES), f"the DR grades of column {self.label_column!r}"
        balance = self.base / "balance.json"
        if balance.is_file():
            per_class = read_json(balance).get("per_class")
            if not isinstance(per_class, list) or not all(isinstance(r, dict) and "class" in r for r in per_class):
                raise MedisynthError(f"{balance}: has no per_class list of classes; the file is damaged, re-run "
                                     "`medisynth balance`")
            return [str(r["class"]) for r in per_class], f"the classes listed in {balance}"
        return None

    def records(self) -> Iterable[Record]:
        import pandas as pd  # here, not at the top: prepare's worker processes import this module too

        table = pd.read_csv(self.csv_path, sep=self.separator, dtype=str, keep_default_na=False,
                            encoding="utf-8-sig", encoding_errors="replace")
        table.columns = [c.strip() for c in table.columns]
        finder = FileFinder(self.image_dir, fallback_root=self.base)
        group_column = next((c for c in GROUP_COLUMNS if c in table.columns), None)
        seen: dict[str, int] = {}
        for i, row in enumerate(table.itertuples(index=False)):
            values = dict(zip(table.columns, row))
            where = f"{self.csv_path} row {i + 2}"  # +1 for the header, +1 for 1-based rows
            image_id = values[self.id_column].strip()
            if not image_id:
                self.problem(where, f"empty {self.id_column!r}; fill it in or delete the row", self.skip_bad)
                continue
            record_id = Path(image_id).stem if is_image_name(image_id) else image_id
            if record_id in seen:
                self.problem(where, f"id {image_id!r} already appears in row {seen[record_id]}; "
                             "ids must be unique, delete one of the rows", self.skip_bad)
                continue
            seen[record_id] = i + 2
            label = normalise_label(values[self.label_column])
            if label is None:
                self.problem(where, f"{image_id!r} has no {self.label_column!r}; fill it in or delete the row",
                             self.skip_bad)
                continue
            path = finder.find(image_id)
            if path is None:
                self.problem(where, f"image {image_id!r} not found (looked for {finder.looked_for(image_id)}); "
                             "add the file, fix the id, or point --image-dir at the images", self.skip_bad)
                continue
            if self.dangling(path):
                continue
            if not is_image_name(path.name):
                self.problem(where, f"{path} is not an image file (extension {path.suffix!r}); "
                             "list only .png/.jpg/.tif... images", self.skip_bad)
                continue
            mask_path = self._optional_file(values, "mask", where)
            fov_path = self._optional_file(values, "fov", where)
            if mask_path is False or fov_path is False:
                continue
            group = values[group_column].strip() if group_column and values[group_column].strip() else eye_group(record_id)
            split = values.get("split", "").strip() or None
            if split is not None and split not in SPLITS:
                self.problem(where, f"split {split!r} is not one of {', '.join(SPLITS)}; fix it or clear the cell",
                             self.skip_bad)
                continue
            # a balanced folder (medisynth balance) fixes its splits and marks its synthetic rows:
            # both survive into index.csv so synthetic images never reach val or test
            extra = {"synthetic": int(values["synthetic"] or 0)} if "synthetic" in values else {}
            yield Record(id=record_id, label=label, path=path, group=group, mask_path=mask_path or None,
                         fov_path=fov_path or None, where=f"{where} ({path.name})", split=split, extra=extra)

    def _optional_file(self, values: dict, column: str, where: str):
        """The file named in an optional ``mask``/``fov`` column (relative to the root); False when missing."""
        name = values.get(column, "").strip() if column in values else ""
        if not name:
            return None
        path = self.base / name
        if not path.is_file():
            self.problem(where, f"{column} file {path} not found; add it or clear the {column!r} cell", self.skip_bad)
            return False
        return path
