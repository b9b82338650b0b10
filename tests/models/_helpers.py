"""Tiny specs, batches and parameter snapshots shared by the model tests."""
from __future__ import annotations

import torch

from medisynth.models import DataSpec, build_model

CLASSES = ["0", "1", "2"]


def tiny_batch(spec: DataSpec, n: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, spec.channels, spec.image_size, spec.image_size, generator=g) * 2 - 1
    labels = torch.arange(n) % spec.num_classes
    return {"image": images, "label": labels}


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    now = dict(module.named_parameters())
    return any(not torch.equal(before[k], now[k]) for k in before)


def train_steps(name: str, spec: DataSpec, hyper: dict, steps: int = 2):
    torch.manual_seed(0)
    model = build_model(name, spec, hyper).train()
    optimizers = model.configure_optimizers()
    logs = [model.training_step(tiny_batch(spec, seed=s), optimizers, s) for s in range(steps)]
    return model, logs
