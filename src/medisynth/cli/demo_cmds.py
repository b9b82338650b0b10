"""Command: demo (the end-to-end job on built-in phantom data)."""
from pathlib import Path
from typing import Optional

import typer

from medisynth.cli.app import app
from medisynth.cli.flags import DEFAULT, with_aliases
from medisynth.demo import DemoConfig


@app.command(cls=with_aliases({"--n-images": "--n", "--no-overwrite": DEFAULT}))
def demo(
    out: Path = typer.Option(Path("demo_output"), help="Folder for every stage's output"),
    n_images: int = typer.Option(DemoConfig.n_images, "--n", help="Phantom fundus images to generate"),
    test_images: int = typer.Option(DemoConfig.test_images, "--test-images",
                                    help="Fresh phantom eyes, equally many per grade, that the utility study is scored on"),
    size: int = typer.Option(DemoConfig.size, help="Image size used for training (px)"),
    budget_minutes: float = typer.Option(DemoConfig.budget_minutes, help="The whole demo's wall time on a CPU: "
                                         "the GAN trains for what the other stages, projected from its step time, "
                                         "leave of it"),
    train_minutes: Optional[float] = typer.Option(None, help="Train the class-conditional GAN (fastgan) this long "
                                                  "instead (default: what --budget-minutes leaves; 5 on a GPU)"),
    top_up: bool = typer.Option(False, "--top-up", help="Also score real images topped up with synthetic images of "
                                "the rarer grades (3 more classifiers, about 1.5 minutes on a 2-core CPU)"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists"),
) -> None:
    """Run the whole job on built-in phantom fundus data: prepare, train, sample, balance, evaluate, utility."""
    from medisynth.demo import WITH_TOP_UP, run_demo

    protocols = WITH_TOP_UP if top_up else DemoConfig.utility_protocols
    run_demo(DemoConfig(out=out, n_images=n_images, test_images=test_images, size=size, train_minutes=train_minutes,
                        budget_minutes=budget_minutes,
                        utility_protocols=protocols, seed=seed, device=device, overwrite=overwrite))
