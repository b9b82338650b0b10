"""What a training run is asked to do: ``TrainConfig``, from flags or a YAML/JSON file.

A plain dataclass (like NVlabs/edm's option dicts): every field has a default,
``--config run.yaml`` fills fields from a file, and command-line flags override
the file. The resolved config is saved in the run folder as ``config.json``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from medisynth.errors import MedisynthError
from medisynth.training.intervals import Interval, parse_interval

TARGETS = ("images", "masks")
#: how training batches draw the classes (medisynth.training.trainer.epoch_order)
CLASS_DRAWS = ("uniform", "sqrt", "balanced")
ON_NAN = ("rollback", "stop")  # what training does on a non-finite loss (medisynth.training.divergence)

#: fields a resumed run may change (the budget and the bookkeeping); the rest is fixed by the run
BUDGET_FIELDS = ("epochs", "steps", "minutes")
DATA_ABSOLUTE = "data_absolute"  # config.json's extra key: the data path resolved when the run was made
RESUME_OVERRIDABLE = (
    "epochs", "steps", "minutes", "checkpoint_every", "sample_every", "log_every",
    "device", "amp", "cpu_amp", "threads", "progress", "on_nan",
)


@dataclass
class TrainConfig:
    """A training request: data, model, budget, logging and checkpoint settings (``medisynth train``)."""

    data: Optional[Path] = None  # a prepared data set (``medisynth prepare``)
    model: str = "fastgan"  # a registered model name; fastgan learns from a few hundred images in minutes
    out: Optional[Path] = None  # the run folder to create
    # budget: at least one; training stops at the first one reached (totals for the run, resume included)
    epochs: Optional[int] = None  # passes over the train split
    steps: Optional[int] = None  # optimisation steps (one batch each)
    minutes: Optional[float] = None  # wall-clock training time
    batch_size: Optional[int] = None  # images per step; None: the model's default (fastgan 8, the others 64)
    # shortcuts that go into the model's hyper-parameters (an error if the model has no such field)
    lr: Optional[float] = None  # learning rate (models with one optimiser)
    lr_g: Optional[float] = None  # generator learning rate (GANs)
    lr_d: Optional[float] = None  # discriminator learning rate (GANs)
    latent_dim: Optional[int] = None  # size of the latent vector
    hyper: dict[str, Any] = field(default_factory=dict)  # any model hyper-parameter (--hp key=value)
    seed: int = 0  # fixes init, batch order and sample grids
    ema_decay: float = 0.999  # 0 = no EMA; sampling then uses the live networks
    # intervals: a step count (50) or a duration ("30s", "5m", "1h"); see medisynth.training.intervals
    checkpoint_every: Union[int, str] = "10m"  # checkpoints (and always at the end)
    sample_every: Union[int, str] = "5m"  # sample grids (0 = only at the end)
    log_every: Union[int, str] = "10s"  # metrics.jsonl lines (a 2-minute CPU run gets about 12)
    per_class: bool = False  # one unconditional model per class in RUN/class-<index>/
    class_draws: str = "uniform"  # batches draw classes as the data has them, by sqrt(count), or equally often
    target: str = "images"  # "masks": learn the vessel masks as 1-channel images
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    amp: bool = True  # bf16 autocast on CUDA; ignored on the CPU
    # bf16 autocast on the CPU as well: opt-in, since it pays only on a CPU with native bf16 (about 1.25x the steps
    # there, about an eighth of fp32's speed where it is emulated; README, "Mixed precision on the CPU")
    cpu_amp: bool = False
    threads: int = 0  # torch CPU threads (0 = torch's default)
    resume: Optional[Path] = None  # continue this run folder
    overwrite: bool = False  # replace an existing --out folder
    progress: bool = True  # live progress bar (only shown on a terminal)
    class_index: Optional[int] = None  # train on this class only (set by --model-per-class for each class)
    on_nan: str = "rollback"  # a non-finite loss/gradient/weight: roll back once with halved lr, or stop

    def validate(self) -> None:
        if self.resume is None:
            if self.data is None:
                raise MedisynthError("no data: give a prepared data set (medisynth train DATA --model NAME --out RUN)")
            if self.out is None:
                raise MedisynthError("no run folder: give --out RUN")
        if self.epochs is None and self.steps is None and self.minutes is None:
            raise MedisynthError("no training budget: give --epochs, --steps or --minutes (at least one)")
        for name in ("epochs", "steps", "minutes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise MedisynthError(f"--{name} must be positive (got {value})")
        if self.batch_size is not None and self.batch_size < 1:
            raise MedisynthError(f"--batch-size must be at least 1 (got {self.batch_size})")
        if not 0.0 <= self.ema_decay < 1.0:
            raise MedisynthError(f"--ema-decay must be in [0, 1) (got {self.ema_decay}); 0 turns EMA off")
        if self.target not in TARGETS:
            raise MedisynthError(f"--target {self.target!r}: choose one of {', '.join(TARGETS)}")
        for name in ("lr", "lr_g", "lr_d"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise MedisynthError(f"--{name.replace('_', '-')} {value}: a learning rate must be a positive number")
        if self.class_draws not in CLASS_DRAWS:
            raise MedisynthError(f"--class-draws {self.class_draws!r}: choose one of {', '.join(CLASS_DRAWS)}")
        if self.on_nan not in ON_NAN:
            raise MedisynthError(f"--on-nan {self.on_nan!r}: choose {' or '.join(ON_NAN)}")
        self.intervals()  # raises on a bad --log-every / --sample-every / --checkpoint-every

    def intervals(self) -> dict[str, Interval]:
        """log / sample / checkpoint intervals, parsed (the one place they are)."""
        return {name: parse_interval(getattr(self, f"{name}_every"), f"--{name}-every", allow_zero=name == "sample")
                for name in ("log", "sample", "checkpoint")}

    def hyper_overrides(self) -> dict[str, Any]:
        """The model's hyper-parameter overrides: --hp values plus the --lr/--latent-dim shortcuts."""
        overrides = dict(self.hyper)
        for name in ("lr", "lr_g", "lr_d", "latent_dim"):
            if getattr(self, name) is not None:
                overrides[name] = getattr(self, name)
        return overrides

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON, plus ``data_absolute``: the data path resolved, so the run works from
        another folder (``Run.data`` falls back to it when the path as given does not resolve)."""
        values = {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}
        values[DATA_ABSOLUTE] = str(Path(self.data).resolve()) if self.data is not None else None
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "TrainConfig":
        values = {str(k).replace("-", "_"): v for k, v in values.items() if k != DATA_ABSOLUTE}  # derived, not a setting
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise MedisynthError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        for name in ("data", "out", "resume"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        if values.get("hyper") is None:
            values["hyper"] = {}
        if not isinstance(values["hyper"], dict):
            raise MedisynthError(f"{source}: 'hyper' must be a mapping of hyper-parameter names to values")
        return cls(**values)


def load_config_file(path: Path) -> dict[str, Any]:
    """Settings from a YAML or JSON file (a mapping of TrainConfig field names to values)."""
    path = Path(path)
    if not path.is_file():
        raise MedisynthError(f"--config {path}: file not found")
    try:
        text = path.read_text()
        values = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise MedisynthError(f"--config {path}: cannot parse ({e}); fix the file") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise MedisynthError(f"--config {path}: expected a mapping of settings (key: value), got {type(values).__name__}")
    return values


def parse_scalar(text: str) -> Any:
    """'1e-4' -> 0.0001, 'true' -> True, '[1, 2]' -> [1, 2], 'adam' -> 'adam' (JSON first, then YAML)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_hp(items: list[str] | None) -> dict[str, Any]:
    """``--hp key=value`` (repeatable) -> {key: parsed value}."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MedisynthError(f"--hp {item!r}: expected key=value, e.g. --hp lr_g=1e-4")
        out[key.strip().replace("-", "_")] = parse_scalar(value.strip())
    return out
