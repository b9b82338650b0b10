"""Commands: ``medisynth train`` and ``medisynth sample`` (thin: build a config, call the API)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from medisynth.cli.app import app
from medisynth.cli.flags import with_aliases
from medisynth.defaults import SAMPLE


@app.command(cls=with_aliases({"--per-class": "--model-per-class", "--no-per-class": "--no-model-per-class"}))
def train(
    data: Optional[Path] = typer.Argument(None, metavar="DATA", help="prepared data set (from `medisynth prepare`)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="model name (default fastgan): fastgan, dcgan, cgan, wgan-gp, vae, diffusion, ..."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="run folder to create"),
    epochs: Optional[int] = typer.Option(None, help="budget: passes over the train split"),
    steps: Optional[int] = typer.Option(None, help="budget: optimisation steps"),
    minutes: Optional[float] = typer.Option(None, help="budget: wall-clock minutes"),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b",
                                             help="images per step (default: the model's; fastgan 8, the others 64)"),
    lr: Optional[float] = typer.Option(None, help="learning rate (models with one optimiser)"),
    lr_g: Optional[float] = typer.Option(None, "--lr-g", help="generator learning rate"),
    lr_d: Optional[float] = typer.Option(None, "--lr-d", help="discriminator/critic learning rate"),
    latent_dim: Optional[int] = typer.Option(None, "--latent-dim"),
    hp: Optional[List[str]] = typer.Option(None, "--hp", help="model hyper-parameter key=value (repeatable)"),
    seed: Optional[int] = typer.Option(None),
    ema_decay: Optional[float] = typer.Option(None, "--ema-decay", help="EMA of the generator (0 = off; default 0.999)"),
    checkpoint_every: Optional[str] = typer.Option(None, "--checkpoint-every", help="steps (1000) or a duration (30s, 5m, 1h); default 10m"),
    sample_every: Optional[str] = typer.Option(None, "--sample-every", help="sample grids: steps or a duration; 0 = only at the end; default 5m"),
    log_every: Optional[str] = typer.Option(None, "--log-every", help="metrics lines: steps or a duration; default 10s"),
    per_class: Optional[bool] = typer.Option(
        None, "--model-per-class/--no-model-per-class", help="one model per class (unconditional models)"),
    class_draws: Optional[str] = typer.Option(
        None, "--class-draws", help="how batches draw classes: uniform (as the data has them; default), sqrt "
        "(shares by the square root of the class sizes) or balanced (every class equally often)"),
    target: Optional[str] = typer.Option(None, help="images (default) or masks (learn vessel masks as images)"),
    device: Optional[str] = typer.Option(None, help="auto (default), cpu, cuda, cuda:N"),
    amp: Optional[bool] = typer.Option(None, "--amp/--no-amp", help="bf16 mixed precision on CUDA (default on)"),
    cpu_amp: Optional[bool] = typer.Option(None, "--cpu-amp/--no-cpu-amp",
                                           help="bf16 mixed precision on the CPU too (default off; README: Mixed precision)"),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: torch's choice)"),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="live progress bar on a terminal (default on)"),
    config: Optional[Path] = typer.Option(None, "--config", help="run.yaml / run.json with these settings; flags override it"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="continue this run folder (optionally with a new budget)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an earlier run of medisynth at --out"),
    on_nan: Optional[str] = typer.Option(None, "--on-nan", help="on a non-finite loss: rollback (default: once, to the "
                                         "last good checkpoint with halved learning rates, then stop) or stop"),
) -> None:
    """Train a model on a prepared data set; checkpoints, metrics.jsonl, loss.png and sample grids go to --out."""
    from medisynth.training.config import TrainConfig, load_config_file, parse_hp
    from medisynth.training.trainer import train as run_training

    values = load_config_file(config) if config else {}
    flags = dict(
        data=data, model=model, out=out, epochs=epochs, steps=steps, minutes=minutes, batch_size=batch_size,
        lr=lr, lr_g=lr_g, lr_d=lr_d, latent_dim=latent_dim, seed=seed, ema_decay=ema_decay,
        checkpoint_every=checkpoint_every, sample_every=sample_every, log_every=log_every, per_class=per_class,
        class_draws=class_draws, target=target, device=device, amp=amp, cpu_amp=cpu_amp, threads=threads, progress=progress,
        resume=resume, on_nan=on_nan,
    )
    values.update({k: v for k, v in flags.items() if v is not None})
    if hp:
        values["hyper"] = {**(values.get("hyper") or {}), **parse_hp(hp)}
    if overwrite:
        values["overwrite"] = True
    from medisynth.training import distributed

    try:
        result = run_training(TrainConfig.from_dict(values, source=str(config) if config else "flags"))
    finally:
        distributed.teardown()  # under torchrun: leave the process group (no-op otherwise)
    if distributed.is_main():
        typer.echo(result.summary())


@app.command(cls=with_aliases({"--steps": "--sampling-steps"}))
def sample(
    run: Path = typer.Argument(..., help="run folder (from `medisynth train`)"),
    out: Path = typer.Option(..., "--out", "-o", help="image folder to create: images/, labels.csv, grid.png"),
    n: Optional[int] = typer.Option(None, "--n", help="number of images (split equally over classes for conditional models)"),
    per_class: Optional[str] = typer.Option(None, "--per-class", help="CLASS=COUNT pairs, class by name or index: 3=500,4=500"),
    truncation: float = typer.Option(SAMPLE["truncation"], help="truncation psi (models with the truncation trick)"),
    min_d_score: Optional[float] = typer.Option(None, "--min-d-score", help="keep images the discriminator scores >= this"),
    min_confidence: Optional[float] = typer.Option(
        None, "--min-confidence", help="keep images the domain classifier (trained on the run's real data) puts in their class with probability >= this"
    ),
    max_similarity: Optional[float] = typer.Option(None, "--max-similarity", help="drop copies of training images: correlation after aligning flip, zoom, rotation and shift at least this (evaluate prints the data set's calibrated threshold)"),
    max_attempts: float = typer.Option(SAMPLE["max_attempts"], "--max-attempts", help="with filters: try at most this many x the count per class"),
    seed: int = typer.Option(SAMPLE["seed"]),
    batch_size: int = typer.Option(SAMPLE["batch_size"], "--batch-size", "-b"),
    device: str = typer.Option(SAMPLE["device"]),
    ema: bool = typer.Option(True, "--ema/--no-ema", help="sample with the EMA of the networks (--no-ema: the live networks)"),
    guidance_scale: Optional[float] = typer.Option(None, "--guidance-scale", help="diffusion: classifier-free guidance"),
    sampling_steps: Optional[int] = typer.Option(None, "--sampling-steps", help="diffusion: denoising steps per image"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar on stderr"),
    image_format: str = typer.Option(SAMPLE["format"], "--format", help="image files: png, dicom (Secondary Capture) or nifti (one slice stack per class); grayscale or RGB"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out folder"),
) -> None:
    """Generate synthetic images (per class) from a trained run into an image folder `prepare` reads back.

    Exits with status 3 when fewer images than asked for were written (the accepted ones are kept)."""
    from medisynth.sampling import SampleConfig, parse_per_class
    from medisynth.sampling.config import SHORTFALL_EXIT_STATUS
    from medisynth.sampling import sample as run_sampling

    from medisynth.training import distributed

    try:
        result = run_sampling(SampleConfig(
            run=run, out=out, n=n, per_class=parse_per_class(per_class) if per_class else None, truncation=truncation,
            min_d_score=min_d_score, min_confidence=min_confidence, max_similarity=max_similarity, max_attempts=max_attempts, seed=seed,
            batch_size=batch_size, device=device, ema=ema, guidance_scale=guidance_scale, steps=sampling_steps,
            progress=progress, format=image_format, overwrite=overwrite,
        ))
    finally:
        distributed.teardown()  # under torchrun: leave the process group (no-op otherwise)
    if not distributed.is_main():
        return
    typer.echo(result.summary())
    if not result.complete:
        typer.echo(f"shortfall: {sum(result.shortfall.values())} image(s) fewer than asked for; "
                   f"exit status {SHORTFALL_EXIT_STATUS}", err=True)
        raise typer.Exit(SHORTFALL_EXIT_STATUS)
