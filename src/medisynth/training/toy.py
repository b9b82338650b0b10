"""Tiny models and data sets for tests and examples (not imported by ``medisynth.models``).

``import medisynth.training.toy`` registers two two-layer GANs that follow the
model contract: ``toy-gan`` (unconditional, with discriminator and truncation)
and ``toy-cgan`` (label-conditioned). ``write_toy_dataset`` writes a prepared data
set (manifest.json, index.csv, uint8 shards) of coloured squares, one colour per class;
``write_toy_medmnist`` a source file in MedMNIST's npz layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from medisynth.data.prepare import write_prepared
from medisynth.errors import MedisynthError
from medisynth.models.base import DataSpec, GenerativeModel, register_model


@dataclass
class ToyHyper:
    latent_dim: int = 8
    width: int = 8
    lr_g: float = 2e-3
    lr_d: float = 2e-3


class _ToyGANBase(GenerativeModel):
    Hyper = ToyHyper
    has_discriminator = True
    supports_truncation = True
    ema_networks = ("generator",)
    log_keys = ("Loss_D", "Loss_G", "D(x)", "D(G(z))")

    def __init__(self, spec: DataSpec, hyper: ToyHyper):
        super().__init__(spec, hyper)
        s, c, w, k = spec.image_size, spec.channels, hyper.width, spec.num_classes
        extra = k if self.conditional else 0
        self.generator = nn.Sequential(
            nn.Linear(hyper.latent_dim + extra, w * (s // 4) ** 2), nn.Unflatten(1, (w, s // 4, s // 4)),
            nn.BatchNorm2d(w), nn.ReLU(), nn.Upsample(scale_factor=4), nn.Conv2d(w, c, 3, padding=1), nn.Tanh(),
        )
        self.discriminator = nn.Sequential(
            nn.Conv2d(c + extra, w, 4, 4), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(w * (s // 4) ** 2, 1),
        )
        self.bce = nn.BCEWithLogitsLoss()

    @classmethod
    def check_spec(cls, spec: DataSpec) -> None:
        if spec.image_size % 4:
            raise MedisynthError(f"{cls.name}: image size {spec.image_size} is not a multiple of 4")

    def configure_optimizers(self):
        h = self.hyper
        return {
            "g": torch.optim.Adam(self.generator.parameters(), h.lr_g, betas=(0.5, 0.999)),
            "d": torch.optim.Adam(self.discriminator.parameters(), h.lr_d, betas=(0.5, 0.999)),
        }

    def _onehot(self, labels):
        return nn.functional.one_hot(labels, self.spec.num_classes).float()

    def _g(self, net, z, labels):
        return net(torch.cat([z, self._onehot(labels)], 1) if self.conditional else z)

    def _d(self, x, labels):
        if self.conditional:
            maps = self._onehot(labels)[:, :, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, maps], 1)
        return self.discriminator(x).flatten()

    def training_step(self, batch, optimizers, step):
        real, labels = batch["image"], batch["label"]
        z = torch.randn(len(real), self.hyper.latent_dim, device=real.device)
        fake = self._g(self.generator, z, labels)
        ones, zeros = torch.ones(len(real), device=real.device), torch.zeros(len(real), device=real.device)
        optimizers["d"].zero_grad(set_to_none=True)
        d_real, d_fake = self._d(real, labels), self._d(fake.detach(), labels)
        loss_d = self.bce(d_real, ones) + self.bce(d_fake, zeros)
        loss_d.backward()
        optimizers["d"].step()
        optimizers["g"].zero_grad(set_to_none=True)
        loss_g = self.bce(self._d(fake, labels), ones)
        loss_g.backward()
        optimizers["g"].step()
        return {
            "Loss_D": loss_d.item(), "Loss_G": loss_g.item(),
            "D(x)": torch.sigmoid(d_real).mean().item(), "D(G(z))": torch.sigmoid(d_fake).mean().item(),
        }

    @torch.no_grad()
    def generate(self, labels, generator=None, truncation=1.0, **options):
        z = torch.randn(len(labels), self.hyper.latent_dim, generator=generator, device=labels.device)
        if truncation != 1.0:
            z = z * truncation  # the truncation trick towards the mean latent (0)
        return self._g(self.sampling_network("generator"), z, labels)

    @torch.no_grad()
    def discriminator_score(self, images, labels):
        return torch.sigmoid(self._d(images, labels))


@register_model("toy-gan")
class ToyGAN(_ToyGANBase):
    conditional = False


@register_model("toy-cgan")
class ToyCGAN(_ToyGANBase):
    conditional = True


def write_toy_dataset(
    root: Path,
    per_class: dict[str, int] | None = None,
    size: int = 16,
    channels: int = 3,
    with_masks: bool = False,
    val_per_class: int = 1,
    seed: int = 0,
) -> Path:
    """A prepared data set of noisy coloured squares: class i is brighter in channel i % channels."""
    per_class = per_class or {"0": 12, "1": 6}
    rng = np.random.default_rng(seed)
    root = Path(root)
    class_names = list(per_class)
    images, masks, labels, splits, ids = [], [], [], [], []
    for label, name in enumerate(class_names):
        for j in range(per_class[name] + val_per_class):
            img = rng.integers(0, 60, (size, size, channels), dtype=np.uint8)
            lo, hi = size // 4, 3 * size // 4
            img[lo:hi, lo:hi, label % channels] = 200 + label * 10
            images.append(img)
            masks.append(((img[..., 0] > 100) * 255).astype(np.uint8))
            labels.append(label)
            splits.append("train" if j < per_class[name] else "val")
            ids.append(f"{name}_{j}")
    # an existing empty folder (a test's tmp dir) is filled; anything else is refused by write_prepared
    empty = root.is_dir() and not any(root.iterdir())
    write_prepared(root, np.stack(images), labels, splits, class_names, ids=ids,
                   masks=np.stack(masks) if with_masks else None, source={"layout": "toy"}, overwrite=empty)
    return root


def write_toy_medmnist(path: Path, labels: dict[str, Sequence[int]], images: dict[str, int] | None = None,
                       seed: int = 0) -> Path:
    """A MedMNIST v2 npz at ``path``: per split, random 28 px grayscale ``{split}_images`` and ``{split}_labels``
    (N x 1, ``labels[split]``); ``images`` gives a split another image count than its labels (a malformed file)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, split_labels in labels.items():
        n_images = (images or {}).get(split, len(split_labels))
        arrays[f"{split}_images"] = rng.integers(0, 256, (n_images, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.asarray(split_labels, dtype=np.uint8).reshape(-1, 1)
    np.savez(path, **arrays)
    return Path(path)
