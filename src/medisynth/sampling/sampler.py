"""The sampler: ``sample(SampleConfig) -> SampleResult``.

Generation goes on until each class has its count or ``max_attempts`` x count images were
tried, or stops early when the filters accepted none of the first
``zero_acceptance_limit(batch_size)`` images; the shortfall is reported, never hidden. Every batch is filtered and written before
the next is generated.

Batch k of a class draws its noise from a generator seeded by (seed, class, k), so the images
do not depend on how many processes made them: launched by torchrun, rank r generates batches
r, r + N, ... and rank 0 filters, numbers and writes them in batch order into the one output
folder (which appears atomically, as on one process).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medisynth.data.images import float_to_uint8
from medisynth.degenerate import degenerate_images
from medisynth.device import resolve_device
from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir, read_json
from medisynth.progress import make_progress
from medisynth.provenance import Provenance
from medisynth.sampling.config import (
    ZERO_ACCEPTANCE_BATCHES,
    ZERO_ACCEPTANCE_IMAGES,
    SampleConfig,
    SampleResult,
    zero_acceptance_limit,
)
from medisynth.sampling.filters import Filters, check_options
from medisynth.sampling.formats import IntensityWindow, check_format
from medisynth.sampling.plan import Job, plan_jobs
from medisynth.sampling.writer import SampleWriter
from medisynth.training import distributed


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
    device = distributed.setup(resolve_device(config.device))
    main = distributed.is_main()
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
    stopped_early: dict[str, str] = {}
    degenerate: dict[str, int] = {}  # images rejected as constant or non-finite
    progress = make_progress()
    progress.disable = progress.disable or not config.progress or not main
    folder = (atomic_dir(Path(config.out), overwrite=config.overwrite, kind="samples", inputs=(config.run,)) if main
              else contextlib.nullcontext())
    with folder as tmp, progress:
        task = progress.add_task("sampling", total=sum(requested.values()), status="")

        def show(label: str, done: int, tried: int, accepted: int) -> None:
            """Live per-class acceptance: a class at 0% is visible long before it gives up."""
            rate = accepted / tried if tried else 0.0
            progress.update(task, completed=sum(written.values()) + done,
                            status=f"class {label}: {done}/{requested[label]}, acceptance {rate:.1%} of {tried}")

        writer_or_none = (SampleWriter(tmp, filters.columns, run.info.get("model", ""), str(Path(config.run)), config.seed,
                                       config.format, window) if main else contextlib.nullcontext())
        with writer_or_none as writer:
            for job in jobs:
                provenance = dataclasses.replace(record, checkpoint_step=job.model.step, class_name=job.label)
                done, tried, accepted, degenerate[job.label], why = _sample_job(
                    job, config, options[id(job.model)], filters, device, writer, provenance, show)
                written[job.label], attempts[job.label], passed[job.label] = done, tried, accepted
                if why and main:
                    stopped_early[job.label] = why
                    print(f"class {job.label}: {why}", file=sys.stderr, flush=True)
                if writer is not None:
                    writer.end_class()
            acceptance = {k: (passed[k] / attempts[k] if attempts[k] else 0.0) for k in written}
            shortfall = {k: requested[k] - written[k] for k in written if written[k] < requested[k]}
            if writer is not None:
                writer.finish({
                    "run": str(Path(config.run)), "model": run.info.get("model"), "seed": config.seed,
                    "request": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()},
                    "requested": requested, "written": written, "attempts": attempts, "acceptance": acceptance,
                    "shortfall": shortfall, "stopped_early": stopped_early,
                    "checkpoint_steps": {j.label: j.model.step for j in jobs},
                    "provenance": {k: v for k, v in record.fields().items() if k not in ("class", "checkpoint_step")},
                    "degenerate": degenerate,
                })
    if any(degenerate.values()) and main:
        print("warning: rejected " + ", ".join(f"{k}: {v}" for k, v in degenerate.items() if v)
              + " degenerate image(s) (constant or non-finite); the run may have diverged", file=sys.stderr)
    if shortfall and main:
        print(
            "warning: fewer images than asked for "
            + ", ".join(f"{k}: {written[k]}/{requested[k]} (acceptance {acceptance[k]:.1%})" for k in shortfall)
            + "; lower --min-d-score / --min-confidence or raise --max-similarity",
            file=sys.stderr,
        )
    return SampleResult(Path(config.out), requested, written, attempts, acceptance, shortfall,
                        time.perf_counter() - started, stopped_early)


def _intensity_window(run) -> IntensityWindow:
    """DICOM/NIfTI intensities follow the CT window of the run's data set (the identity when it was not CT)."""
    manifest = Path(run.data) / "manifest.json"
    if not manifest.is_file():
        print(f"warning: the run's data set {run.data} is not there; DICOM/NIfTI intensities are written as 0..255 "
              "(no CT window)", file=sys.stderr)
        return IntensityWindow()
    return IntensityWindow.of_data(read_json(manifest))


