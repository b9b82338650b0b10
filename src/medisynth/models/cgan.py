"""Class-conditional DCGAN (seed 001's conditional GAN, on Radford's DCGAN networks).

One model generates every class. The label enters both networks through a learned embedding
of size 50 (seed 001):
- generator: the embedding is concatenated with z, and the DCGAN generator maps the
  (latent_dim + 50)-vector to an image;
- discriminator: the embedding goes through a dense layer to an H x W map that is
  concatenated with the image as one extra input channel (seed 001's discriminator maps it to
  the image size, 32x32 there), then the DCGAN discriminator.
Same losses, optimiser and logged figures as ``dcgan``; ``discriminator_score`` judges each
image together with its label.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from medisynth.models.ada import ADAHyper
from medisynth.models.base import DataSpec, register_model
from medisynth.models.gan import GANModel
from medisynth.models.layers import (
    POWERS_OF_TWO_32_256, check_positive, check_size, dcgan_discriminator_layers, dcgan_generator_layers, dcgan_init,
)


@dataclass
class CGANHyper(ADAHyper):  # + diffaugment and the ADA settings
    latent_dim: int = 100
    width: int = 64
    embed_dim: int = 50
    lr: Optional[float] = None  # shortcut: sets lr_g and lr_d
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


class ConditionalGenerator(nn.Module):
    def __init__(self, nz: int, ngf: int, nc: int, size: int, num_classes: int, embed_dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.main = dcgan_generator_layers(nz + embed_dim, ngf, nc, size)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(labels).to(z.dtype)], dim=1)
        return self.main(h[:, :, None, None])


class ConditionalDiscriminator(nn.Module):
    def __init__(self, ndf: int, nc: int, size: int, num_classes: int, embed_dim: int):
        super().__init__()
        self.size = size
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.label_map = nn.Linear(embed_dim, size * size)
        self.main = dcgan_discriminator_layers(ndf, nc + 1, size, norm="batch")

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        label_plane = self.label_map(self.embed(labels)).view(-1, 1, self.size, self.size).to(x.dtype)
        return self.main(torch.cat([x, label_plane], dim=1)).reshape(x.shape[0])


@register_model("cgan")
class CGAN(GANModel):
    conditional = True
    Hyper = CGANHyper

    @classmethod
    def check_spec(cls, spec: DataSpec) -> None:
        check_size(cls.name, spec, POWERS_OF_TWO_32_256)

    def __init__(self, spec: DataSpec, hyper: CGANHyper):
        check_positive(self.name, latent_dim=hyper.latent_dim, width=hyper.width, embed_dim=hyper.embed_dim)
        super().__init__(spec, hyper)
        args = (spec.channels, spec.image_size, spec.num_classes, hyper.embed_dim)
        self.generator = ConditionalGenerator(hyper.latent_dim, hyper.width, *args)
        self.discriminator = ConditionalDiscriminator(hyper.width, *args)
        # Radford init for the conv/norm layers; the embeddings keep their N(0, 1) init so that
        # different classes start out clearly apart
        self.generator.main.apply(dcgan_init)
        self.discriminator.main.apply(dcgan_init)
