"""The learnable-kernel GANs of seed 004 (grayscale CT), trained with the WGAN-GP critic.

Generator (seed 004, chapter 3):
- one linear layer from the latent (100 by default, 128 in the seed's best run) to
  ``stem_channels`` x 4 x 4 (1 x 4 x 4 in the seed);
- the learnable kernel: a k x k convolution whose weights start as N(0, 1) draws and are learned
  (a learned, bilateral-like filter), applied to that 4 x 4 map (``learnable_kernel``);
- blocks x_1 .. x_L (eq. 3.3): x_1 = F_1(x_0) + x_0 at 4 x 4, then each x_i = ReLU(F_i(x_{i-1}) +
  interpolated earlier layers), F_i a stride-2 transposed conv + BatchNorm, so 64 px takes 5
  blocks ("small GAN ... 5 layers") and 128 px takes 6 (F_1..F_6 of eq. 3.3);
- a 3x3 conv to the image channels and tanh.

"There is no concatenation of channels. Each previous layer has been interpolated and then
convoluted to have the same number of channels" (seed 004 §3.1.2): every skip path here is
interpolate -> 1x1 conv -> add. The variants differ only in which earlier layers come in:

- ``lkgan-small`` (64 px): x_{i-1}, upsampled x2 (bilinear);
- ``lkgan-v1`` (128 px, "layers preceding ... added twice"): x_{i-1} twice, through two paths
  of their own: bilinear and nearest-neighbour interpolation, each with its own 1x1 conv (our
  reading; with one interpolation the two paths would collapse into one 1x1 conv);
- ``lkgan-v2`` (128 px): x_{i-1} scaled x2 and x_{i-2} scaled x4 (x2 for i = 2, whose x_0 is
  also 4 x 4), both bilinear.

Channels halve at each upsampling, from min(width * 2^(L-1), max_channels) at 4 x 4 down to
``width`` at full size. The seed found the kernel helps the 128 px versions and hurts the small
one (FID 262 with it vs 64 without, §4), so ``lkgan-small`` defaults to learnable_kernel=False.

Critic and training: the WGAN-GP critic and step of ``wgan-gp`` (LayerNorm critic, lambda = 10,
n_critic = 5, Adam 1e-4 (0.0, 0.9)).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medisynth.errors import MedisynthError
from medisynth.models.base import DataSpec, register_model
from medisynth.models.gan import WGANGPModel
from medisynth.models.layers import DCGANDiscriminator, check_positive, check_size, dcgan_init, log2_int
from medisynth.models.wgan_gp import WGANGPHyper, check_wgan_hyper


@dataclass
class LKGANHyper(WGANGPHyper):  # + the WGAN-GP critic's training settings, diffaugment and ADA
    latent_dim: int = 100  # the seed also reports 128 (slightly better FID for Version 2)
    width: int = 64  # generator channels at full size; the critic's first layer
    max_channels: int = 512
    stem_channels: int = 1  # the linear layer's output is stem_channels x 4 x 4 (1 in the seed)
    learnable_kernel: bool = True
    kernel_size: int = 3


@dataclass
class LKGANSmallHyper(LKGANHyper):
    learnable_kernel: bool = False  # seed 004 §4: FID 64 without the kernel, 262 with it


class SkipPath(nn.Module):
    """Interpolate an earlier layer to the current size, then a 1x1 conv to the current channels."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, mode: str):
        super().__init__()
        self.scale, self.mode = scale, mode
        self.proj = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale != 1:
            kwargs = {"align_corners": False} if self.mode == "bilinear" else {}
            x = F.interpolate(x, scale_factor=self.scale, mode=self.mode, **kwargs)
        return self.proj(x)


