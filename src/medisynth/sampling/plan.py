"""Planning: which classes to generate, how many of each, and with which loaded model.

- ``per_class={"3": 500, "Cyst": 20, 4: 10}``: class by name (first) or index;
- ``n=N``: a conditional model or a --model-per-class run splits N equally over its classes
  (the remainder goes to the lowest class indices); a single unconditional model
  trained on several classes cannot choose a class, so its images are labelled
  ``unlabelled`` (class_index -1) and per-class requests are refused.
"""
from __future__ import annotations

import re
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import torch

from medisynth.errors import MedisynthError
from medisynth.runs import LoadedRun, Run
from medisynth.sampling.config import SampleConfig


@dataclass
class Job:
    """One class to generate: its label, how many, and the loaded model that makes it."""

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
    """n split into k counts; the remainder goes to the first ones."""
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def plan_jobs(config: SampleConfig, device: torch.device) -> tuple[list[Job], Run]:
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
        jobs = [Job(class_names[i], i, c, model_for(i)) for i, c in sorted(wanted.items()) if c > 0]
        return jobs, opened

    loaded = opened.load(device, config.ema)
    class_names = loaded.model.spec.class_names
    if loaded.model.conditional:
        if config.per_class is not None:
            wanted = {resolve_class(k, class_names, run): v for k, v in config.per_class.items()}
        else:
            wanted = dict(enumerate(_equal_split(config.n, len(class_names))))
        return [Job(class_names[i], i, c, loaded) for i, c in sorted(wanted.items()) if c > 0], opened

    # one unconditional model: it makes "its" class only when it was trained on one class
    own = info.get("class_index")
    if own is None and len(class_names) == 1:
        own = 0
    # imported here: image_folder brings pandas, which sampling a conditional GAN never needs (start-up)
    from medisynth.data.image_folder import UNLABELLED

    if config.per_class is not None:
        if own is None:
            raise MedisynthError(
                f"--per-class: {run} is one unconditional {info['model']!r} model trained on all classes: it cannot make a "
                f"chosen class. Use --n N (images labelled {UNLABELLED!r}), or train with --model-per-class "
                f"(one model per class) or a conditional model (e.g. cgan)"
            )
        wanted = {resolve_class(k, class_names, run): v for k, v in config.per_class.items()}
        if set(wanted) - {own}:
            raise MedisynthError(f"{run} makes class {class_names[own]!r} only; ask for that class")
        return [Job(class_names[own], own, wanted[own], loaded)], opened
    if own is None:
        return [Job(UNLABELLED, -1, config.n, loaded)], opened
    return [Job(class_names[own], own, config.n, loaded)], opened
