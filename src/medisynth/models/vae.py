"""Variational auto-encoders: the shared VAE step, and the seeds' plain VAEs.

- ``vae`` (seed 000): fully connected encoder and decoder with one hidden layer each
  (``hidden`` units, ReLU), latent 128 by default (the seed tried 32..512).
- ``conv-vae`` (seed 002): convolutional encoder (stride-2 convs, BatchNorm, LeakyReLU) down to
  4 x 4, mirror-image transposed-conv decoder. Trained per class (``--model-per-class``) as in the seed.
- ``conv-cvae``: the same, class-conditional: the one-hot label is appended to the encoder's
  input as extra constant channels and to the latent before the decoder.

Loss (seeds 000/002): pixel-wise binary cross-entropy between the decoder's output and the
image mapped to [0, 1], plus the KL divergence of q(z|x) from N(0, I) (times ``kl_weight``);
both summed over pixels / latent dimensions and averaged over the batch (the ELBO per image).
Logs loss, recon, kl. Sampling decodes z ~ N(0, psi^2 I) (psi = --truncation, 1 by default).
Adam 1e-3.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medisynth.errors import MedisynthError
from medisynth.models.base import DataSpec, GenerativeModel, register_model
from medisynth.models.layers import (
    POWERS_OF_TWO_32_256, check_choice, check_labels, check_non_negative, check_positive, check_size, check_truncation,
    evaluating, log2_int, module_device, sample_latent,
)

RECON_LOSSES = ("bce", "mse")


class VAEModel(GenerativeModel):
    """Subclasses define ``encode(x, labels) -> (mu, logvar)`` and ``decode(z, labels) -> logits``
    (pre-sigmoid; the image in [0, 1] is sigmoid(logits)). Hyper needs latent_dim, lr, kl_weight, recon."""

    supports_truncation = True
    log_keys = ("loss", "recon", "kl")

    def __init__(self, spec, hyper):
        check_positive(self.name, latent_dim=hyper.latent_dim, lr=hyper.lr)
        check_choice(self.name, "recon", hyper.recon, RECON_LOSSES)
        check_non_negative(self.name, kl_weight=hyper.kl_weight)
        super().__init__(spec, hyper)

    def encode(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def configure_optimizers(self):
        return {"vae": torch.optim.Adam(self.parameters(), lr=self.hyper.lr)}

    def losses(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, recon, kl), each averaged over the batch."""
        n = images.shape[0]
        mu, logvar = self.encode(images, labels)
        mu, logvar = mu.float(), logvar.float()
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # the reparameterisation trick
        logits = self.decode(z, labels).float()
        target = (images.float() + 1) / 2
        if self.hyper.recon == "bce":
            recon = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / n
        else:
            recon = F.mse_loss(torch.sigmoid(logits), target, reduction="sum") / n
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp()) / n
        return recon + self.hyper.kl_weight * kl, recon, kl

    def training_step(self, batch, optimizers, step):
        opt = optimizers["vae"]
        opt.zero_grad(set_to_none=True)
        loss, recon, kl = self.losses(batch["image"], batch["label"])
        loss.backward()
        opt.step()
        return dict(zip(self.log_keys, torch.stack([loss, recon, kl]).detach().tolist()))

    @torch.no_grad()
    def generate(self, labels, generator=None, truncation=1.0, **options):
        psi = check_truncation(self.name, truncation)
        if self.conditional:
            check_labels(self.name, labels, self.spec.num_classes)
        device = module_device(self)
        z = sample_latent(len(labels), self.hyper.latent_dim, device, generator, psi)
        with evaluating(self):
            logits = self.decode(z, labels.to(device))
        return (torch.sigmoid(logits.float()) * 2 - 1).clamp_(-1.0, 1.0)


# -- the fully connected VAE of seed 000 -----------------------------------------------------------
FC_MAX_SIZE = 128


@dataclass
class FCVAEHyper:
    latent_dim: int = 128
    hidden: int = 512
    lr: float = 1e-3
    kl_weight: float = 1.0
    recon: str = "bce"  # bce | mse


