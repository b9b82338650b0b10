"""Synthetic images from a trained run: ``sample(SampleConfig) -> SampleResult``.

Writes an image folder that ``medisynth prepare`` reads back (csv source)::

    DIR/images/syn_<class>_000001.png ...
    DIR/labels.csv   image,label,class_index,synthetic,model,run,seed[,d_score]
    DIR/grid.png     the first 8 images of each class, one row per class
    DIR/sample.json  what was asked, what was written, acceptance rates, seed

How many of which class:
- ``per_class={"3": 500, "Cyst": 20, 4: 10}``: class by name (first) or index;
- ``n=N``: a conditional model or a --per-class run splits N equally over its classes
  (the remainder goes to the lowest class indices); a single unconditional model
  trained on several classes cannot choose a class, so its images are labelled
  ``unlabelled`` (class_index -1) and per-class requests are refused.

Filters: ``min_d_score`` keeps images the discriminator scores at least that high
(seed paper 000 keeps D(G(z)) >= 0.76); ``max_similarity`` drops near-copies of
training images (``medisynth.metrics.memorization.NearCopyFilter``). Generation goes
on until each class has its count or ``max_attempts`` x count images were tried;
the shortfall is reported, never hidden.

Streams: every batch is written and dropped (100,000 images never sit in memory);
the folder appears atomically when everything is written.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image

from medisynth.data.dataset import PreparedDataset, float_to_uint8
from medisynth.device import resolve_device
from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir, save_png, write_json
from medisynth.models.base import GenerativeModel
from medisynth.runs import LoadedRun, Run
from medisynth.training.logging import image_grid

UNLABELLED = "unlabelled"
GRID_COLUMNS = 8


@dataclass
class SampleConfig:
    run: Path
    out: Path
    n: Optional[int] = None
    per_class: Optional[dict[Any, int]] = None  # class name or index -> count
    truncation: float = 1.0
    min_d_score: Optional[float] = None
    max_similarity: Optional[float] = None
    min_confidence: Optional[float] = None  # domain-classifier probability of the sampled class
    max_attempts: float = 20.0  # per class: try at most this many times the requested count
    seed: int = 0
    batch_size: int = 64
    device: str = "auto"
    ema: bool = True  # use the EMA networks when the run has them
    guidance_scale: Optional[float] = None  # model sampling options (diffusion)
    steps: Optional[int] = None
    overwrite: bool = False
    progress: bool = True


@dataclass
class SampleResult:
    out: Path
    requested: dict[str, int]
    written: dict[str, int]
    attempts: dict[str, int]
    acceptance: dict[str, float]
    shortfall: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [f"wrote {sum(self.written.values())} images to {self.out} in {self.seconds:.1f} s"]
        for name, count in self.written.items():
            rate = self.acceptance.get(name, 1.0)
            lines.append(f"  {name}: {count}/{self.requested[name]} (acceptance {rate:.1%} of {self.attempts[name]} tried)")
        return "\n".join(lines)


@dataclass
class _Job:
    label: str  # class name written to labels.csv
    class_index: int  # -1 for unlabelled
    count: int
    model: LoadedRun


def resolve_class(key: Any, class_names: list[str], run: Path) -> int:
    """A class given by name (tried first) or index."""
    text = str(key).strip()
    if text in class_names:
        return class_names.index(text)
    if re.fullmatch(r"\d+", text) and int(text) < len(class_names):
        return int(text)
    raise MedisynthError(
        f"class {text!r} is not a class of {run}; its classes are "
        + ", ".join(f"{i}={name}" for i, name in enumerate(class_names))
    )


def parse_per_class(text: str) -> dict[str, int]:
    """'3=500,4=500' -> {'3': 500, '4': 500}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.rpartition("=")
        if not sep or not key or not value.strip().isdigit():
            raise MedisynthError(f"--per-class {text!r}: expected CLASS=COUNT pairs, e.g. --per-class 3=500,4=500")
        out[key.strip()] = int(value)
    return out


