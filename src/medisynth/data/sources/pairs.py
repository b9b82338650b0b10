"""``pairs``: fundus images with vessel annotations (and field-of-view masks).

Layouts:

* DRIVE: ``{training,test}/images/21_training.png`` + ``1st_manual/21_manual1.png``
  + ``mask/21_training_mask.png``. Both official parts form one pool (DRIVE has no
  validation part); the part each image came from is kept in index.csv's ``origin`` column.
* HRF: ``images/01_dr.png`` + ``manual1/01_dr.png|tif`` + ``mask/01_dr_mask.png|tif``;
  the class comes from the suffix (``_h`` healthy, ``_dr`` diabetic retinopathy, ``_g`` glaucoma).
* CHASE_DB1: one folder of ``Image_01L.jpg`` + ``Image_01L_1stHO.png`` (no FOV masks);
  both eyes of one child form one group.

Images and annotations are matched by a key: the file stem with the layout's suffixes
(``_training``, ``_test``, ``_manual1``, ``_1stHO``, ``_mask``) removed. Besides image files,
DRIVE/HRF folders may hold DICOM (``.dcm``) or NIfTI (``.nii.gz``) files of one 8-bit 2-D image
each (``medisynth pipeline vessels --format dicom|nifti``), decoded by ``medisynth.io.read_image``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

from medisynth.data.sources._common import is_image_name
from medisynth.data.sources.base import Record, Source, register_source
from medisynth.errors import MedisynthError
from medisynth.io import is_scan_name

IMAGE_DIRS = ("images",)
VESSEL_DIRS = ("1st_manual", "manual1")
FOV_DIRS = ("mask",)
PART_DIRS = ("training", "test")
_STRIP = re.compile(r"(_training|_test|_manual1|_1stHO|_mask)+$", re.IGNORECASE)
HRF_CLASSES = {"h": "healthy", "dr": "dr", "g": "glaucoma"}
_CHASE_IMAGE = re.compile(r"^Image_(\d+)[LR]$", re.IGNORECASE)


def _key(stem: str) -> str:
    return _STRIP.sub("", _STRIP.sub("", stem)).lower()


def _stem(path: Path) -> str:
    return path.name[: -len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.stem


def _images_by_key(folder: Path, source: "PairsSource | None" = None) -> dict[str, Path]:
    """Image files of ``folder`` by key; dangling links are counted by ``source`` (when given) and left out."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if ((is_image_name(p.name) or is_scan_name(p.name)) and not p.name.startswith(".")
                and not (source and source.dangling(p)) and p.is_file()):
            out.setdefault(_key(_stem(p)), p)
    return out


def _first_dir(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_dir()), None)


def _parts(root: Path) -> list[tuple[str, Path]]:
    """(origin, folder holding images/ + annotation folders) pairs; empty when not this layout."""
    def is_part(folder: Path) -> bool:
        return _first_dir(folder, IMAGE_DIRS) is not None and _first_dir(folder, VESSEL_DIRS) is not None

    if is_part(root):
        return [(root.name, root)]
    return [(name, root / name) for name in PART_DIRS if (root / name).is_dir() and is_part(root / name)]


def _is_chase(root: Path) -> bool:
    return any(_CHASE_IMAGE.match(p.stem) for p in root.glob("*.jpg")) and any(root.glob("*_1stHO.png"))


@register_source
class PairsSource(Source):
    name = "pairs"
    default_preprocess = "fundus"

    def __init__(self, root: Path, skip_bad: bool = False, **options):
        super().__init__(root, **options)
        self.skip_bad = skip_bad
        if not self.root.is_dir() or not (_parts(self.root) or _is_chase(self.root)):
            raise MedisynthError(
                f"{self.root}: not an image + vessel-mask layout; expected DRIVE ({{training,test}}/images + "
                "1st_manual + mask), HRF (images/ + manual1/ + mask/) or CHASE_DB1 (Image_01L.jpg + Image_01L_1stHO.png)"
            )

    @classmethod
    def detect(cls, root: Path) -> bool:
        root = Path(root)
        return root.is_dir() and bool(_parts(root) or _is_chase(root))

    def records(self) -> Iterable[Record]:
        if _is_chase(self.root):
            yield from self._chase()
            return
        missing: list[str] = []
        for origin, part in _parts(self.root):
            images = _images_by_key(_first_dir(part, IMAGE_DIRS), self)
            vessels = _images_by_key(_first_dir(part, VESSEL_DIRS), self)
            fov_dir = _first_dir(part, FOV_DIRS)
            fovs = _images_by_key(fov_dir, self) if fov_dir else {}
            for key, image in images.items():
                if key not in vessels:
                    missing.append(f"{image} (no vessel mask in {_first_dir(part, VESSEL_DIRS)})")
                    continue
                if fov_dir and key not in fovs:
                    missing.append(f"{image} (no field-of-view mask in {fov_dir})")
                    continue
                stem = _stem(image)
                suffix = stem.rsplit("_", 1)[-1].lower()
                label = HRF_CLASSES.get(suffix) if len(_parts(self.root)) == 1 and "_" in stem else None
                yield Record(
                    id=f"{origin}/{stem}" if origin in PART_DIRS else stem,
                    label=label,
                    path=image,
                    mask_path=vessels[key],
                    fov_path=fovs.get(key),
                    extra={"origin": origin},
                )
        self._report_missing(missing)

    def _chase(self) -> Iterable[Record]:
        missing = []
        for image in sorted(self.root.glob("*.jpg")):
            m = _CHASE_IMAGE.match(image.stem)
            if not m or self.dangling(image):
                continue
            vessel = image.with_name(f"{image.stem}_1stHO.png")
            if not vessel.is_file():
                missing.append(f"{image} (no vessel mask {vessel.name})")
                continue
            yield Record(id=image.stem, label=None, path=image, mask_path=vessel, group=f"child_{m.group(1)}")
        self._report_missing(missing)

    def _report_missing(self, missing: list[str]) -> None:
        if missing and not self.skip_bad:
            skip = f", or pass {self.skip_flag} to leave these images out" if self.skip_flag else ""
            raise MedisynthError(
                f"{self.root}: {len(missing)} image(s) without annotation: {'; '.join(missing)}. Add the masks{skip}"
            )
        for item in missing:
            self.problems.append({"item": item.split(" (")[0], "reason": "missing annotation: " + item.split(" (", 1)[1][:-1]})
