"""``folders``: one sub-folder per class, the folder name is the class.

``ROOT/<Class>/<image>`` (images may sit deeper inside a class folder). A root that holds
exactly one sub-folder that in turn holds the class folders (the CT kidney set's
``Training/<Class>/<Class>- (N).jpg``) is descended into automatically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from medisynth.data.sources._common import is_image_name, is_junk
from medisynth.data.sources.base import Record, Source, register_source
from medisynth.errors import MedisynthError


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _has_images(folder: Path) -> bool:
    return any(is_image_name(p.name) for p in folder.iterdir() if p.is_file())


def class_root(root: Path) -> Path | None:
    """The folder whose sub-folders are the classes, or None when ``root`` is not this layout."""
    root = Path(root)
    if not root.is_dir() or _has_images(root):
        return None
    subs = _subfolders(root)
    if len(subs) == 1 and not _has_images(subs[0]) and len(_subfolders(subs[0])) >= 2:
        return class_root(subs[0])
    if len(subs) >= 2 and sum(_has_images(s) for s in subs) >= 1 and all(not _subfolders(s) or _has_images(s) for s in subs):
        return root
    return None


@register_source
class FoldersSource(Source):
    name = "folders"
    default_preprocess = "none"  # e.g. the CT kidney JPEGs are already windowed

    def __init__(self, root: Path, skip_bad: bool = False, **options):
        super().__init__(root, **options)
        self.skip_bad = skip_bad
        found = class_root(self.root) if self.root.is_dir() else None
        if found is None and self.root.is_dir() and len(_subfolders(self.root)) >= 1 and not _has_images(self.root):
            found = self.root  # e.g. a class folder that is empty: reported below, not "unknown layout"
        if found is None:
            raise MedisynthError(
                f"{self.root}: not a class-folder layout; expected ROOT/<class>/<images> "
                "(or ROOT/<one folder>/<class>/<images>)"
            )
        self.class_dir = found

    @classmethod
    def detect(cls, root: Path) -> bool:
        return class_root(Path(root)) is not None

    def records(self) -> Iterable[Record]:
        classes = _subfolders(self.class_dir)
        empty = []
        for class_dir in classes:
            files = sorted(p for p in class_dir.rglob("*")
                           if not is_junk(p) and not self.dangling(p) and p.is_file())
            images = [p for p in files if is_image_name(p.name)]
            if not images:
                empty.append(class_dir)
                continue
            for p in files:
                if p not in images:
                    self.problem(str(p), f"not an image file (extension {p.suffix!r}); remove it from {class_dir}",
                                 self.skip_bad)
            for p in images:
                rel = p.relative_to(self.class_dir).with_suffix("")
                yield Record(id=rel.as_posix(), label=class_dir.name, path=p)
        for class_dir in empty:
            self.problem(str(class_dir), "class folder holds no images; add images or remove the folder",
                         self.skip_bad)
