"""Image-array helpers for the pixel metrics: uint8 N x C x H x W in, float tensors out."""
from __future__ import annotations

import numpy as np
import torch


def as_uint8_nchw(images) -> torch.Tensor:
    """uint8 N x C x H x W (numpy or torch) -> a CPU uint8 tensor, checked."""
    t = torch.as_tensor(np.asarray(images)) if not isinstance(images, torch.Tensor) else images.detach().cpu()
    if t.dtype != torch.uint8 or t.ndim != 4:
        raise ValueError(f"expected uint8 N x C x H x W images, got {tuple(t.shape)} {t.dtype}")
    return t


def to_unit_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1]."""
    return images.float().div_(255.0)


def nhwc_to_nchw(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2))
