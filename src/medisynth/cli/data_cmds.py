"""Commands: ``prepare`` (a source layout -> a prepared data set) and ``version``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medisynth.cli.app import app
from medisynth.cli.flags import Command
from medisynth.defaults import PREPARE
from medisynth.errors import MedisynthError


def parse_renames(text: str) -> dict[str, str]:
    """``--rename-classes 0=normal,1=pneumonia`` -> {"0": "normal", "1": "pneumonia"}."""
    renames: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        old, sep, new = item.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise MedisynthError(f"--rename-classes {text}: {item!r} is not OLD=NEW; give e.g. 0=normal,1=pneumonia")
        if old.strip() in renames:
            raise MedisynthError(f"--rename-classes {text}: class {old.strip()!r} is renamed twice")
        renames[old.strip()] = new.strip()
    return renames


@app.command(cls=Command)
def prepare(
    source: Path = typer.Argument(..., help="Folder (or .csv / .npz / .nii file) holding the images."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the prepared data set to."),
    source_kind: Optional[str] = typer.Option(
        None, "--source", help="Layout: csv, folders, pairs, medmnist, dicom, nifti (default: detect)."),
    size: int = typer.Option(PREPARE["size"], help="Output side length in pixels (square)."),
    channels: Optional[int] = typer.Option(None, help="1 (grayscale) or 3 (RGB); default: the source's."),
    preprocess: str = typer.Option(PREPARE["preprocess"], help="auto, none, fundus (FOV crop) or ct (HU windowing)."),
    graham: bool = typer.Option(False, "--graham", help="Graham's local contrast normalisation (fundus)."),
    window_level: float = typer.Option(PREPARE["window_level"], help="CT window level in HU (DICOM/NIfTI)."),
    window_width: float = typer.Option(PREPARE["window_width"], help="CT window width in HU (DICOM/NIfTI)."),
    val_fraction: float = typer.Option(PREPARE["val_fraction"], help="Share of each class for validation."),
    test_fraction: float = typer.Option(PREPARE["test_fraction"], help="Share of each class for testing."),
    seed: int = typer.Option(PREPARE["seed"], help="Seed of the split."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip and count bad files instead of stopping."),
    workers: Optional[int] = typer.Option(None, help="Processes decoding images (default: all cores)."),
    classes: Optional[str] = typer.Option(None, help="Comma-separated class list (fixes order; others are errors)."),
    allow_new_classes: bool = typer.Option(
        False, "--allow-new-classes", help="Without --classes: accept labels outside the layout's classes "
                                           "(DR grades 0-4, a balanced folder's classes) as new classes."),
    rename_classes: Optional[str] = typer.Option(
        None, help="Name classes in the prepared set: OLD=NEW,... (e.g. MedMNIST's 0=normal,1=pneumonia); "
                   "--classes names the source's labels."),
    id_column: Optional[str] = typer.Option(None, help="CSV column holding the image id/file name."),
    label_column: Optional[str] = typer.Option(None, help="CSV column holding the label."),
    image_dir: Optional[str] = typer.Option(None, help="Image folder of a CSV layout (relative to SOURCE)."),
    slice_step: Optional[int] = typer.Option(None, help="NIfTI: use every N-th non-empty axial slice."),
    limit: Optional[int] = typer.Option(None, help="Use a seeded random subset of N images (quick looks)."),
    near_duplicate_threshold: float = typer.Option(
        PREPARE["near_duplicate_threshold"], help="Keep images whose 16x16 thumbnails have cosine >= this on one side of the split "
                   "(neighbouring CT slices); 0 switches it off."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Read a data set in its native layout, preprocess, split and write it as a prepared data set."""
    from medisynth.data.prepare import PrepareConfig, format_summary, prepare as run_prepare

    if channels is not None and channels not in (1, 3):
        raise MedisynthError(f"--channels {channels}: use 1 or 3")
    class_list = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    renames = parse_renames(rename_classes) if rename_classes else None
    config = PrepareConfig(
        source=source, out=out, source_kind=source_kind, size=size, channels=channels, preprocess=preprocess,
        graham=graham, window_level=window_level, window_width=window_width, val_fraction=val_fraction,
        test_fraction=test_fraction, seed=seed, skip_bad=skip_bad, workers=workers, overwrite=overwrite,
        classes=class_list, allow_new_classes=allow_new_classes, rename_classes=renames, limit=limit,
        near_duplicate_threshold=near_duplicate_threshold,
        source_options={"id_column": id_column, "label_column": label_column, "image_dir": image_dir,
                        "slice_step": slice_step},
    )
    result = run_prepare(config)
    print(format_summary(result.manifest))
    print(f"prepared data set written to {result.out}")
