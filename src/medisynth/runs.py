"""A training run folder (``medisynth train --out RUN``): its layout, and loading it for generation.

Every stage that reads or writes a run goes through :class:`Run`, so the layout is written down once::

    RUN/config.json      the resolved TrainConfig
    RUN/model.json       model name, data spec, hyper-parameters, EMA on/off, target, class index
                         (a --model-per-class run: class names and the class -> sub-run table instead)
    RUN/checkpoints/     safetensors checkpoints (format: ``medisynth.training.checkpoint``)
    RUN/samples/         sample grids written during training
    RUN/metrics.jsonl    one JSON line of losses per logging interval
    RUN/class-<i>/       a --model-per-class run's sub-run of class i (itself a run)
    RUN/export.json      only in a generator-only export (``medisynth export``): what it keeps

To generate from Python::

    import medisynth as ms
    loaded = ms.load_run("run", device="cpu")
    images = loaded.generate([0, 0, 1], seed=0)   # float N x C x H x W in [-1, 1]

Import direction: this module sits just above ``models.base`` and the checkpoint format; stages
(training, sampling, evaluation, balancing, pipelines) import it, never the other way round.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Optional

import torch

from medisynth.errors import MedisynthError
from medisynth.io import read_json, write_json
from medisynth.models.base import DataSpec, GenerativeModel, build_model, get_model_class
from medisynth.training.checkpoint import CHECKPOINTS, load_checkpoint, newest_checkpoint
from medisynth.training.config import DATA_ABSOLUTE

MODEL_JSON = "model.json"
CONFIG_JSON = "config.json"
SAMPLES = "samples"
METRICS = "metrics.jsonl"
EXPORT_JSON = "export.json"  # present when the folder is a generator-only export (``medisynth.export``)

__all__ = [
    "CHECKPOINTS", "CONFIG_JSON", "EXPORT_JSON", "METRICS", "MODEL_JSON", "SAMPLES",
    "LoadedRun", "Run", "is_run", "latest_checkpoint", "load_run", "read_metrics", "require_run",
]


def is_run(path: Path | str) -> bool:
    """Whether ``path`` holds both run files (config.json and model.json)."""
    path = Path(path)
    return (path / CONFIG_JSON).is_file() and (path / MODEL_JSON).is_file()


@dataclass(frozen=True)
class Run:
    """One run folder. ``Run.open`` checks the folder; the JSON files are read once, on first use."""

    path: Path

    @classmethod
    def open(cls, path: Path | str) -> "Run":
        """The run at ``path``; a MedisynthError naming the fix when it is not one."""
        path = Path(path)
        if not path.is_dir():
            raise MedisynthError(f"{path}: no such run folder; train one with `medisynth train DATA --model NAME --out {path}`")
        if not is_run(path):
            raise MedisynthError(
                f"{path} is not a medisynth run (config.json or model.json missing); "
                f"give the --out folder of `medisynth train`"
            )
        return cls(path)

    @classmethod
    def create(cls, path: Path | str, config_json: dict, model_json: dict) -> "Run":
        """Write the two run files into the (existing) folder ``path``."""
        path = Path(path)
        write_json(path / CONFIG_JSON, config_json)
        write_json(path / MODEL_JSON, model_json)
        return cls(path)

    # -- layout ------------------------------------------------------------------------------
    @property
    def model_json(self) -> Path:
        return self.path / MODEL_JSON

    @property
    def config_json(self) -> Path:
        return self.path / CONFIG_JSON

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def samples(self) -> Path:
        return self.path / SAMPLES

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    def class_dir(self, index: int) -> Path:
        """Where a --model-per-class run keeps the model of class ``index``."""
        return self.path / f"class-{index}"

    # -- contents ----------------------------------------------------------------------------
    @cached_property
    def info(self) -> dict[str, Any]:
        """model.json."""
        return read_json(self.model_json)

    @cached_property
    def config(self) -> dict[str, Any]:
        """config.json (the resolved TrainConfig as JSON)."""
        return read_json(self.config_json)

    @property
    def id(self) -> str:
        """12 hex digits of the SHA-256 of model.json + config.json: copies and exports of a run share it
        (synthetic images record it, ``medisynth.provenance``)."""
        digest = hashlib.sha256()
        for path in (self.model_json, self.config_json):
            digest.update(path.read_bytes() if path.is_file() else b"")
        return digest.hexdigest()[:12]

    @property
    def model_name(self) -> str:
        return str(self.info.get("model", ""))

    @property
    def per_class(self) -> bool:
        """One unconditional model per class, in class-<index>/ sub-runs."""
        return bool(self.info.get("per_class"))

    @property
    def target(self) -> str:
        """What the run learned: "images", or "masks" (vessel maps as 1-channel images)."""
        return str(self.info.get("target", "images"))

    @property
    def class_names(self) -> Optional[list[str]]:
        """The class names the run was trained on (None when model.json does not say)."""
        names = self.info.get("class_names") or (self.info.get("spec") or {}).get("class_names")
        return [str(n) for n in names] if names else None

    @property
    def data(self) -> Path:
        """The prepared data set the run was trained on: the path as given to train, or, when that does not
        resolve from here (a relative path used from another folder), the absolute path config.json also keeps."""
        given = Path(self.config.get("data") or "")
        absolute = self.config.get(DATA_ABSOLUTE)
        if absolute and not (given / "manifest.json").is_file() and (Path(absolute) / "manifest.json").is_file():
            return Path(absolute)
        return given

    @property
    def conditional(self) -> Optional[bool]:
        """Whether one model of this run makes every class on request (False for --model-per-class runs,
        None when model.json names no known model)."""
        if self.per_class:
            return False
        try:
            return bool(get_model_class(self.info["model"]).conditional)
        except (KeyError, MedisynthError):
            return None

    @property
    def spec(self) -> dict[str, Any]:
        """model.json's data spec (image size, channels, classes); a per-class run keeps none of its own, so its
        first class's run's, which every class shares but for the class names."""
        if self.per_class:
            first = next(iter(self.class_runs().values()), None)
            return first.spec if first is not None else {}
        return self.info.get("spec") or {}

    def class_runs(self) -> dict[int, "Run"]:
        """A --model-per-class run's sub-runs by class index (classes without training images are absent)."""
        return {int(i): Run(self.path / sub) for i, sub in (self.info.get("classes") or {}).items()}

    def latest_checkpoint(self) -> Path:
        """The newest complete checkpoint folder."""
        return newest_checkpoint(self.checkpoints, self.path)

    # -- loading -----------------------------------------------------------------------------
    def load(self, device: torch.device | str = "cpu", ema: bool = True) -> "LoadedRun":
        """Rebuild this single-model run's model from model.json and its latest checkpoint (eval mode)."""
        from medisynth.device import resolve_device

        if self.per_class:
            raise MedisynthError(f"{self.path} holds one model per class (class-<index>/); load those sub-folders")
        try:
            spec = DataSpec(**self.info["spec"])
            cls = get_model_class(self.info["model"])
        except (KeyError, TypeError) as e:
            raise MedisynthError(f"{self.model_json} is damaged ({e}); retrain the run") from None
        if not ema and (self.path / EXPORT_JSON).is_file() and read_json(self.path / EXPORT_JSON).get("ema"):
            raise MedisynthError(f"{self.path} is a generator-only export holding the EMA networks; drop --no-ema")
        model = build_model(self.info["model"], spec, cls.saved_hyper(self.info.get("hyper", {})))
        state = load_checkpoint(self.latest_checkpoint(), model)
        model.to(resolve_device(device)).eval()
        model.use_ema = ema and bool(self.info.get("ema", True))
        return LoadedRun(self, model, int(state.get("step", 0)))


