"""Loading a trained run folder (``medisynth train --out RUN``) as a ready model.

Built only on the trainer's run format (``medisynth.training.checkpoint``): ``model.json``
names the model, its data spec and hyper-parameters; the newest complete checkpoint
holds the weights (EMA copies included).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medisynth.errors import MedisynthError
from medisynth.io import read_json
from medisynth.models.base import DataSpec, GenerativeModel, build_model


@dataclass
class LoadedRun:
    path: Path
    model: GenerativeModel
    info: dict[str, Any]  # model.json

    @property
    def target(self) -> str:
        """What the run learned: "images", or "masks" (vessel maps as 1-channel images)."""
        return str(self.info.get("target", "images"))


def load_model_run(run_dir: Path | str, device: torch.device, flag: str = "--run") -> LoadedRun:
    """The model of ``run_dir`` with its latest weights, in eval mode on ``device``.

    ``flag`` names the command-line option in error messages (e.g. "--translate-run")."""
    from medisynth.training.checkpoint import latest_checkpoint, load_checkpoint, require_run

    run_dir = Path(run_dir)
    try:
        run = require_run(run_dir)
    except MedisynthError as e:
        raise MedisynthError(f"{flag} {e}") from None
    info = read_json(run / "model.json")
    if info.get("per_class"):
        raise MedisynthError(
            f"{flag} {run} holds one model per class; give one of its class folders (e.g. {run / 'class-0'})"
        )
    try:
        spec = DataSpec(**info["spec"])
        name = info["model"]
    except (KeyError, TypeError) as e:
        raise MedisynthError(f"{run / 'model.json'} is incomplete ({e}); the run folder is damaged, retrain it") from None
    model = build_model(name, spec, info.get("hyper") or {})
    model.use_ema = bool(info.get("ema", True))
    load_checkpoint(latest_checkpoint(run), model)
    model.to(device).eval()
    return LoadedRun(path=run, model=model, info=info)