@register_model("vae")
class FCVAE(VAEModel):
    Hyper = FCVAEHyper

    @classmethod
    def check_spec(cls, spec: DataSpec) -> None:
        if not 8 <= spec.image_size <= FC_MAX_SIZE or spec.channels < 1:
            raise MedisynthError(
                f"model 'vae' (fully connected) makes 8..{FC_MAX_SIZE} px images (got {spec.image_size}); "
                "its first layer has one weight per pixel per hidden unit. Use conv-vae or resvae for larger images"
            )

    def __init__(self, spec: DataSpec, hyper: FCVAEHyper):
        super().__init__(spec, hyper)
        check_positive(self.name, hidden=hyper.hidden)
        pixels = spec.channels * spec.image_size**2
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hyper.hidden), nn.ReLU(True))
        self.mu = nn.Linear(hyper.hidden, hyper.latent_dim)
        self.logvar = nn.Linear(hyper.hidden, hyper.latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(hyper.latent_dim, hyper.hidden), nn.ReLU(True), nn.Linear(hyper.hidden, pixels)
        )

    def encode(self, x, labels):
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z, labels):
        return self.decoder(z).view(z.shape[0], self.spec.channels, self.spec.image_size, self.spec.image_size)


# -- the convolutional VAE of seed 002 ------------------------------------------------------------
@dataclass
class ConvVAEHyper:
    latent_dim: int = 128
    width: int = 32  # channels after the first stride-2 conv; doubles per level up to max_channels
    max_channels: int = 512
    lr: float = 1e-3
    kl_weight: float = 1.0
    recon: str = "bce"


def conv_channels(width: int, max_channels: int, levels: int) -> list[int]:
    return [min(width * 2**i, max_channels) for i in range(levels)]


@register_model("conv-vae")
class ConvVAE(VAEModel):
    Hyper = ConvVAEHyper

    @classmethod
    def check_spec(cls, spec: DataSpec) -> None:
        check_size(cls.name, spec, POWERS_OF_TWO_32_256)

    def __init__(self, spec: DataSpec, hyper: ConvVAEHyper):
        super().__init__(spec, hyper)
        check_positive(self.name, width=hyper.width, max_channels=hyper.max_channels)
        extra = spec.num_classes if self.conditional else 0  # one-hot label channels / latent entries
        levels = log2_int(spec.image_size) - 2  # size -> 4 x 4
        chans = conv_channels(hyper.width, hyper.max_channels, levels)
        layers: list[nn.Module] = []
        cin = spec.channels + extra
        for i, c in enumerate(chans):
            layers += [nn.Conv2d(cin, c, 4, 2, 1, bias=i == 0)]
            layers += [nn.BatchNorm2d(c)] if i else []
            layers += [nn.LeakyReLU(0.2, True)]
            cin = c
        self.encoder = nn.Sequential(*layers, nn.Flatten())
        flat = chans[-1] * 16
        self.mu = nn.Linear(flat, hyper.latent_dim)
        self.logvar = nn.Linear(flat, hyper.latent_dim)
        self.from_latent = nn.Linear(hyper.latent_dim + extra, flat)
        layers = []
        for c_in, c_out in zip(chans[::-1], chans[::-1][1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chans[0], spec.channels, 4, 2, 1)]
        self.decoder = nn.Sequential(*layers)
        self.top_channels = chans[-1]

    def one_hot(self, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return F.one_hot(labels, self.spec.num_classes).to(dtype)

    def encode(self, x, labels):
        if self.conditional:
            planes = self.one_hot(labels, x.dtype)[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
            x = torch.cat([x, planes], dim=1)
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decode(self, z, labels):
        if self.conditional:
            z = torch.cat([z, self.one_hot(labels, z.dtype)], dim=1)
        h = F.relu(self.from_latent(z)).view(z.shape[0], self.top_channels, 4, 4)
        return self.decoder(h)


@register_model("conv-cvae")
class ConvCVAE(ConvVAE):
    """``conv-vae`` conditioned on the class: one model for every class."""

    conditional = True
