"""``medisynth balance`` and ``medisynth utility``: thin wrappers over medisynth.balancing and medisynth.downstream."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medisynth.cli.app import app
from medisynth.cli.flags import DATA, with_aliases
from medisynth.defaults import BALANCE, UTILITY


@app.command(cls=with_aliases({"--target": "--target-count", "--quiet": "--no-progress", "-q": "--no-progress"}))
def balance(
    data: Path = typer.Argument(..., metavar="DATA", help="prepared data set (from `medisynth prepare`)"),
    run: Path = typer.Option(..., "--run", help="trained run to sample from (from `medisynth train`)"),
    out: Path = typer.Option(..., "--out", "-o", help="image folder to create: images/, labels.csv, balance.json"),
    target_count: Optional[int] = typer.Option(None, "--target-count", help="train images per class to reach (default: the majority count)"),
    ratio: Optional[float] = typer.Option(None, "--ratio", help="each class reaches RATIO x the majority count"),
    min_d_score: Optional[float] = typer.Option(None, "--min-d-score", help="keep synthetic images the discriminator scores >= this"),
    max_similarity: Optional[float] = typer.Option(None, "--max-similarity", help="drop copies of training images: correlation after aligning flip, zoom, rotation and shift at least this (evaluate prints the data set's calibrated threshold)"),
    seed: int = typer.Option(BALANCE["seed"]),
    batch_size: int = typer.Option(BALANCE["batch_size"], "--batch-size", "-b"),
    device: str = typer.Option(BALANCE["device"], help="auto (default), cpu, cuda, cuda:N"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out folder"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bars on stderr"),
) -> None:
    """Top up every class of the TRAIN split with synthetic images (val/test stay real and unchanged)."""
    from medisynth.balancing import BalanceConfig
    from medisynth.balancing import balance as run_balance

    result = run_balance(BalanceConfig(
        data=data, run=run, out=out, target=target_count, ratio=ratio, min_d_score=min_d_score,
        max_similarity=max_similarity, seed=seed, device=device, batch_size=batch_size,
        overwrite=overwrite, progress=progress,
    ))
    print(result.summary())


@app.command(cls=with_aliases({"--real": DATA, "--quiet": "--no-progress", "-q": "--no-progress"}))
def utility(
    data: Path = typer.Argument(..., metavar="DATA", help="prepared real data set (its val and test splits are used as is)"),
    synthetic: Optional[Path] = typer.Option(None, "--synthetic", help="synthetic image folder (from `medisynth sample` or `balance`)"),
    out: Path = typer.Option(..., "--out", "-o", help="report folder to create: utility.json/.md/.html/.png"),
    test_data: Optional[Path] = typer.Option(
        None, "--test-data", help="a second prepared set, every image of which is the test set (an external test "
        "set: another site, or more held-out images); default: DATA's test split"),
    protocols: Optional[str] = typer.Option(
        None, "--protocols", help="comma list of: real, real-aug, real-balanced, real-balanced-aug (oversampling and augmentation), "
        "real-weighted, real+synthetic, "
        "real-balanced+synthetic (every class drawn equally, half of its draws synthetic), synthetic "
        "(default: real, real-balanced, real-weighted, and with --synthetic real+synthetic, synthetic)"),
    verdict_protocol: str = typer.Option(
        UTILITY["verdict_protocol"], "--verdict-protocol", help="the protocol with synthetic images that the verdict judges "
        "against the best baseline without them (real+synthetic, the top-up, or real-balanced+synthetic, the mix)"),
    seeds: int = typer.Option(UTILITY["seeds"], "--seeds", help="runs per protocol (paired across protocols)"),
    epochs: int = typer.Option(UTILITY["epochs"], "--epochs", help="maximum epochs per run (early stopping on real val)"),
    patience: int = typer.Option(UTILITY["patience"], "--patience", help="stop after this many epochs without a better val balanced accuracy (counted once it is above chance)"),
    batch_size: int = typer.Option(UTILITY["batch_size"], "--batch-size", "-b"),
    lr: float = typer.Option(UTILITY["lr"], "--lr"),
    time_budget_per_run: Optional[float] = typer.Option(None, "--time-budget-per-run", help="seconds per training run"),
    model: str = typer.Option(UTILITY["model"], "--model", help="small-resnet (from scratch) or resnet18"),
    width: int = typer.Option(UTILITY["width"], "--width", help="small-resnet base width"),
    weights: Optional[Path] = typer.Option(None, "--weights", help="local ResNet-18 weights (.safetensors or .pth) for --model resnet18"),
    device: str = typer.Option(UTILITY["device"], help="auto (default), cpu, cuda, cuda:N"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out folder"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress output on stderr"),
) -> None:
    """Does adding synthetic images help a classifier on the REAL test split? Trains per protocol and seed."""
    from medisynth.downstream import UtilityConfig, run_utility
    from medisynth.downstream.report import terminal_summary

    from medisynth.training import distributed

    try:
        results = run_utility(UtilityConfig(
            real=data, synthetic=synthetic, out=out, test_data=test_data,
            protocols=tuple(p.strip() for p in protocols.split(",") if p.strip()) if protocols is not None else None,
            verdict_protocol=verdict_protocol, seeds=seeds, epochs=epochs, patience=patience, batch_size=batch_size, lr=lr,
            time_budget_per_run_s=time_budget_per_run, model=model, width=width, weights=weights,
            device=device, overwrite=overwrite, progress=progress,
        ))
    finally:
        distributed.teardown()  # under torchrun: leave the process group (no-op otherwise)
    if distributed.is_main():
        terminal_summary(results, out / "utility.html")
