"""Commands: ``medisynth runs compare`` (thin: call ``medisynth.compare``)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from medisynth.cli.app import app
from medisynth.cli.flags import Command, Group

runs_app = typer.Typer(help="Look at training runs side by side.", no_args_is_help=True, cls=Group)
app.add_typer(runs_app, name="runs")


@runs_app.command("compare", cls=Command)
def compare(
    runs: List[Path] = typer.Argument(..., help="two or more run folders (from `medisynth train`)"),
    report: Optional[List[Path]] = typer.Option(None, "--report", help="a `medisynth evaluate` folder that may have evaluated one of the runs (repeatable)"),
    html: Optional[Path] = typer.Option(None, "--html", help="also write a self-contained HTML page (with the last sample grids) here"),
) -> None:
    """Budgets, final training figures, the latest evaluation and the last sample grid of each run, side by side."""
    from rich.console import Console

    from medisynth.compare import compare_runs, rich_table, write_html

    summaries = compare_runs(runs, report or [])
    Console().print(rich_table(summaries))
    if html is not None:
        typer.echo(f"wrote {write_html(summaries, html)}")
