"""Deep residual VAE (seed 003: synthetic vessel trees from 20 DRIVE images, 512 px in the seed).

"To avoid the inherent blurriness problem residual layer is added": encoder and decoder are
stacks of pre-activation residual blocks (GroupNorm -> LeakyReLU(0.2) -> 3x3 conv, twice,
plus the identity), ``blocks`` per resolution level, with stride-2 convs down to 4 x 4 and
nearest-neighbour upsampling + 3x3 conv back up. GroupNorm rather than BatchNorm because the
seed trains on 20 images (tiny batches) and the decoder then behaves the same in training and
sampling. Works with 1 channel (vessel masks: ``medisynth train --target masks``) and 3.

Loss and sampling as every medisynth VAE (``medisynth.models.vae``): BCE on [0, 1] pixels + KL
(``recon="mse"`` gives the seed's Gaussian/L2 reading), z ~ N(0, psi^2 I) at sampling.

MONAI's ``VarAutoEncoder(num_res_units=...)`` was considered; its decoder ends in a
norm + activation on the output channel and one-conv residual units, so the blocks are
written out here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medisynth.models.base import DataSpec, register_model
from medisynth.models.layers import check_non_negative, check_positive, check_size, log2_int
from medisynth.models.vae import VAEModel, conv_channels

SIZES = (32, 64, 128, 256, 512)


@dataclass
class ResVAEHyper:
    latent_dim: int = 128
    width: int = 32  # channels at full resolution; doubles per level up to max_channels
    max_channels: int = 256
    blocks: int = 2  # residual blocks per resolution level (encoder and decoder each)
    lr: float = 1e-3
    kl_weight: float = 1.0
    recon: str = "bce"  # bce | mse


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(8, channels), channels)


class ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            group_norm(channels), nn.LeakyReLU(0.2), nn.Conv2d(channels, channels, 3, 1, 1),
            group_norm(channels), nn.LeakyReLU(0.2), nn.Conv2d(channels, channels, 3, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upsample(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


@register_model("resvae")
class ResVAE(VAEModel):
    Hyper = ResVAEHyper

    @classmethod
    def check_spec(cls, spec: DataSpec) -> None:
        check_size(cls.name, spec, SIZES)

    def __init__(self, spec: DataSpec, hyper: ResVAEHyper):
        super().__init__(spec, hyper)
        check_positive(self.name, width=hyper.width, max_channels=hyper.max_channels)
        check_non_negative(self.name, blocks=hyper.blocks)
        levels = log2_int(spec.image_size) - 2  # stride-2 steps from full size to 4 x 4
        chans = conv_channels(hyper.width, hyper.max_channels, levels + 1)  # chans[i] at size / 2^i
        res = lambda c: [ResBlock(c) for _ in range(hyper.blocks)]  # noqa: E731

        enc: list[nn.Module] = [nn.Conv2d(spec.channels, chans[0], 3, 1, 1)]
        for i in range(levels):
            enc += res(chans[i]) + [nn.Conv2d(chans[i], chans[i + 1], 4, 2, 1)]
        enc += res(chans[-1]) + [group_norm(chans[-1]), nn.LeakyReLU(0.2), nn.Flatten()]
        self.encoder = nn.Sequential(*enc)
        flat = chans[-1] * 16
        self.mu = nn.Linear(flat, hyper.latent_dim)
        self.logvar = nn.Linear(flat, hyper.latent_dim)

        self.from_latent = nn.Linear(hyper.latent_dim, flat)
        dec: list[nn.Module] = res(chans[-1])
        for i in range(levels, 0, -1):
            dec += [Upsample(chans[i], chans[i - 1])] + res(chans[i - 1])
        dec += [group_norm(chans[0]), nn.LeakyReLU(0.2), nn.Conv2d(chans[0], spec.channels, 3, 1, 1)]
        self.decoder = nn.Sequential(*dec)
        self.top_channels = chans[-1]

    def encode(self, x, labels):
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z, labels):
        return self.decoder(self.from_latent(z).view(z.shape[0], self.top_channels, 4, 4))