def _equal_split(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def plan_jobs(config: SampleConfig, device: torch.device) -> tuple[list[_Job], Run]:
    """What to generate: one job per class (with the model that makes it), and the run."""
    opened = Run.open(config.run)
    run, info = opened.path, opened.info
    if (config.n is None) == (config.per_class is None):
        raise MedisynthError("say how many images: --n N, or --per-class CLASS=COUNT[,CLASS=COUNT...] (one of them)")
    if config.n is not None and config.n < 1:
        raise MedisynthError(f"--n must be at least 1 (got {config.n})")

    if info.get("per_class"):
        class_names = list(info["class_names"])
        available = opened.class_runs()
        models: dict[int, LoadedRun] = {}

        def model_for(index: int) -> LoadedRun:
            if index not in available:
                raise MedisynthError(f"{run} has no model for class {class_names[index]!r} (it had no training images)")
            if index not in models:
                models[index] = Run.open(available[index].path).load(device, config.ema)
            return models[index]

        indices = sorted(available)
        if config.per_class is not None:
            wanted = {resolve_class(k, class_names, run): v for k, v in config.per_class.items()}
        else:
            wanted = dict(zip(indices, _equal_split(config.n, len(indices))))
        jobs = [_Job(class_names[i], i, c, model_for(i)) for i, c in sorted(wanted.items()) if c > 0]
        return jobs, opened

    loaded = opened.load(device, config.ema)
    class_names = loaded.model.spec.class_names
    if loaded.model.conditional:
        if config.per_class is not None:
            wanted = {resolve_class(k, class_names, run): v for k, v in config.per_class.items()}
        else:
            wanted = dict(enumerate(_equal_split(config.n, len(class_names))))
        return [_Job(class_names[i], i, c, loaded) for i, c in sorted(wanted.items()) if c > 0], opened

    # one unconditional model: it makes "its" class only when it was trained on one class
    own = info.get("class_index")
    if own is None and len(class_names) == 1:
        own = 0
    if config.per_class is not None:
        if own is None:
            raise MedisynthError(
                f"{run} is one unconditional {info['model']!r} model trained on all classes: it cannot make a "
                f"chosen class. Use --n N (images labelled {UNLABELLED!r}), or train with --per-class "
                f"(one model per class) or a conditional model (e.g. cgan)"
            )
        wanted = {resolve_class(k, class_names, run): v for k, v in config.per_class.items()}
        if set(wanted) - {own}:
            raise MedisynthError(f"{run} makes class {class_names[own]!r} only; ask for that class")
        return [_Job(class_names[own], own, wanted[own], loaded)], opened
    if own is None:
        return [_Job(UNLABELLED, -1, config.n, loaded)], opened
    return [_Job(class_names[own], own, config.n, loaded)], opened


def _check_options(config: SampleConfig, model: GenerativeModel) -> dict[str, Any]:
    if model.needs_masks:
        raise MedisynthError(
            f"model {model.name!r} translates masks into images; `medisynth sample` does not drive it: "
            f"use the vessel pipeline (`medisynth pipeline`)"
        )
    if config.truncation != 1.0 and not model.supports_truncation:
        raise MedisynthError(f"--truncation: model {model.name!r} has no truncation trick; drop --truncation")
    if config.truncation <= 0:
        raise MedisynthError(f"--truncation must be positive (got {config.truncation})")
    if config.min_d_score is not None and not model.has_discriminator:
        raise MedisynthError(
            f"--min-d-score: model {model.name!r} has no discriminator that gives probabilities (a Wasserstein "
            "critic does not); use a dcgan or cgan run, or --min-confidence for a conditional model"
        )
    options = {}
    for name in ("guidance_scale", "steps"):
        value = getattr(config, name)
        if value is None:
            continue
        if name not in model.sampling_options:
            flag = "--" + name.replace("_", "-")
            raise MedisynthError(
                f"{flag}: model {model.name!r} has no such sampling option"
                + (f" (it has: {', '.join(model.sampling_options)})" if model.sampling_options else "")
            )
        options[name] = value
    return options


def _reference_images(run: Run) -> np.ndarray:
    """Training images (uint8 N x H x W x C) the near-copy filter compares against."""
    data = run.data
    if not (data / "manifest.json").is_file():
        raise MedisynthError(
            f"--max-similarity compares with the training images, but the run's data set {data} is not there; "
            f"put it back at that path"
        )
    target = run.config.get("target", "images")
    dataset = PreparedDataset(data, split="train", with_masks=target == "masks")
    return dataset.masks_uint8()[..., None] if target == "masks" else dataset.images_uint8()


def _near_copy_filter(reference: np.ndarray, threshold: float):
    try:
        from medisynth.metrics.memorization import NearCopyFilter
    except ImportError as e:
        raise MedisynthError(f"--max-similarity needs medisynth.metrics.memorization ({e})") from None
    return NearCopyFilter(reference, threshold=threshold)


def _confidence_classifier(run: Run, device: torch.device, progress: bool):
    """The domain classifier of the run's training data (trained once, then cached by content hash)."""
    from medisynth.classifier import domain_classifier

    data = run.data
    if not (data / "manifest.json").is_file():
        raise MedisynthError(
            f"--min-confidence asks a classifier trained on the run's data set, but {data} is not there; "
            "put it back at that path"
        )
    return domain_classifier(data, device=device, progress=progress)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "class"


def write_png(path: Path, image: np.ndarray) -> None:
    """uint8 C x H x W -> PNG (inside the atomic output folder, so no per-file rename needed)."""
    array = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG", compress_level=4)


# -- the sampler -----------------------------------------------------------------
def sample(config: SampleConfig) -> SampleResult:
    started = time.perf_counter()
    if config.batch_size < 1:
        raise MedisynthError(f"--batch-size must be at least 1 (got {config.batch_size})")
    if config.max_attempts < 1:
        raise MedisynthError(f"max_attempts must be at least 1 (got {config.max_attempts})")
    device = resolve_device(config.device)
    jobs, opened = plan_jobs(config, device)
    info = opened.info
    options = {id(j.model): _check_options(config, j.model.model) for j in jobs}
    run = Path(config.run)
    near_copy = None
    if config.max_similarity is not None:
        near_copy = _near_copy_filter(_reference_images(opened), config.max_similarity)

    confidence_model = None
    if config.min_confidence is not None:
        if not 0.0 <= config.min_confidence <= 1.0:
            raise MedisynthError(f"--min-confidence must be a probability in [0, 1] (got {config.min_confidence})")
        if any(j.class_index < 0 for j in jobs):
            raise MedisynthError("--min-confidence needs labelled samples: use a conditional model or a --per-class run")
        confidence_model = _confidence_classifier(opened, device, config.progress)

    columns = ["image", "label", "class_index", "synthetic", "model", "run", "seed"]
    if config.min_d_score is not None:
        columns.append("d_score")
    if confidence_model is not None:
        columns.append("confidence")
    requested = {j.label: j.count for j in jobs}
    written: dict[str, int] = {}
    attempts: dict[str, int] = {}
    passed: dict[str, int] = {}  # images that passed the filters (some beyond the count are not written)
    grid_images: list[np.ndarray] = []
    grid_rows = 0

    from medisynth.progress import make_progress

    progress = make_progress()
    progress.disable = progress.disable or not config.progress
    with atomic_dir(Path(config.out), overwrite=config.overwrite) as tmp, progress:
        (tmp / "images").mkdir()
        task = progress.add_task("sampling", total=sum(requested.values()), status="")
        with open(tmp / "labels.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for job in jobs:
                model = job.model.model
                generator = torch.Generator(device).manual_seed(config.seed * 1000 + job.class_index + 1)
                limit = math.ceil(config.max_attempts * job.count)
                filtering = config.min_d_score is not None or near_copy is not None or confidence_model is not None
                done = tried = accepted = 0
                row_images: list[np.ndarray] = []
                while done < job.count and tried < limit:
                    size = config.batch_size if filtering else min(config.batch_size, job.count - done)
                    labels = torch.full((size,), max(job.class_index, 0), dtype=torch.long, device=device)
                    with torch.no_grad():
                        images = model.generate(labels, generator=generator, truncation=config.truncation,
                                                **options[id(job.model)])
                        keep = torch.ones(size, dtype=torch.bool)
                        scores = None
                        if config.min_d_score is not None:
                            scores = model.discriminator_score(images, labels).float().flatten().cpu()
                            keep &= scores >= config.min_d_score
                    tried += size
                    uint8 = float_to_uint8(images).cpu().numpy()
                    del images
                    if near_copy is not None:
                        keep &= torch.from_numpy(np.asarray(near_copy.keep(uint8), dtype=bool))
                    confidence = None
                    if confidence_model is not None:
                        from medisynth.classifier import predict_proba

                        confidence = torch.from_numpy(predict_proba(confidence_model, uint8, device=device)[:, job.class_index])
                        keep &= confidence >= config.min_confidence
                    accepted += int(keep.sum())
                    for i in torch.nonzero(keep).flatten().tolist()[: job.count - done]:
                        done += 1
                        image_id = f"syn_{_safe(job.label)}_{done:06d}"
                        write_png(tmp / "images" / f"{image_id}.png", uint8[i])
                        row = [image_id, job.label, job.class_index, 1, info.get("model", ""), str(run), config.seed]
                        if scores is not None:
                            row.append(f"{float(scores[i]):.6f}")
                        if confidence is not None:
                            row.append(f"{float(confidence[i]):.6f}")
                        writer.writerow(row)
                        if len(row_images) < GRID_COLUMNS:
                            row_images.append(uint8[i])
                        progress.advance(task)
                    f.flush()
                written[job.label], attempts[job.label], passed[job.label] = done, tried, accepted
                if row_images:
                    grid_rows += 1
                    grid_images += row_images + [np.zeros_like(row_images[0])] * (GRID_COLUMNS - len(row_images))
        if grid_images:
            grid = torch.from_numpy(np.stack(grid_images)).float().div(127.5).sub(1.0)
            save_png(tmp / "grid.png", image_grid(grid, nrow=GRID_COLUMNS))
        acceptance = {k: (passed[k] / attempts[k] if attempts[k] else 0.0) for k in written}
        shortfall = {k: requested[k] - written[k] for k in written if written[k] < requested[k]}
        write_json(tmp / "sample.json", {
            "run": str(run), "model": info.get("model"), "seed": config.seed,
            "request": {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(config).items()},
            "requested": requested, "written": written, "attempts": attempts, "acceptance": acceptance,
            "shortfall": shortfall, "checkpoint_steps": {j.label: j.model.step for j in jobs},
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
