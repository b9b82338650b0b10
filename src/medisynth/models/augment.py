"""DiffAugment (Zhao et al., "Differentiable Augmentation for Data-Efficient GAN Training", NeurIPS 2020).

With a few hundred training images a GAN discriminator memorises the real set
and stops teaching the generator. DiffAugment applies the *same policy* of
cheap, differentiable transforms to every image the discriminator sees, real
and fake alike (with independent random draws), so the discriminator cannot
tell the sets apart by the augmentation, and gradients flow back through the
transforms into the generator.

The transforms follow the authors' reference implementation
(github.com/mit-han-lab/data-efficient-gans, BSD-2-Clause):

- ``color``: random brightness (+U(-0.5, 0.5)), saturation (x U(0, 2) around the
  per-pixel channel mean) and contrast (x U(0.5, 1.5) around the image mean);
- ``translation``: shift by up to 1/8 of the image size, zero-padded;
- ``cutout``: zero a random square of half the image size.

Randomness comes from torch's global RNG (the trainer seeds and checkpoints
it), so a seeded run is reproducible.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medisynth.errors import MedisynthError


def _rand(x: torch.Tensor) -> torch.Tensor:
    """One uniform [0, 1) draw per image, shaped to broadcast over C x H x W."""
    return torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)


def rand_brightness(x: torch.Tensor) -> torch.Tensor:
    return x + (_rand(x) - 0.5)


def rand_saturation(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_rand(x) * 2) + mean


def rand_contrast(x: torch.Tensor) -> torch.Tensor:
    mean = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - mean) * (_rand(x) + 0.5) + mean


def _batch_grid(n: int, h: int, w: int, device: torch.device):
    return torch.meshgrid(
        torch.arange(n, device=device), torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )


def rand_translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    shift_h, shift_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-shift_h, shift_h + 1, size=(n, 1, 1), device=x.device)
    dx = torch.randint(-shift_w, shift_w + 1, size=(n, 1, 1), device=x.device)
    grid_b, grid_y, grid_x = _batch_grid(n, h, w, x.device)
    # index into a copy padded by one zero pixel: out-of-range shifts land on the padding
    grid_y = torch.clamp(grid_y + dy + 1, 0, h + 1)
    grid_x = torch.clamp(grid_x + dx + 1, 0, w + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    return padded.permute(0, 2, 3, 1)[grid_b, grid_y, grid_x].permute(0, 3, 1, 2)


def rand_cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    cut_h, cut_w = int(h * ratio + 0.5), int(w * ratio + 0.5)
    off_y = torch.randint(0, h + (1 - cut_h % 2), size=(n, 1, 1), device=x.device)
    off_x = torch.randint(0, w + (1 - cut_w % 2), size=(n, 1, 1), device=x.device)
    grid_b, grid_y, grid_x = _batch_grid(n, cut_h, cut_w, x.device)
    grid_y = torch.clamp(grid_y + off_y - cut_h // 2, min=0, max=h - 1)
    grid_x = torch.clamp(grid_x + off_x - cut_w // 2, min=0, max=w - 1)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=x.device)
    mask[grid_b, grid_y, grid_x] = 0
    return x * mask.unsqueeze(1)


AUGMENTATIONS = {
    "color": (rand_brightness, rand_saturation, rand_contrast),
    "translation": (rand_translation,),
    "cutout": (rand_cutout,),
}


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation,cutout"`` -> ("color", "translation", "cutout"); "" -> () (off)."""
    names = tuple(p.strip() for p in (policy or "").split(",") if p.strip())
    unknown = [p for p in names if p not in AUGMENTATIONS]
    if unknown:
        raise MedisynthError(
            f"diffaugment policy {policy!r}: unknown transform(s) {', '.join(unknown)}; "
            f"use a comma-separated subset of {', '.join(AUGMENTATIONS)} or \"\" to turn DiffAugment off"
        )
    return names


def diff_augment(x: torch.Tensor, policy: str | tuple[str, ...] = "color,translation,cutout") -> torch.Tensor:
    names = parse_policy(policy) if isinstance(policy, str) else policy
    for name in names:
        for transform in AUGMENTATIONS[name]:
            x = transform(x)
    return x.contiguous() if names else x


class DiffAugment(nn.Module):
    """``DiffAugment("color,translation,cutout")(images)``; the empty policy is the identity.

    Has no parameters or buffers, so it adds nothing to a model's state dict."""

    def __init__(self, policy: str = "color,translation,cutout"):
        super().__init__()
        self.policy = parse_policy(policy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.policy)

    def extra_repr(self) -> str:
        return f"policy={','.join(self.policy)!r}"
