"""Commands: ``medisynth phantom fundus`` and ``medisynth phantom ct`` (built-in data, no download)."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from medisynth.cli.app import app
from medisynth.cli.flags import Command, Group

phantom_app = typer.Typer(
    help="Write a built-in, procedurally drawn data set (no download): fundus photographs graded "
    "DR 0-4 with vessel masks, or kidney CT slices (Normal/Cyst/Tumor/Stone).",
    no_args_is_help=True,
    cls=Group,
)
app.add_typer(phantom_app, name="phantom")

_PROPORTIONS_HELP = "class shares in class order, comma-separated (percent or any weights); exact counts by largest remainder, at least 2 per class"


@phantom_app.command("fundus", cls=Command)
def fundus(
    out: Path = typer.Option(..., "--out", help="output folder (image-folder layout: images/, masks/, fov/, labels.csv)"),
    n: int = typer.Option(1000, "--n", help="number of images"),
    size: int = typer.Option(128, "--size", help="image side in pixels (32-1024)"),
    seed: int = typer.Option(0, "--seed", help="same seed -> byte-identical files"),
    proportions: Optional[str] = typer.Option(None, "--proportions", help=_PROPORTIONS_HELP + " [default: EyePACS 73.67,6.97,14.85,2.35,2.16]"),
    workers: int = typer.Option(1, "--workers", help="processes drawing in parallel"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
) -> None:
    """Fundus photographs graded DR 0-4 (EyePACS class shares by default), with vessel and FOV masks."""
    from medisynth.io import read_json
    from medisynth.phantom.fundus import generate_fundus_dataset

    path = generate_fundus_dataset(out, n=n, size=size, seed=seed, proportions=proportions, overwrite=overwrite,
                                   workers=workers, progress=sys.stderr.isatty())
    _summary(path, read_json(path / "phantom.json"), "grade")


@phantom_app.command("ct", cls=Command)
def ct(
    out: Path = typer.Option(..., "--out", help="output folder (<Class>/<Class>- (N).png, like the CT KIDNEY set)"),
    n: int = typer.Option(400, "--n", help="number of images"),
    size: int = typer.Option(128, "--size", help="image side in pixels (32-1024)"),
    seed: int = typer.Option(0, "--seed", help="same seed -> byte-identical files"),
    proportions: Optional[str] = typer.Option(None, "--proportions", help=_PROPORTIONS_HELP + " [default: Normal,Cyst,Tumor,Stone 40,25,20,15]"),
    workers: int = typer.Option(1, "--workers", help="processes drawing in parallel"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace OUT if it exists"),
) -> None:
    """Grayscale axial kidney CT slices: Normal, Cyst, Tumor, Stone."""
    from medisynth.io import read_json
    from medisynth.phantom.ct import generate_ct_dataset

    path = generate_ct_dataset(out, n=n, size=size, seed=seed, proportions=proportions, overwrite=overwrite,
                               workers=workers, progress=sys.stderr.isatty())
    _summary(path, read_json(path / "phantom.json"), "class")


def _summary(path: Path, params: dict, what: str) -> None:
    counts = ", ".join(f"{k}: {v}" for k, v in params["counts"].items())
    print(f"wrote {params['n']} {params['kind']} phantom images ({params['size']} px, seed {params['seed']}) to {path}")
    print(f"per {what}: {counts}")
