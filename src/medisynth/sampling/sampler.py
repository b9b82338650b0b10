"""The sampler: ``sample(SampleConfig) -> SampleResult``.

Generation goes on until each class has its count or ``max_attempts`` x count images were
tried; the shortfall is reported, never hidden. Every batch is filtered and written before
the next is generated.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path

import torch

from medisynth.data.images import float_to_uint8
from medisynth.device import resolve_device
from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir, read_json
from medisynth.progress import make_progress
from medisynth.provenance import Provenance
from medisynth.sampling.config import SampleConfig, SampleResult
from medisynth.sampling.filters import Filters, check_options
from medisynth.sampling.formats import IntensityWindow, check_format
from medisynth.sampling.plan import Job, plan_jobs
from medisynth.sampling.writer import SampleWriter


def sample(config: SampleConfig) -> SampleResult:
    """Generate images from a trained run into a new image folder (``config.out``).

    The folder (images/, labels.csv, grid.png, sample.json) is what ``medisynth prepare``
    (csv source), ``evaluate`` and ``utility`` read. Raises MedisynthError on a bad request
    (unknown class, a filter or option the model does not support, an existing ``out``)."""
    started = time.perf_counter()
    if config.batch_size < 1:
        raise MedisynthError(f"--batch-size must be at least 1 (got {config.batch_size})")
    if config.max_attempts < 1:
        raise MedisynthError(f"max_attempts must be at least 1 (got {config.max_attempts})")
    device = resolve_device(config.device)
    jobs, run = plan_jobs(config, device)
    options = {id(j.model): check_options(config, j.model.model) for j in jobs}
    filters = Filters.build(config, run, jobs, device)
    for job in jobs:
        check_format(config.format, job.model.model.spec.channels)
    window = _intensity_window(run) if config.format != "png" else None

    requested = {j.label: j.count for j in jobs}
    # what every image says about itself (PNG text chunks, labels.csv, sample.json): medisynth.provenance
    record = Provenance(run.info.get("model", ""), str(Path(config.run)), run.id, 0, config.seed, "")
    written: dict[str, int] = {}
    attempts: dict[str, int] = {}
    passed: dict[str, int] = {}  # images that passed the filters (some beyond the count are not written)
    progress = make_progress()
    progress.disable = progress.disable or not config.progress
    with atomic_dir(Path(config.out), overwrite=config.overwrite) as tmp, progress:
        task = progress.add_task("sampling", total=sum(requested.values()), status="")
        with SampleWriter(tmp, filters.columns, run.info.get("model", ""), str(Path(config.run)), config.seed,
                          config.format, window) as writer:
            for job in jobs:
                provenance = dataclasses.replace(record, checkpoint_step=job.model.step, class_name=job.label)
                done, tried, accepted = _sample_job(job, config, options[id(job.model)], filters, device, writer,
                                                    provenance, lambda: progress.advance(task))
                written[job.label], attempts[job.label], passed[job.label] = done, tried, accepted
                writer.end_class()
            acceptance = {k: (passed[k] / attempts[k] if attempts[k] else 0.0) for k in written}
            shortfall = {k: requested[k] - written[k] for k in written if written[k] < requested[k]}
            writer.finish({
                "run": str(Path(config.run)), "model": run.info.get("model"), "seed": config.seed,
                "request": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()},
                "requested": requested, "written": written, "attempts": attempts, "acceptance": acceptance,
                "shortfall": shortfall, "checkpoint_steps": {j.label: j.model.step for j in jobs},
                "provenance": {k: v for k, v in record.fields().items() if k not in ("class", "checkpoint_step")},
            })
    if shortfall:
        print(
            "warning: fewer images than asked for "
            + ", ".join(f"{k}: {written[k]}/{requested[k]} (acceptance {acceptance[k]:.1%})" for k in shortfall)
            + f" after {config.max_attempts:g}x attempts; lower --min-d-score / --min-confidence or raise --max-similarity",
            file=sys.stderr,
        )
    return SampleResult(Path(config.out), requested, written, attempts, acceptance, shortfall,
                        time.perf_counter() - started)


def _intensity_window(run) -> IntensityWindow:
    """DICOM/NIfTI intensities follow the CT window of the run's data set (the identity when it was not CT)."""
    manifest = Path(run.data) / "manifest.json"
    if not manifest.is_file():
        print(f"warning: the run's data set {run.data} is not there; DICOM/NIfTI intensities are written as 0..255 "
              "(no CT window)", file=sys.stderr)
        return IntensityWindow()
    return IntensityWindow.of_data(read_json(manifest))


def _sample_job(job: Job, config: SampleConfig, options: dict, filters: Filters, device: torch.device,
                writer: SampleWriter, provenance: Provenance, advance) -> tuple[int, int, int]:
    """Generate, filter and write one class's images; return (written, tried, passed the filters)."""
    model = job.model.model
    generator = torch.Generator(device).manual_seed(config.seed * 1000 + job.class_index + 1)
    limit = math.ceil(config.max_attempts * job.count)
    done = tried = accepted = 0
    while done < job.count and tried < limit:
        # without filters every image is kept: generate no more than are still missing
        size = config.batch_size if filters.active else min(config.batch_size, job.count - done)
        labels = torch.full((size,), max(job.class_index, 0), dtype=torch.long, device=device)
        with torch.no_grad():
            images = model.generate(labels, generator=generator, truncation=config.truncation, **options)
            keep, scores = filters.on_model_output(model, images, labels)
        tried += size
        uint8 = float_to_uint8(images).cpu().numpy()
        del images
        keep_pixels, pixel_scores = filters.on_pixels(uint8, job.class_index)
        keep &= keep_pixels
        scores += pixel_scores
        accepted += int(keep.sum())
        for i in torch.nonzero(keep).flatten().tolist()[: job.count - done]:
            done += 1
            writer.write(job.label, job.class_index, done, uint8[i], [float(s[i]) for s in scores], provenance)
            advance()
        writer.end_batch()
    return done, tried, accepted
