"""Image arrays, the bottom of the image layer: the uint8 <-> [-1, 1] conversions and the one image grid.

medisynth keeps pixels as uint8 (N x C x H x W) and hands models float images in [-1, 1].
Only numpy and torch here, so every stage can import it without pulling in data-set code.
"""
from __future__ import annotations

import math

import numpy as np
import torch


def uint8_to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x C x H x W -> float in [-1, 1]."""
    return images.float().div(127.5).sub_(1.0)  # div, not div_: a float input is not changed in place


def float_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 (values outside are clipped)."""
    return images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def image_grid(images: np.ndarray | torch.Tensor, columns: int = 8, pad: int = 2, pad_value: int = 0) -> np.ndarray:
    """uint8 N x C x H x W -> one uint8 H' x W' x 3 grid, ``columns`` images a row, ``pad`` pixels between.

    The layout of ``torchvision.utils.make_grid`` (one-channel images are repeated to three channels),
    written out so that drawing a grid does not import torchvision (seconds of start-up)."""
    array = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if array.shape[1] == 1:
        array = np.repeat(array, 3, axis=1)
    n, c, h, w = array.shape
    if n == 1:  # make_grid returns a single image as it is, unpadded
        return np.ascontiguousarray(array[0].transpose(1, 2, 0))
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    grid = np.full((c, rows * (h + pad) + pad, cols * (w + pad) + pad), pad_value, dtype=array.dtype)
    for k in range(n):
        y, x = divmod(k, cols)
        top, left = y * (h + pad) + pad, x * (w + pad) + pad
        grid[:, top:top + h, left:left + w] = array[k]
    return np.ascontiguousarray(grid.transpose(1, 2, 0))
