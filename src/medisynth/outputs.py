"""Which folders ``--overwrite`` may replace: only medisynth's own earlier outputs.

Every output folder medisynth writes carries a small marker file, ``.medisynth.json``
(``{"written_by": "medisynth", "kind": ..., "version": ...}``), written inside the
temporary folder before it is renamed into place. ``--overwrite`` replaces a folder only
when it is empty or holds a marker of the same kind of output, and never when it is the
working folder (or one above it), an input of the same command, or a folder above an
input. Anything else is refused with one line naming the folder and the reason, so a
typo in ``--out`` can never delete a data set, a run, or the user's own files.

Outputs written before the marker existed are refused too: their owner deletes them.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Optional

from medisynth.errors import MedisynthError

MARKER = ".medisynth.json"


def write_marker(folder: Path, kind: str) -> None:
    """Mark ``folder`` as a medisynth output of ``kind`` (call inside the temporary folder)."""
    from medisynth import __version__

    text = json.dumps({"written_by": "medisynth", "kind": kind, "version": __version__}) + "\n"
    (Path(folder) / MARKER).write_text(text)


def read_marker(folder: Path) -> Optional[dict]:
    """The marker of ``folder``, or None when it has none (or a damaged one: then it is not ours)."""
    try:
        marker = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("written_by") == "medisynth" else None


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output(
    out: Path,
    overwrite: bool,
    kind: str,
    inputs: Iterable[Optional[Path]] = (),
    flag: str = "--out",
    alternative: str = "",
) -> None:
    """Raise ``MedisynthError`` unless ``out`` may be (re)written by a command that makes ``kind``.

    ``out`` may be written when it does not exist; with ``overwrite`` also when it is an empty folder
    or holds a medisynth marker of the same ``kind``. ``alternative`` adds a way out to the
    "already exists" message (e.g. ", or --resume RUN"). It is never written when it is the
    working folder or above it, or when it is one of ``inputs`` or above one of them.
    """
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise MedisynthError(f"{flag} {out} is a file, not a folder; choose another {flag}")
    resolved = out.resolve()
    if _is_within(Path(os.getcwd()).resolve(), resolved):
        raise MedisynthError(f"{flag} {out} is the working folder or holds it; refusing to replace it, "
                             f"choose a new sub-folder as {flag}")
    for source in inputs:
        if source is None:
            continue
        source = Path(source)
        if _is_within(source.resolve(), resolved):
            what = "is" if source.resolve() == resolved else "holds"
            raise MedisynthError(f"{flag} {out} {what} the input {source} of this command; refusing to "
                                 f"replace it, choose another {flag}")
    if not overwrite:
        ways = f"choose another {flag}, pass --overwrite{alternative}" if alternative else f"choose another {flag} or pass --overwrite"
        raise MedisynthError(f"{out} already exists; {ways}")
    if not any(out.iterdir()):
        return
    marker = read_marker(out)
    if marker is None:
        raise MedisynthError(f"{flag} {out} was not written by medisynth (no {MARKER} in it); --overwrite only "
                             f"replaces medisynth's own outputs: delete it yourself or choose another {flag}")
    if marker.get("kind") != kind:
        raise MedisynthError(f"{flag} {out} holds a medisynth {marker.get('kind')!r} output, not {kind!r}; "
                             f"refusing to replace it, choose another {flag}")


def create_run_dir(run: Path, overwrite: bool, inputs: Iterable[Optional[Path]] = ()) -> None:
    """Make the folder of a new training run (marked ``run``), replacing an earlier run only as
    ``check_output`` allows. A run grows over its training (it is resumable), so unlike the other
    outputs it is not written into a temporary folder: the earlier run is removed before training."""
    import shutil

    run = Path(run)
    empty = run.is_dir() and not any(run.iterdir())  # e.g. made by the user for the run: use it
    check_output(run, overwrite or empty, "run", inputs, alternative=f", or --resume {run}")
    if run.exists() and any(run.iterdir()):
        shutil.rmtree(run)
    run.mkdir(parents=True, exist_ok=True)
    write_marker(run, "run")
