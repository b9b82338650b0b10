"""Command: ``medisynth export`` (thin: call ``medisynth.export.export_run``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medisynth.cli.app import app
from medisynth.cli.flags import Command


@app.command(cls=Command)
def export(
    run: Path = typer.Argument(..., help="run folder (from `medisynth train`)"),
    out: Path = typer.Option(..., "--out", "-o", help="folder to create: the generator alone, loadable and sampleable like the run"),
    report: Optional[Path] = typer.Option(None, "--report", help="a `medisynth evaluate` output folder: its figures go into the model card"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Export a run's generator (EMA weights only) with a model card, to share or archive."""
    from medisynth.export import export_run

    typer.echo(export_run(run, out, report=report, overwrite=overwrite).summary())
