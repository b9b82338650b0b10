"""Command: ``evaluate`` (synthetic images vs a prepared real data set -> metrics.json + report.html)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medisynth.cli.app import app
from medisynth.cli.flags import DATA, with_aliases
from medisynth.defaults import EVALUATE


@app.command(cls=with_aliases({"--real": DATA, "--fake": "--synthetic", "--num-per-class": "--per-class"}))
def evaluate(
    data: Path = typer.Argument(..., metavar="DATA", help="The prepared real data set (from `medisynth prepare`)."),
    synthetic: Path = typer.Option(..., "--synthetic", help="Synthetic images: an image folder (images/ + labels.csv) or a training run."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder to create (metrics.json, report.html, plots/)."),
    features: str = typer.Option(",".join(EVALUATE["feature_spaces"]), help="Comma-separated feature spaces: inception, domain, ssl, radiomics, pixels (ssl is added when the domain classifier is at chance)."),
    weights: Optional[Path] = typer.Option(None, help="torch-fidelity Inception-v3 weights (.pth); default $MEDISYNTH_INCEPTION_WEIGHTS."),
    real_split: str = typer.Option(EVALUATE["real_split"], help="Real images to compare with: train, val, test or all."),
    per_class: int = typer.Option(EVALUATE["num_per_class"], "--per-class", help="Images per class to sample when --synthetic is a run."),
    max_images: Optional[int] = typer.Option(None, help="Use at most N images of each set (seeded subset)."),
    near_copy_threshold: Optional[float] = typer.Option(
        None, help="Aligned correlation at which a synthetic image counts as a copy (default: calibrated on the train split's units)."),
    min_class_samples: int = typer.Option(EVALUATE["min_class_samples"], help="Per-class distribution metrics need this many images in both sets."),
    kid_subset_size: int = typer.Option(EVALUATE["kid_subset_size"], help="KID subset size (shrinks to the smaller set)."),
    kid_subsets: int = typer.Option(EVALUATE["kid_subsets"], help="Number of KID subsets."),
    prdc_k: int = typer.Option(EVALUATE["prdc_k"], help="k of the nearest-neighbour balls of precision/recall/density/coverage."),
    diversity_pairs: int = typer.Option(EVALUATE["diversity_pairs"], help="Random image pairs for the MS-SSIM diversity figure (per set)."),
    yardstick_repeats: int = typer.Option(EVALUATE["yardstick_repeats"], help="Random draws the real-vs-real yardstick figures are averaged over."),
    bootstrap: int = typer.Option(EVALUATE["bootstrap"], help="Bootstrap resamples of the per-class KID/coverage intervals."),
    utility: Optional[Path] = typer.Option(None, help="A `medisynth utility` report folder; its verdict joins 'class-true & useful'."),
    domain_epochs: Optional[int] = typer.Option(None, help="Epochs of the domain classifier (default: its standard recipe; cached)."),
    domain_width: Optional[int] = typer.Option(None, help="SmallResNet width of the domain classifier (default 32)."),
    domain_augment: Optional[str] = typer.Option(None, help="Augmentation of the domain classifier: classic or none (default classic)."),
    ssl_steps: Optional[int] = typer.Option(None, help="Training steps of the label-free ssl encoder (default: its standard recipe; cached)."),
    cache_dir: Optional[Path] = typer.Option(None, help="Cache folder for the domain classifier (default ~/.cache/medisynth)."),
    device: str = typer.Option(EVALUATE["device"], help="auto, cpu or cuda[:N]."),
    seed: int = typer.Option(EVALUATE["seed"], help="Seed of subsets, pairs and the domain classifier."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bars on stderr."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Are these synthetic images good enough to use? Opens with a verdict (faithful, diverse, private,
    class-true & useful: good / doubtful / poor / cannot tell), then FID/KID/IS/precision/recall/density/coverage
    per feature space beside real-vs-real yardsticks, per-class figures with intervals, CAS against chance,
    SSIM/PSNR/histograms/diversity and memorization; writes an HTML report."""
    from medisynth.evaluation import EvaluateConfig, evaluate as run_evaluate, summary_lines

    config = EvaluateConfig(
        real=data, fake=synthetic, out=out, feature_spaces=tuple(s.strip() for s in features.split(",") if s.strip()),
        weights=weights, real_split=real_split, num_per_class=per_class, max_images=max_images,
        near_copy_threshold=near_copy_threshold, min_class_samples=min_class_samples, kid_subset_size=kid_subset_size,
        kid_subsets=kid_subsets, prdc_k=prdc_k, diversity_pairs=diversity_pairs,
        yardstick_repeats=yardstick_repeats, bootstrap=bootstrap, utility=utility, domain_epochs=domain_epochs, ssl_steps=ssl_steps,
        domain_width=domain_width, domain_augment=domain_augment,
        cache_dir=cache_dir, device=device, seed=seed, overwrite=overwrite, progress=progress,
    )
    from medisynth.training import distributed

    try:
        metrics = run_evaluate(config)
    finally:
        distributed.teardown()  # under torchrun: leave the process group (no-op otherwise)
    if not distributed.is_main():
        return
    for line in summary_lines(metrics):
        typer.echo(line)
    typer.echo(f"report: {out / 'report.html'}")
