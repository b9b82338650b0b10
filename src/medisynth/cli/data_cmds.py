"""Commands: data_cmds (filled in by its owner)."""
from medisynth.cli.app import app  # noqa: F401


@app.command()
def version() -> None:
    """Print the medisynth version."""
    from medisynth import __version__

    print(__version__)
