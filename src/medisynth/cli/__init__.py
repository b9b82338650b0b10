"""``medisynth`` command line: a thin layer that builds config objects and calls the API.

Each command group lives in its own module and adds itself to ``app``; ``main``
turns a ``MedisynthError`` (or a full disk) into one red line on stderr and exit status 2.
"""
import errno
import sys

from rich.console import Console
from rich.markup import escape

from medisynth.cli.app import app
from medisynth.cli.flags import Command
from medisynth.errors import MedisynthError

# importing a module registers its commands on ``app``
from medisynth.cli import phantom_cmds, data_cmds, train_cmds, evaluate_cmds, utility_cmds, pipeline_cmds, demo_cmds, export_cmds, runs_cmds  # noqa: E402,F401


@app.command(cls=Command)
def version() -> None:
    """Print the medisynth version."""
    from medisynth import __version__

    print(__version__)


#: the errors a full disk or quota gives: said in one line, like a MedisynthError (any other OSError is a bug to see)
DISK_FULL = tuple(getattr(errno, name) for name in ("ENOSPC", "EDQUOT") if hasattr(errno, name))


def main() -> None:
    try:
        app()
    except MedisynthError as e:
        # escaped: a message naming a list ("[start, end]") must not be read as rich markup and vanish
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        where = f" writing {e.filename}" if e.filename else ""
        Console(stderr=True).print(f"[bold red]error:[/] {escape(e.strerror or str(e))}{escape(where)}: free disk space "
                                   "(or choose another --out), then run the command again; a training run continues "
                                   "from its last checkpoint with --resume RUN", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]")
        sys.exit(130)


__all__ = ["app", "main"]
