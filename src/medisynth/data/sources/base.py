"""What a data source yields: one ``Record`` per image, found from the source's layout.

A source module (one per layout: label CSV, class folders, image + mask pairs,
MedMNIST npz, DICOM/NIfTI volumes) registers a ``Source`` subclass. ``detect``
asks each registered source whether it recognises a folder or file.
Records are cheap descriptions; pixels are read later, in worker processes,
by ``Record.load()``, so that prepare streams.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterable

import numpy as np

from medisynth.errors import MedisynthError
from medisynth.registry import Registry


@dataclass
class Record:
    id: str
    label: str | None  # class name as a string (e.g. "3", "Cyst"); None when the source has no labels
    path: Path | None = None  # image file, if the image is a file
    group: str | None = None  # records of one group (e.g. one patient's two eyes) stay in one split
    mask_path: Path | None = None  # vessel/lesion annotation
    fov_path: Path | None = None  # field-of-view mask
    split: str | None = None  # a split fixed by the source (e.g. MedMNIST's official split)
    loader: Callable[[], np.ndarray] | None = None  # for pixels that do not live in one file (npz, volumes)
    extra: dict[str, Any] = field(default_factory=dict)
    #: True when ``loader`` gives raw intensities (e.g. CT in HU) rather than uint8 pixels
    raw_intensity: bool = False
    #: where a user finds this record, when the path alone does not say (e.g. "train.csv row 12")
    where: str | None = None

    def describe(self) -> str:
        if self.where:
            return self.where
        return str(self.path) if self.path else self.id


class Source:
    """A layout of images and labels on disk."""

    name: ClassVar[str] = ""
    #: the preprocessing that suits this source when the user says ``--preprocess auto``
    default_preprocess: ClassVar[str] = "none"
    #: the source options (``PrepareConfig.source_options`` keys) this layout understands
    accepted_options: ClassVar[tuple[str, ...]] = ()
    #: True when pixels are already decoded and tiny (MedMNIST): one process beats a pool by default
    prefers_one_process: ClassVar[bool] = False

    def __init__(self, root: Path, skip_flag: str | None = "--skip-bad", **options: Any):
        self.root = Path(root)
        self.options = options
        #: the calling command's flag that skips bad files, advised in errors (None: the command has none)
        self.skip_flag = skip_flag
        self.problems: list[dict[str, str]] = []  # counted skips when skip_bad (and dangling links, always)

    @classmethod
    def detect(cls, root: Path) -> bool:
        """Whether ``root`` looks like this layout."""
        return False

    def records(self) -> Iterable[Record]:
        raise NotImplementedError

    def class_names(self, labels: Iterable[str]) -> list[str]:
        """Order the class names: numerically when every label is an integer, else alphabetically."""
        names = sorted(set(labels))
        if all(_is_int(n) for n in names):
            return sorted(names, key=int)
        return names

    def known_classes(self) -> tuple[list[str], str] | None:
        """The classes the layout allows whatever the files hold, and where that list comes from
        (e.g. the DR grades 0-4 of a grading CSV); None when any label is a class (class folders)."""
        return None

    def dangling(self, path: Path) -> bool:
        """Whether ``path`` is a symbolic link to nothing. Such a link is counted in ``problems`` rather than
        stopping prepare: there is no image to fix, and dropping it silently would hide a moved data set."""
        if not (path.is_symlink() and not path.exists()):
            return False
        self.problems.append({"item": str(path), "reason": f"dangling symbolic link (to {os.readlink(path)}, which "
                                                           "does not exist); fix or remove the link"})
        return True

    def problem(self, where: str, message: str, skip_bad: bool) -> None:
        """Raise a clear error, or count the problem as a skip when the user asked for --skip-bad."""
        if not skip_bad:
            raise MedisynthError(f"{where}: {message}")
        self.problems.append({"item": where, "reason": message})


def _is_int(s: str) -> bool:
    try:
        int(s)
        return True
    except ValueError:
        return False


SOURCE_REGISTRY: Registry[type[Source]] = Registry("source", base=Source)


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: register a Source subclass under its ``name`` (detection asks them in this order)."""
    return SOURCE_REGISTRY.register(cls.name, cls)


def detect_source(root: Path) -> type[Source]:
    import medisynth.data.sources  # noqa: F401  (registers the sources)

    root = Path(root)
    if not root.exists():
        raise MedisynthError(f"{root} does not exist")
    for cls in SOURCE_REGISTRY.values():
        if cls.detect(root):
            return cls
    raise MedisynthError(
        f"cannot tell the layout of {root}; name it with --source ({', '.join(SOURCE_REGISTRY)}) "
        "and, for a label CSV, --id-column/--label-column"
    )


def get_source(name: str) -> type[Source]:
    """The source registered as ``name``; MedisynthError naming the choices if unknown."""
    import medisynth.data.sources  # noqa: F401  (registers the sources)

    return SOURCE_REGISTRY.get(name)
