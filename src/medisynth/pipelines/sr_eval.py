"""EDSR run vs bicubic upsampling on a prepared data set's held-out images (``medisynth pipeline sr-eval``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional


from medisynth.data.dataset import PreparedDataset, uint8_to_float
from medisynth.device import resolve_device
from medisynth.errors import MedisynthError
from medisynth.io import write_json
from medisynth.models.edsr import evaluate_sr
from medisynth.runs import load_run


def evaluate_sr_run(sr_run: Path, data: Path, split: str = "test", device: str = "auto", out: Optional[Path] = None) -> dict:
    run = load_run(sr_run, resolve_device(device), flag="--sr-run")
    if not hasattr(run.model, "upscale"):
        raise MedisynthError(f"--sr-run {sr_run}: model {run.model.name!r} is not a super-resolution model; give an edsr run")
    dataset = PreparedDataset(data, split=split)
    if len(dataset) == 0:
        raise MedisynthError(f"{data}: the {split} split is empty; choose another --split")
    images, _ = dataset.to_tensor("cpu")
    if images.shape[1] != run.model.spec.channels:
        raise MedisynthError(
            f"{data} has {images.shape[1]}-channel images but the edsr run works on {run.model.spec.channels} channels"
        )
    figures = {}
    chunks = [evaluate_sr(run.model, uint8_to_float(c)) | {"n": len(c)} for c in images.split(8)]
    for key in ("psnr_edsr", "psnr_bicubic", "ssim_edsr", "ssim_bicubic"):
        figures[key] = sum(c[key] * c["n"] for c in chunks) / len(images)
    report = {"sr_run": str(sr_run), "data": str(data), "split": split, "n": len(images),
              "scale": run.model.hyper.scale, **figures}
    if out is not None:
        write_json(Path(out), report)
    return report
