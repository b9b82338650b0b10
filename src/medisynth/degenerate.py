"""Degenerate generated images: non-finite values, or one constant value over the whole image.

A diverged or broken generator makes exactly these (black, white or NaN squares); they carry no
information and must never be counted as accepted samples or added to a training set.
"""
from __future__ import annotations

import torch


def degenerate_images(images: torch.Tensor) -> torch.Tensor:
    """Bool N: True where image i (N x C x H x W, any range) holds a non-finite value or is constant."""
    flat = images.detach().reshape(len(images), -1).float()
    non_finite = ~torch.isfinite(flat).all(dim=1)
    safe = torch.nan_to_num(flat, nan=0.0, posinf=0.0, neginf=0.0)
    constant = safe.amax(dim=1) == safe.amin(dim=1)
    return (non_finite | constant).cpu()