@dataclass
class LoadedRun:
    """A run with its model built, weights loaded, in eval mode: what ``medisynth.load_run`` returns."""

    run: Run
    model: GenerativeModel
    step: int  # the training step of the loaded checkpoint

    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def info(self) -> dict[str, Any]:
        return self.run.info

    @property
    def target(self) -> str:
        return self.run.target

    @property
    def class_names(self) -> list[str]:
        return list(self.model.spec.class_names)

    def generate(self, labels: Iterable[int] | torch.Tensor, seed: Optional[int] = None, **options: Any) -> torch.Tensor:
        """Images for the given class indices: float N x C x H x W in [-1, 1], on the model's device.

        ``seed`` fixes the noise; ``options`` are the model's sampling options (``truncation``,
        and e.g. ``steps`` / ``guidance_scale`` for diffusion models)."""
        device = next(self.model.parameters()).device
        labels = torch.as_tensor(list(labels) if not isinstance(labels, torch.Tensor) else labels, dtype=torch.long, device=device)
        generator = torch.Generator(device).manual_seed(seed) if seed is not None else None
        with torch.no_grad():
            return self.model.generate(labels, generator=generator, **options)


def load_run(path: Path | str, device: torch.device | str = "cpu", ema: bool = True, flag: str = "") -> LoadedRun:
    """Load the trained run at ``path`` for generation (the newest checkpoint, eval mode, on ``device``).

    ``ema`` uses the exponential-moving-average networks when the run kept them. ``flag`` names the
    command-line option in error messages (e.g. "--translate-run"). A --model-per-class run holds one model
    per class: load ``Run.open(path).class_runs()[index]`` instead."""
    try:
        return Run.open(path).load(device, ema)
    except MedisynthError as e:
        if not flag:
            raise
        raise MedisynthError(f"{flag} {e}") from None


def read_metrics(run_dir: Path | str) -> list[dict[str, Any]]:
    """RUN/metrics.jsonl as a list of records; damaged (half-written) lines are skipped."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


def require_run(path: Path | str) -> Path:
    """``path`` when it is a run folder; a MedisynthError naming the fix otherwise."""
    return Run.open(path).path


def latest_checkpoint(path: Path | str) -> Path:
    """The newest complete checkpoint of the run at ``path``."""
    return Run.open(path).latest_checkpoint()
