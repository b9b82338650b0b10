"""``autoencoder-kl``: the first stage of latent diffusion (Rombach et al. 2022), on MONAI's AutoencoderKL.

Trained with the ordinary trainer on the user's images (L1 reconstruction + a small KL term
that keeps the latent space smooth and roughly unit-scaled; the perceptual and adversarial
losses of the paper are left out). A trained run is then named by
``medisynth train DATA --model diffusion --hp autoencoder_run=RUN`` and the diffusion model
works on its latents (``image_size / 2^(levels-1)`` px, ``latent_channels`` channels).

``generate`` decodes latents drawn from the N(0, I) prior, as a VAE would; with the tiny KL
weight these are poor images, shown only so the trainer's sample grids have something to
show. ``reconstruct`` is the useful check of an autoencoder run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import AutoencoderKL

from medisynth.errors import MedisynthError
from medisynth.models.base import DataSpec, GenerativeModel, register_model
from medisynth.models.layers import standard_normal


@dataclass
class AutoencoderHyper:
    #: widths per level; the latent is image_size / 2^(levels-1) px
    num_channels: Sequence[int] = (32, 64, 64)
    latent_channels: int = 3
    num_res_blocks: int = 1
    #: self-attention in the encoder's and decoder's middle blocks (needs einops)
    mid_attention: bool = False
    #: weight of the KL term against the L1 reconstruction loss
    kl_weight: float = 1e-6
    lr: float = 2e-4


@register_model("autoencoder-kl")
class AutoencoderKLModel(GenerativeModel):
    Hyper = AutoencoderHyper
    log_keys = ("loss", "l1", "kl")

    def __init__(self, spec: DataSpec, hyper: AutoencoderHyper):
        super().__init__(spec, hyper)
        widths = tuple(int(c) for c in hyper.num_channels)
        if not widths or min(widths) < 1 or hyper.latent_channels < 1:
            raise MedisynthError("autoencoder-kl: num_channels must be positive widths (e.g. 32,64,64) and latent_channels >= 1")
        self.downsampling = 2 ** (len(widths) - 1)
        if spec.image_size % self.downsampling:
            raise MedisynthError(
                f"autoencoder-kl: image size {spec.image_size} is not divisible by {self.downsampling} "
                f"(num_channels has {len(widths)} levels); use fewer levels or another --size"
            )
        self.autoencoder = AutoencoderKL(
            spatial_dims=2,
            in_channels=spec.channels,
            out_channels=spec.channels,
            num_res_blocks=int(hyper.num_res_blocks),
            channels=widths,
            attention_levels=(False,) * len(widths),
            latent_channels=int(hyper.latent_channels),
            norm_num_groups=max(1, min(32, math.gcd(*widths) // 4)),
            with_encoder_nonlocal_attn=bool(hyper.mid_attention),
            with_decoder_nonlocal_attn=bool(hyper.mid_attention),
        )

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        size = self.spec.image_size // self.downsampling
        return (int(self.hyper.latent_channels), size, size)

    def configure_optimizers(self):
        return {"autoencoder": torch.optim.AdamW(self.autoencoder.parameters(), lr=self.hyper.lr)}

    def training_step(self, batch, optimizers, step):
        optimizer = optimizers["autoencoder"]
        optimizer.zero_grad(set_to_none=True)
        images = batch["image"].float()
        reconstruction, z_mu, z_sigma = self.autoencoder(images)  # z sampled with torch's global RNG
        l1 = F.l1_loss(reconstruction.float(), images)
        z_mu, z_sigma = z_mu.float(), z_sigma.float()
        # KL(N(mu, sigma) || N(0, I)), summed over latent elements, averaged over the batch
        kl = 0.5 * (z_mu.pow(2) + z_sigma.pow(2) - torch.log(z_sigma.pow(2) + 1e-12) - 1).flatten(1).sum(1).mean()
        loss = l1 + self.hyper.kl_weight * kl
        loss.backward()
        optimizer.step()
        return {"loss": float(loss.detach()), "l1": float(l1.detach()), "kl": float(kl.detach())}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Latent samples z = mu + sigma * n (n from torch's global RNG), N x latent_shape."""
        return self.autoencoder.encode_stage_2_inputs(images)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode_stage_2_outputs(latents).clamp(-1.0, 1.0)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """Decode the latent means: how much of each image the latent space keeps."""
        return self.autoencoder.reconstruct(images).clamp(-1.0, 1.0)

    @torch.no_grad()
    def generate(self, labels, generator=None, truncation=1.0, **options):
        device = next(self.parameters()).device
        return self.decode(standard_normal((len(labels), *self.latent_shape), device, generator))
