"""DCGAN (Radford et al. 2016), the recipe of seeds 000 and 001.

Generator: transposed convolutions 1x1 -> 4x4 -> ... -> size with BatchNorm and ReLU, tanh out.
Discriminator: strided convolutions with LeakyReLU(0.2) and BatchNorm (none on the first layer),
one logit out. Weights ~ N(0, 0.02); Adam 2e-4, betas (0.5, 0.999). Layer for layer the same
networks as ../shared/baselines/reference_dcgan.py (ngf = ndf = width, nz = latent_dim), so a
benchmark compares like with like (set diffaugment="" to match the reference exactly).
Unconditional: ``medisynth train --model-per-class`` trains one per class.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from medisynth.models.ada import ADAHyper
from medisynth.models.base import DataSpec, register_model
from medisynth.models.gan import GANModel
from medisynth.models.layers import (
    POWERS_OF_TWO_32_256, DCGANDiscriminator, DCGANGenerator, check_positive, check_size, dcgan_init,
)


@dataclass
class DCGANHyper(ADAHyper):  # + diffaugment and the ADA settings
    latent_dim: int = 100
    width: int = 64  # ngf = ndf
    lr: Optional[float] = None  # shortcut: sets lr_g and lr_d
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


@register_model("dcgan")
class DCGAN(GANModel):
    Hyper = DCGANHyper

    @classmethod
    def check_spec(cls, spec: DataSpec) -> None:
        check_size(cls.name, spec, POWERS_OF_TWO_32_256)

    def __init__(self, spec: DataSpec, hyper: DCGANHyper):
        check_positive(self.name, latent_dim=hyper.latent_dim, width=hyper.width)
        super().__init__(spec, hyper)
        self.generator = DCGANGenerator(hyper.latent_dim, hyper.width, spec.channels, spec.image_size)
        self.discriminator = DCGANDiscriminator(hyper.width, spec.channels, spec.image_size, norm="batch")
        self.generator.apply(dcgan_init)
        self.discriminator.apply(dcgan_init)
