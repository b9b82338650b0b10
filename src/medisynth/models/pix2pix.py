"""pix2pix: vessel map -> colour fundus photograph (Isola et al. 2017; seed paper 003).

- Generator: the U-Net of Isola et al. with skip connections between mirrored levels
  (conv 4x4 stride 2, LeakyReLU 0.2 down; ReLU + transposed conv up; dropout 0.5 in
  the deep 8*ngf decoder blocks; tanh out). Its depth adapts to the image size:
  log2(size) levels (32 px: 5, 256 px: 8 = the paper's unet_256), capped at
  ``max_depth`` so a 512 or 1024 px bottleneck stays 2x2 / 4x4.
- Discriminator: the 70x70 PatchGAN (3 stride-2 layers, one stride-1 layer, a
  1-channel patch logit map) on the (mask, image) pair concatenated along channels.
- Loss: adversarial (BCE-with-logits, or least squares with ``gan_mode="lsgan"``) +
  ``lambda_l1`` (100) x L1 to the target image; Adam 2e-4, betas (0.5, 0.999).
- Norm: instance norm (equivalent to the paper's batch norm at batch size 1, and it
  behaves identically in train and eval mode).

Defaults are CPU-friendly: ngf = 32 (the paper uses 64), ndf = 64. One training step
at 512 x 512, batch 1, peaks at about 1.6 GB resident memory on the CPU (measured with
``benchmarks/bench_pix2pix_memory.py``; ~9.7 s per step on one thread).

A batch is {"mask": N x 1 x H x W in [0, 1] (the input), "image": N x C x H x W in
[-1, 1] (the target)}; ``training_step`` applies the same random flips / 90 degree
rotations to both (``paired_augment``) so image and mask stay aligned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medisynth.errors import MedisynthError
from medisynth.models.base import DataSpec, GenerativeModel, register_model
from medisynth.models.layers import check_choice

MIN_SIZE, MAX_SIZE = 32, 1024


@dataclass
class Pix2PixHyper:
    ngf: int = 32  # generator width (paper: 64); kept small so 512 px trains on a CPU
    ndf: int = 64  # discriminator width (paper: 64)
    max_depth: int = 8  # most U-Net levels (unet_256 has 8)
    n_layers_d: int = 3  # PatchGAN stride-2 layers: 3 gives the 70x70 receptive field
    lambda_l1: float = 100.0
    gan_mode: str = "vanilla"  # "vanilla" (BCE with logits) or "lsgan"
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    dropout: float = 0.5
    augment: bool = True  # paired random flips + 90-degree rotations


# -- paired augmentation ---------------------------------------------------
def paired_augment(
    image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random dihedral transform (flip + 0/90/180/270 rotation) on each image and its mask.

    ``image`` N x C x H x W and ``mask`` N x 1 x H x W (square); one transform is drawn
    per sample (from ``generator``, else torch's global RNG) and applied to both.
    """
    if image.shape[0] != mask.shape[0] or image.shape[-2:] != mask.shape[-2:]:
        raise MedisynthError(
            f"image batch {tuple(image.shape)} and mask batch {tuple(mask.shape)} differ in count or size"
        )
    n = image.shape[0]
    device = generator.device if generator is not None else torch.device("cpu")
    rotations = torch.randint(0, 4, (n,), generator=generator, device=device).tolist()
    flips = torch.randint(0, 2, (n,), generator=generator, device=device).tolist()
    out_image, out_mask = [], []
    for i in range(n):
        img, msk = image[i], mask[i]
        if flips[i]:
            img, msk = img.flip(-1), msk.flip(-1)
        if rotations[i]:
            img, msk = torch.rot90(img, rotations[i], dims=(-2, -1)), torch.rot90(msk, rotations[i], dims=(-2, -1))
        out_image.append(img)
        out_mask.append(msk)
    return torch.stack(out_image), torch.stack(out_mask)


# -- networks --------------------------------------------------------------
def unet_depth(size: int, max_depth: int) -> int:
    return min(int(math.log2(size)), max_depth)