def _sample_job(job: Job, config: SampleConfig, options: dict, filters: Filters, device: torch.device,
                writer: SampleWriter | None, provenance: Provenance, show) -> tuple[int, int, int, int, str]:
    """Generate, filter and write one class's images.

    Returns (written, tried, passed the filters, degenerate images rejected, why it stopped early or "").
    A class none of whose images passed after ``zero_acceptance_limit`` tries stops there, with a
    message that names the filters and suggests thresholds from the scores it saw.

    On several ranks each generates its batches and rank 0 (the one with a ``writer``) takes them
    in batch order, exactly as one process would; the counts are then shared so all stop together."""
    model = job.model.model
    limit = math.ceil(config.max_attempts * job.count)
    give_up = zero_acceptance_limit(config.batch_size)
    seen: dict[str, list[np.ndarray]] = {"d_score": [], "confidence": []}
    rank, world = distributed.rank(), distributed.world_size()
    done = tried = accepted = degenerate = 0
    why = ""
    first = 0  # the first batch number of this round; rank r makes batch first + r
    while done < job.count and tried < limit and not why:
        number = first + rank
        # without filters (and rejects) every image is kept: generate no more than are still missing
        size = (config.batch_size if filters.active or degenerate
                else max(0, min(config.batch_size, job.count - number * config.batch_size)))
        made = None
        if size:
            # each batch its own seed, so the images do not depend on how many ranks share the work
            generator = torch.Generator(device).manual_seed(
                (config.seed * 1000 + job.class_index + 1) * 1_000_003 + number)
            labels = torch.full((size,), max(job.class_index, 0), dtype=torch.long, device=device)
            with torch.no_grad():
                images = model.generate(labels, generator=generator, truncation=config.truncation, **options)
                keep, scores = filters.on_model_output(model, images, labels)
                bad = degenerate_images(images)  # constant or non-finite: never accepted, whatever the filters
            keep = keep & ~bad
            made = (float_to_uint8(images).cpu().numpy(), keep.cpu(), [t.cpu() for t in scores], int(bad.sum()))
            del images
        batches = distributed.gather_to_main(made)
        if writer is not None:
            for batch in batches:
                if batch is None or done >= job.count or tried >= limit:
                    continue
                uint8, keep, scores, n_bad = batch
                degenerate += n_bad
                tried += len(uint8)
                keep_pixels, pixel_scores = filters.on_pixels(uint8, job.class_index)
                keep = keep & keep_pixels
                scores = scores + pixel_scores
                for name, values in zip(filters.columns, scores):
                    seen[name].append(values.numpy())
                accepted += int(keep.sum())
                for i in torch.nonzero(keep).flatten().tolist()[: job.count - done]:
                    done += 1
                    writer.write(job.label, job.class_index, done, uint8[i], [float(s[i]) for s in scores], provenance)
                writer.end_batch()
            show(job.label, done, tried, accepted)
            if accepted == 0 and tried >= give_up and done < job.count:
                why = _zero_acceptance_message(config, tried, seen)
        done, tried, accepted, degenerate, why = distributed.broadcast_from_main((done, tried, accepted, degenerate, why))
        first += world
    return done, tried, accepted, degenerate, why


def _zero_acceptance_message(config: SampleConfig, tried: int, seen: dict[str, list[np.ndarray]]) -> str:
    """Why a class stopped, and thresholds that would have let about 1 image in 10 through."""
    active = [f"{flag} {value:g}" for flag, value in (("--min-d-score", config.min_d_score),
                                                      ("--min-confidence", config.min_confidence),
                                                      ("--max-similarity", config.max_similarity)) if value is not None]
    hints = []
    for name, flag in (("d_score", "--min-d-score"), ("confidence", "--min-confidence")):
        if seen[name]:
            values = np.concatenate(seen[name])
            hints.append(f"{flag} {np.quantile(values, 0.9):.3g} (the 90th percentile of the {tried} scores seen, "
                         f"range {values.min():.3g}..{values.max():.3g}), which keeps about 1 in 10")
    if config.max_similarity is not None:
        hints.append(f"a higher --max-similarity than {config.max_similarity:g} lets closer copies of training images through")
    return (f"0 of {tried} images passed {', '.join(active)}; stopped early (a class stops after "
            f"max({ZERO_ACCEPTANCE_BATCHES} batches, {ZERO_ACCEPTANCE_IMAGES} images) with none accepted). Try "
            + "; or ".join(hints))
