"""Small helpers the source layouts share: finding image files, ignoring junk, naming classes."""
from __future__ import annotations

import os
import re
from pathlib import Path

from medisynth.io import IMAGE_EXTENSIONS

#: files that operating systems and tools drop into folders; never reported as bad input
JUNK_NAMES = {"thumbs.db", "desktop.ini", ".ds_store"}


def is_junk(path: Path) -> bool:
    return path.name.startswith(".") or path.name.lower() in JUNK_NAMES


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def normalise_label(value) -> str | None:
    """A label cell -> class-name string: "2.0" and 2 become "2"; empty cells become None."""
    if value is None:
        return None
    text = str(value).strip()
    if text == "" or text.lower() == "nan":
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


_EYE = re.compile(r"^(?P<patient>.+?)[_\-](left|right)$", re.IGNORECASE)


def eye_group(image_id: str) -> str | None:
    """EyePACS-style ``<patient>_left`` / ``<patient>_right`` -> ``<patient>`` (else None)."""
    m = _EYE.match(Path(image_id).stem if is_image_name(image_id) else image_id)
    return m.group("patient") if m else None


class FileFinder:
    """Resolves image ids (with or without extension) to files under one folder.

    The folder is listed once; an id without extension matches ``<id>.png``, ``<id>.jpg``...
    (any case). Ids that are not in the folder are looked up by file stem anywhere below
    ``fallback_root`` (listed lazily, once), which covers layouts such as Messidor's
    ``Base11/``, ``Base12/``... sub-folders.
    """

    def __init__(self, folder: Path, fallback_root: Path | None = None):
        self.folder = Path(folder)
        self.fallback_root = fallback_root
        self._by_name: dict[str, Path] = {}
        if self.folder.is_dir():
            for entry in os.scandir(self.folder):
                if entry.is_file() or entry.is_symlink():  # a dangling link is found, then counted by the source
                    self._by_name.setdefault(entry.name.lower(), Path(entry.path))
        self._by_stem_below: dict[str, list[Path]] | None = None

    def find(self, image_id: str) -> Path | None:
        name = image_id.strip().lower()
        if "/" in name or "\\" in name:  # a relative path such as "images/x.png"
            for base in (self.folder, self.fallback_root):
                if base is not None and ((Path(base) / image_id).is_file() or (Path(base) / image_id).is_symlink()):
                    return Path(base) / image_id
            return None
        if name in self._by_name:
            return self._by_name[name]
        for ext in _search_order():
            if name + ext in self._by_name:
                return self._by_name[name + ext]
        return self._find_below(name)

    def _find_below(self, name: str) -> Path | None:
        if self.fallback_root is None:
            return None
        if self._by_stem_below is None:
            self._by_stem_below = {}
            for dirpath, dirnames, filenames in os.walk(self.fallback_root):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                for f in filenames:
                    if is_image_name(f):
                        p = Path(dirpath) / f
                        self._by_stem_below.setdefault(f.lower(), []).append(p)
                        self._by_stem_below.setdefault(p.stem.lower(), []).append(p)
        hits = self._by_stem_below.get(name, [])
        return hits[0] if len(hits) == 1 else None

    def looked_for(self, image_id: str) -> str:
        if is_image_name(image_id):
            return f"{self.folder / image_id}"
        return f"{self.folder / image_id}.png/.jpg/.jpeg/.tif..."


def _search_order() -> tuple[str, ...]:
    return (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".ppm")