class LearnableKernelGenerator(nn.Module):
    def __init__(self, latent_dim: int, channels: int, size: int, hyper: LKGANHyper, variant: str):
        super().__init__()
        ups = log2_int(size) - 2  # stride-2 blocks from 4 x 4
        stem = hyper.stem_channels
        # chans[j] = channels of x_j: x_0 is the stem, x_1 (4 x 4) .. x_{ups+1} (size x size)
        chans = [stem] + [min(hyper.width * 2 ** (ups - i), hyper.max_channels) for i in range(ups + 1)]
        res = [4, 4] + [4 * 2**i for i in range(1, ups + 1)]
        self.stem_channels = stem
        self.linear = nn.Linear(latent_dim, stem * 16)
        self.kernel = None
        if hyper.learnable_kernel:
            k = hyper.kernel_size
            self.kernel = nn.Conv2d(stem, stem, k, padding=k // 2, groups=stem, bias=False, padding_mode="replicate")
            nn.init.normal_(self.kernel.weight, 0.0, 1.0)  # the "random normal kernel"
        self.blocks = nn.ModuleList()
        self.skips = nn.ModuleList()
        self.skip_sources: list[list[int]] = []  # for each block, how many layers back each skip reads
        for i in range(1, len(chans)):
            cin, cout = chans[i - 1], chans[i]
            conv = (nn.Conv2d(cin, cout, 3, 1, 1, bias=False) if i == 1
                    else nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False))
            self.blocks.append(nn.Sequential(conv, nn.BatchNorm2d(cout)))
            scale1 = res[i] // res[i - 1]
            paths, sources = [SkipPath(cin, cout, scale1, "bilinear")], [1]
            if variant == "v1":
                paths.append(SkipPath(cin, cout, scale1, "nearest"))
                sources.append(1)
            if variant == "v2" and i >= 2:
                paths.append(SkipPath(chans[i - 2], cout, res[i] // res[i - 2], "bilinear"))
                sources.append(2)
            self.skips.append(nn.ModuleList(paths))
            self.skip_sources.append(sources)
        self.to_image = nn.Conv2d(chans[-1], channels, 3, 1, 1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.linear(z).view(z.shape[0], self.stem_channels, 4, 4)
        if self.kernel is not None:
            x = self.kernel(x)
        history = [x]  # x_0, x_1, ...: the last two are all a skip can read
        for block, paths, sources in zip(self.blocks, self.skips, self.skip_sources):
            out = block(history[-1])
            for path, back in zip(paths, sources):
                out = out + path(history[-back])
            history = [history[-1], F.relu(out)]
        return torch.tanh(self.to_image(history[-1]))


class LKGANBase(WGANGPModel):
    variant: str = "small"
    size: int = 64
    Hyper = LKGANHyper

    @classmethod
    def check_spec(cls, spec: DataSpec) -> None:
        check_size(cls.name, spec, (cls.size,))

    def __init__(self, spec: DataSpec, hyper: LKGANHyper):
        check_wgan_hyper(self.name, hyper)
        check_positive(self.name, max_channels=hyper.max_channels, stem_channels=hyper.stem_channels,
                       kernel_size=hyper.kernel_size)
        if hyper.kernel_size % 2 == 0:
            raise MedisynthError(f"model {self.name!r}: kernel_size must be odd (got {hyper.kernel_size}); the seed uses 3")
        super().__init__(spec, hyper)
        self.generator = LearnableKernelGenerator(hyper.latent_dim, spec.channels, spec.image_size, hyper, self.variant)
        self.discriminator = DCGANDiscriminator(hyper.width, spec.channels, spec.image_size, norm=hyper.critic_norm)
        self.discriminator.apply(dcgan_init)


@register_model("lkgan-small")
class LKGANSmall(LKGANBase):
    variant, size = "small", 64
    Hyper = LKGANSmallHyper


@register_model("lkgan-v1")
class LKGANV1(LKGANBase):
    variant, size = "v1", 128


@register_model("lkgan-v2")
class LKGANV2(LKGANBase):
    variant, size = "v2", 128
