"""WGAN-GP (Gulrajani et al. 2017; seed 004 eq. 2.7) with the DCGAN generator.

Generator: the DCGAN generator. Critic: the DCGAN discriminator without BatchNorm (LayerNorm by
default, ``critic_norm``), whose output is an unbounded score. Loss: critic minimises
C(G(z)) - C(x) + lambda * (||grad C(x_hat)|| - 1)^2 with lambda = 10; the generator minimises
-C(G(z)). ``n_critic`` = 5 critic updates per generator update inside each training step (see
``medisynth.models.gan``). Adam 1e-4, betas (0.0, 0.9) as in Gulrajani et al.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from medisynth.models.ada import ADAHyper
from medisynth.models.base import DataSpec, register_model
from medisynth.models.gan import WGANGPModel, gradient_penalty  # noqa: F401  (re-exported)
from medisynth.models.layers import (
    POWERS_OF_TWO_32_256, DCGANDiscriminator, DCGANGenerator, check_non_negative, check_positive, check_size,
    dcgan_init,
)


@dataclass
class WGANGPHyper(ADAHyper):  # + diffaugment and the ADA settings
    latent_dim: int = 100
    width: int = 64
    lr: Optional[float] = None  # shortcut: sets lr_g and lr_d
    lr_g: float = 1e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    n_critic: int = 5
    gp_weight: float = 10.0
    critic_norm: str = "layer"  # layer | none (BatchNorm would break the per-sample penalty)


def check_wgan_hyper(model: str, hyper) -> None:
    check_positive(model, latent_dim=hyper.latent_dim, width=hyper.width, n_critic=hyper.n_critic)
    check_non_negative(model, gp_weight=hyper.gp_weight)  # the seed paper uses 10


@register_model("wgan-gp")
class WGANGP(WGANGPModel):
    Hyper = WGANGPHyper

    @classmethod
    def check_spec(cls, spec: DataSpec) -> None:
        check_size(cls.name, spec, POWERS_OF_TWO_32_256)

    def __init__(self, spec: DataSpec, hyper: WGANGPHyper):
        check_wgan_hyper(self.name, hyper)
        super().__init__(spec, hyper)
        self.generator = DCGANGenerator(hyper.latent_dim, hyper.width, spec.channels, spec.image_size)
        self.discriminator = DCGANDiscriminator(hyper.width, spec.channels, spec.image_size, norm=hyper.critic_norm)
        self.generator.apply(dcgan_init)
        self.discriminator.apply(dcgan_init)