class UNetGenerator(nn.Module):
    """Isola et al.'s U-Net: encoder levels e_0..e_{d-1}, decoder mirrors them with skips."""

    def __init__(self, in_channels: int, out_channels: int, size: int, ngf: int = 32, max_depth: int = 8, dropout: float = 0.5):
        super().__init__()
        depth = unet_depth(size, max_depth)
        widths = [min(ngf * 2**i, ngf * 8) for i in range(depth)]
        self.depth = depth
        self.down = nn.ModuleList()
        prev = in_channels
        for i, w in enumerate(widths):
            layers: list[nn.Module] = []
            if i > 0:  # the outermost level takes the raw input (no activation before it)
                layers.append(nn.LeakyReLU(0.2, inplace=False))
            layers.append(nn.Conv2d(prev, w, 4, 2, 1, bias=(i == 0 or i == depth - 1)))
            if 0 < i < depth - 1:  # no norm on the input level or the innermost (1x1 possible) level
                layers.append(nn.InstanceNorm2d(w, affine=True))
            self.down.append(nn.Sequential(*layers))
            prev = w
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            in_ch = widths[i] if i == depth - 1 else widths[i] * 2  # innermost has no skip yet
            if i == 0:
                layers = [nn.ReLU(), nn.ConvTranspose2d(in_ch, out_channels, 4, 2, 1), nn.Tanh()]
            else:
                out = widths[i - 1]
                layers = [nn.ReLU(), nn.ConvTranspose2d(in_ch, out, 4, 2, 1, bias=False), nn.InstanceNorm2d(out, affine=True)]
                # dropout in the deep 8*ngf decoder blocks below the innermost, as in unet_256
                if dropout > 0 and out == ngf * 8 and i < depth - 1:
                    layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for j, block in enumerate(self.up):
            if j > 0:
                x = torch.cat([x, skips.pop()], dim=1)
            x = block(x)
        return x


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN: a grid of real/fake logits, one per overlapping 70x70 patch."""

    def __init__(self, in_channels: int, ndf: int = 64, n_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride, 1, bias=False),
                nn.InstanceNorm2d(ndf * mult, affine=True),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def init_weights(module: nn.Module) -> None:
    """N(0, 0.02) for convolutions, N(1, 0.02) for norm scales (pix2pix's init)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.InstanceNorm2d) and module.affine:
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


# -- the model -------------------------------------------------------------
@register_model("pix2pix")
class Pix2Pix(GenerativeModel):
    Hyper = Pix2PixHyper
    needs_masks = True
    ema_networks = ("generator",)
    log_keys = ("Loss_D", "Loss_G", "L1")
    mask_channels = 1
    #: generate() cannot sample from noise (the trainer skips its sample grids for such models)
    samples_from_noise = False

    def __init__(self, spec: DataSpec, hyper: Pix2PixHyper):
        super().__init__(spec, hyper)
        check_choice(self.name, "gan_mode", hyper.gan_mode, ("vanilla", "lsgan"))
        self.generator = UNetGenerator(
            self.mask_channels, spec.channels, spec.image_size, hyper.ngf, hyper.max_depth, hyper.dropout
        )
        self.discriminator = PatchDiscriminator(self.mask_channels + spec.channels, hyper.ndf, hyper.n_layers_d)
        self.apply(init_weights)

    @classmethod
    def check_spec(cls, spec: DataSpec) -> None:
        s = spec.image_size
        if s < MIN_SIZE or s > MAX_SIZE or s & (s - 1):
            raise MedisynthError(
                f"pix2pix needs a power-of-two image size from {MIN_SIZE} to {MAX_SIZE}, not {s}; "
                "prepare the data with e.g. `medisynth prepare DRIVE --size 512`"
            )

    # -- training -----------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        h = self.hyper
        betas = (h.beta1, h.beta2)
        return {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=h.lr, betas=betas),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=h.lr, betas=betas),
        }

    def _gan_loss(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        if self.hyper.gan_mode == "lsgan":
            return F.mse_loss(logits, target)
        return F.binary_cross_entropy_with_logits(logits, target)

    def training_step(self, batch, optimizers, step):
        if "mask" not in batch:
            raise MedisynthError("pix2pix trains on image + vessel-mask pairs; prepare the data from a source with masks (e.g. DRIVE)")
        target, mask = batch["image"], batch["mask"].to(batch["image"].dtype)
        if self.hyper.augment:
            target, mask = paired_augment(target, mask)
        source = mask * 2.0 - 1.0  # the generator sees the mask in [-1, 1] like every other input
        fake = self.generator(source)

        # discriminator: real pairs -> 1, generated pairs -> 0
        opt_d, opt_g = optimizers["discriminator"], optimizers["generator"]
        opt_d.zero_grad(set_to_none=True)
        loss_d = 0.5 * (
            self._gan_loss(self.discriminator(torch.cat([source, fake.detach()], 1)), False)
            + self._gan_loss(self.discriminator(torch.cat([source, target], 1)), True)
        )
        loss_d.backward()
        opt_d.step()

        # generator: fool D and stay close to the target in L1
        self.discriminator.requires_grad_(False)
        opt_g.zero_grad(set_to_none=True)
        loss_gan = self._gan_loss(self.discriminator(torch.cat([source, fake], 1)), True)
        l1 = F.l1_loss(fake, target)
        loss_g = loss_gan + self.hyper.lambda_l1 * l1
        loss_g.backward()
        opt_g.step()
        self.discriminator.requires_grad_(True)
        return {"Loss_D": loss_d.item(), "Loss_G": loss_g.item(), "L1": l1.item()}

    # -- use ------------------------------------------------------------------
    @torch.no_grad()
    def translate(self, masks: torch.Tensor, batch_size: int = 4) -> torch.Tensor:
        """Vessel masks N x 1 x H x W in [0, 1] -> images N x C x H x W in [-1, 1] (H = W = the trained size)."""
        s = self.spec.image_size
        if masks.ndim != 4 or masks.shape[1] != self.mask_channels or tuple(masks.shape[-2:]) != (s, s):
            raise MedisynthError(
                f"pix2pix translates N x 1 x {s} x {s} vessel masks (the size it was trained on), "
                f"got {tuple(masks.shape)}"
            )
        net = self.sampling_network("generator")
        was_training = net.training
        net.eval()
        device = next(net.parameters()).device
        out = []
        for chunk in masks.split(batch_size):
            out.append(net(chunk.to(device=device, dtype=torch.float32) * 2.0 - 1.0).clamp(-1, 1))
        net.train(was_training)
        return torch.cat(out)

    @torch.no_grad()
    def generate(self, labels, generator=None, truncation=1.0, **options):
        raise MedisynthError(
            "a pix2pix run translates vessel masks into images and cannot sample from noise; "
            "use `medisynth pipeline vessels --vessel-run VESSEL_RUN --translate-run THIS_RUN`"
        )
