"""Device choice: CUDA when present, the CPU otherwise."""
from __future__ import annotations

import torch

from medisynth.errors import MedisynthError


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MedisynthError(f"--device {name}: no CUDA device is available here; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise MedisynthError(f"--device {name!r} is not a device; use auto, cpu or cuda[:N]") from None
