"""Commands: ``pipeline vessels`` (vessel tree -> fundus pairs), ``pipeline vessels-eval``, ``pipeline sr-eval``."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from medisynth.cli.app import app
from medisynth.cli.flags import DATA, Command, Group, with_aliases

pipeline_app = typer.Typer(
    help="Multi-model pipelines: synthetic fundus photographs with their vessel annotations (seed 003).",
    no_args_is_help=True,
    cls=Group,
)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("vessels", cls=Command)
def vessels(
    vessel_run: Path = typer.Option(..., "--vessel-run", help="Run trained on vessel masks (train --model resvae --target masks)."),
    translate_run: Path = typer.Option(..., "--translate-run", help="pix2pix run (vessel mask -> fundus photograph)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the pairs to (DRIVE layout)."),
    n: int = typer.Option(20, "--n", help="Number of image + vessel-mask pairs."),
    sr_run: Optional[Path] = typer.Option(None, "--sr-run", help="edsr run to upsample the photographs (x2: 512 -> 1024)."),
    seed: int = typer.Option(0, help="Seed of the vessel sampling."),
    device: str = typer.Option("auto", help="auto, cpu or cuda[:N]."),
    threshold: Optional[float] = typer.Option(None, help="Fixed vessel threshold in (0, 1) after deconvolution (default: Otsu)."),
    psf_sigma: float = typer.Option(1.0, help="Gaussian PSF sigma (px) that Richardson-Lucy deconvolution undoes."),
    iterations: int = typer.Option(20, help="Richardson-Lucy iterations (0 = threshold the raw map)."),
    min_size: Optional[int] = typer.Option(None, help="Smallest vessel component kept, in pixels (default: 30 at 512 px)."),
    thin: int = typer.Option(0, "--thin", help="Connectivity-preserving thinning passes after thresholding."),
    fov: str = typer.Option("circle", help="Field-of-view mask: circle (inscribed disc) or image (from the photograph)."),
    label: Optional[str] = typer.Option(None, help="Class of a conditional vessel run to sample (default: the first)."),
    batch_size: int = typer.Option(8, help="Maps per batch through the networks."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
    image_format: str = typer.Option("png", "--format", help="Image files: png, dicom (Secondary Capture) or nifti "
                                     "(one-slice stack); one file per image, same DRIVE layout."),
) -> None:
    """Sample vessel trees, clean them, translate them to fundus photographs (and upsample): N pairs."""
    from medisynth.pipelines.denoise import DenoiseOptions
    from medisynth.pipelines.vessels import VesselPipelineConfig, run_pipeline

    config = VesselPipelineConfig(
        vessel_run=vessel_run, translate_run=translate_run, out=out, n=n, sr_run=sr_run, seed=seed, device=device,
        denoise=DenoiseOptions(psf_sigma=psf_sigma, iterations=iterations, threshold=threshold, min_size=min_size,
                               thin_iterations=thin),
        fov=fov, label=label, batch_size=batch_size, overwrite=overwrite, format=image_format,
    )
    print(run_pipeline(config).summary())


@pipeline_app.command("vessels-eval", cls=with_aliases({"--real": DATA}))
def vessels_eval(
    data: Path = typer.Argument(..., metavar="DATA", help="Real pairs: a prepared data set with masks, or a DRIVE/HRF folder."),
    synthetic: Path = typer.Option(..., "--synthetic", help="Synthetic pairs (the --out of `pipeline vessels`)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON report to write."),
    size: int = typer.Option(512, help="Both sets are compared at this size."),
    reference_index: int = typer.Option(0, help="Index of the real image used as the SSIM reference."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """SSIM to a reference image (seed 003's protocol) and vessel statistics, synthetic against real."""
    from medisynth.pipelines.vessel_stats import VesselEvalConfig, evaluate_vessel_pairs, format_report

    report = evaluate_vessel_pairs(VesselEvalConfig(data, synthetic, out, size, reference_index, overwrite))
    print(format_report(report))
    if out is not None:
        print(f"report written to {out}")


@pipeline_app.command("sr-eval", cls=with_aliases({"--data": DATA}))
def sr_eval(
    data: Path = typer.Argument(..., metavar="DATA", help="Prepared data set of high-resolution images."),
    sr_run: Path = typer.Option(..., "--sr-run", help="edsr run."),
    split: str = typer.Option("test", help="Split whose images are the high-resolution references."),
    device: str = typer.Option("auto", help="auto, cpu or cuda[:N]."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="JSON report to write."),
) -> None:
    """PSNR / SSIM of EDSR against bicubic upsampling on bicubic-downsampled images of DATA."""
    from medisynth.pipelines.sr_eval import evaluate_sr_run

    report = evaluate_sr_run(sr_run, data, split, device, out)
    print(
        f"x{report['scale']} on {report['n']} {split} images: PSNR edsr {report['psnr_edsr']:.2f} dB vs bicubic "
        f"{report['psnr_bicubic']:.2f} dB; SSIM edsr {report['ssim_edsr']:.4f} vs bicubic {report['ssim_bicubic']:.4f}"
    )
