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
from medisynth.models.base import GenerativeModel


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
    from medisynth.sampling import load_trained_model

    try:
        loaded = load_trained_model(Path(run_dir), device)
    except MedisynthError as e:
        raise MedisynthError(f"{flag} {e}") from None
    return LoadedRun(path=loaded.run, model=loaded.model, info=read_json(loaded.run / "model.json"))
