"""The typer application that every command module adds its commands to."""
import typer

from medisynth.cli.flags import Group

app = typer.Typer(
    name="medisynth",
    help="Train generative models on your medical images, sample synthetic images per class, "
    "and check whether they are faithful, diverse, private and useful.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
)


@app.callback()
def _root() -> None:
    """medisynth: synthetic medical images to rebalance small, imbalanced data sets."""
