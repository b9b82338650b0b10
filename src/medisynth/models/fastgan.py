"""FastGAN (Liu et al., "Towards Faster and Stabilized GAN Training for High-fidelity Few-shot
Image Synthesis", ICLR 2021), made class-conditional: the default generator of medisynth.

Built for fewer than 1,000 training images and little compute, which is the medisynth setting.

Generator: z concatenated with a class embedding -> 4x4 (transposed conv) -> upsampling blocks
(nearest x2, 3x3 conv, norm, GLU; every other block has two convs, as in the paper's
"UpBlockComp") -> 3x3 conv -> tanh. Every norm is a class-conditional BatchNorm (the class
embedding sets each channel's gain and bias; de Vries et al. 2017). By default only the last
resolution sees the class (``class_from``): the coarser layers get a zero embedding, so the
layout is learned from every image and the few images of a small class only steer the finer
layers. Skip-layer channel excitation (SLE): a low-resolution feature map is pooled to 4x4,
turned into one gate per channel of a feature map 8x (images up to 128 px) or 16x (the paper,
256 px and up) larger, and multiplies it: cheap long skips that carry the global layout. Options measured and left
off (README "Which generator?"): the paper's per-pixel noise after each conv of the two-conv blocks (``noise``),
bilinear instead of nearest upsampling (``upsample``), more channels everywhere (``width``) or in the finest layers
only (``min_channels``), a blur before D's strided convs (``d_blur``), the LeCam regulariser (``lecam``) and a
local, per-patch adversarial output (``local_weight``).

Discriminator: a 4x4 stride-2 conv, then residual down blocks (a 4x4 stride-2 conv path plus an
average-pool + 1x1 conv path, as in the paper) down to 8x8; spectral norm on every conv and
linear layer. Its 8x8 features give a projection output (Miyato & Koyama 2018): per position,
a linear logit plus the inner product of the features with a class embedding, averaged over
the 8x8 grid. It is also a self-supervised encoder: on real images, one small decoder rebuilds
the whole (augmented) image at up to 32 px from the 8x8 features and another rebuilds a random
quadrant from the matching quarter of the 16x16 features; their MSE is added to D's loss (the
paper uses a perceptual loss; medisynth has no pretrained weights to measure one with).

Auxiliary classifier (``class_loss``, on by default; AC-GAN, Odena et al. 2017): a linear head on
D's pooled 8x8 features learns the class of real images (cross-entropy added to D's loss) and the
generator is asked to make images that head puts in their class (the same cross-entropy on fakes,
added to G's loss): a second, explicit class signal beside the projection.

Transitional training (``condition_ramp``, off by default; Shahbazi et al., ICLR 2022): the GAN starts
unconditional and the class is ramped into G's embedding and into the loss (hinge of D's unconditional logit plus the
ramp weight times that of the conditional one).

Loss: hinge, optionally with the LeCam regulariser (``lecam``, off by default; Tseng et al., CVPR 2021). DiffAugment
with adaptive probability (``medisynth.models.ada``) on everything D sees.
``discriminator_score`` is the sigmoid of D's logit, so ``--min-d-score`` works as for cgan.

Structure read from the paper and lucidrains/lightweight-gan; the code is medisynth's own.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from medisynth.errors import MedisynthError
from medisynth.models.ada import ADAHyper
from medisynth.models.base import DataSpec, register_model
from medisynth.models.gan import GANModel
from medisynth.models.layers import (check_choice, check_non_negative, check_positive, check_size, global_mean,
                                     log2_int, set_requires_grad, standard_normal, standardise_channels)

SIZES = tuple(2**k for k in range(5, 11))  # 32 .. 1024
#: channels at each resolution, as multiples of ``width`` (the paper's table, with its ngf = 64 -> width)
CHANNEL_MULTIPLIER = {4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}


@dataclass
class FastGANHyper(ADAHyper):  # + diffaugment and the ADA settings
    latent_dim: int = 128
    # channels at resolution r: width x CHANNEL_MULTIPLIER[r] (the paper uses 64). Sized for a few CPU minutes: at
    # width 16 and batch 64 a 128 px step took ~5 CPU s, and a 1-minute run (11 steps) drew flat grey; at width 8
    # and batch 8 the same minute was 253 steps (docs/fastgan.md, "The few-minute recipe")
    width: int = 8
    max_channels: int = 512
    # the fewest channels at any resolution: raises only the finest layers (at width 8, 64 px: 16 -> min_channels at
    # 32 and 64 px), where G draws the thin vessels and lesion dots, at less cost than a larger width. 32 was worse
    # at 10 CPU minutes (1.7x the cost of a step; README "Which generator?")
    min_channels: int = 4
    embed_dim: int = 64  # class embedding of the generator
    lr: Optional[float] = None  # shortcut: sets lr_g and lr_d
    # twice the earlier defaults (2e-4 / 8e-4): at batch 8 they drew the phantom's vessel arcades in 2 of 3
    # five-minute seeds; the earlier rates at batch 8 or 16 drew none (seed 0)
    lr_g: float = 4e-4
    # D learns 4x faster than G (two time-scale update rule, Heusel et al. 2017): with equal rates the small CPU-sized
    # D sat at the hinge origin (loss_D ~ 2) and G collapsed to one image per class within 1,500 steps
    lr_d: float = 1.6e-3
    betas: tuple[float, float] = (0.5, 0.999)
    recon_weight: float = 1.0  # weight of the discriminator's reconstruction (self-supervision) loss
    # weight of the mode-seeking term (Mao et al. 2019; 0 = off): without it the minority grades of the phantom
    # collapsed to one image each within ~1,000 steps; 1.0 drowned the hinge loss and drew noise
    mode_seeking: float = 0.05
    # what the mode-seeking term compares: "pixels" (MSGAN) or "structure" (each image's channels standardised
    # first, so that a pair differing only in brightness or contrast counts as alike: the 10-minute grids' rows of
    # one picture in several tones)
    mode_seeking_on: str = "pixels"
    d_norm: str = "batch"  # the discriminator's normalisation: "batch" (the paper) or "none" (spectral norm alone)
    # weight of the auxiliary classifier's cross-entropy (AC-GAN) in D's and G's loss; 0 = no head. Runs saved before
    # it existed had none ("before"). On the phantom set it made synthetic images hurt the utility study less
    # (difference to oversampling -0.26 instead of -0.39 over 3 seeds, better in each)
    class_loss: float = field(default=1.0, metadata={"before": 0.0})
    # images per group of the minibatch standard deviation feature in D (Karras et al. 2018); 0 = off. A batch of
    # near-identical fakes has a spread no real batch has, so D can penalise the one-pose rows of the 10-minute runs
    mbstd_group: int = 0
    # transitional training (Shahbazi et al., ICLR 2022, "Collapse by Conditioning"): steps (start, end) over which
    # the class enters the generator and the adversarial loss, from 0 (an unconditional GAN, whose one D sees every
    # image) to 1; (0, 0) = conditional from the first step. Meant for the one-pose rows of the rare classes
    condition_ramp: tuple[int, int] = (0, 0)
    # the lowest resolution whose layers see the class: a power of two (4 = every layer), or counted from the finest
    # like a Python index (-1 = the last resolution only, -2 = the last two); below it G takes a zero embedding, so the
    # layout (disc, vessels, body outline) is learned from every image and only the finer layers differ by class. With
    # every layer conditional (runs saved before the field, the "before") the small classes' 16-30 images drew rows of
    # one pose; the last two (session 17's default, saved as null) varied them; the last one alone drew the clearest
    # fundi, with the lowest phantom KID and a balanced mix above oversampling on average (README "Which generator?")
    class_from: int = field(default=-1, metadata={"before": 4})
    # per-pixel noise after each conv of the two-conv blocks (the paper's code; NoiseInjection): random fine detail
    noise: bool = False
    # the generator's x2 upsampling: "nearest" (the paper) or "bilinear" (smoother: the 10-minute grids draw grades
    # 3-4's scattered lesions as axis-aligned dashes and boxes, the grid of nearest-upsampled features)
    upsample: str = "nearest"
    # a [1, 2, 1] blur before each of D's stride-2 convs (anti-aliased downsampling, Zhang 2019, as in StyleGAN2's D).
    # Measured worse: it removes the 2 px period from all D sees, and G then drew vertical 2 px stripes unpunished
    d_blur: bool = False
    # weight of the LeCam regulariser (Tseng et al., CVPR 2021, "Regularizing Generative Adversarial Networks under
    # Limited Data"; 0 = off, the paper's 0.3 with DiffAugment): D's logits on real images are pulled below the moving
    # average of its logits on fakes and vice versa, so that D cannot drift into the ever-larger margins it reaches by
    # memorising a few hundred images. Worse at 10 CPU minutes on the phantom (2 seeds; README "Which generator?"):
    # there D does not memorise (ADA's p falls back to 0), so there was no memorising for it to correct
    lecam: float = 0.0
    # weight of a second, local adversarial output (0 = off): an unconditional logit at each position of D's 16x16
    # features (at 64 px each sees an 18 px patch), with the hinge taken per position as in a PatchGAN (Isola et al.
    # 2017), so that G is told where in an image a patch looks wrong, not only one verdict per image. Worse at 10 CPU
    # minutes on the phantom (2 seeds; docs/bench_quality.md): fundi with two discs, striped lesions in grades 3-4
    local_weight: float = 0.0


def hinge_discriminator_loss(real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
    """D's hinge loss: mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))."""
    return F.relu(1.0 - real_logit).mean() + F.relu(1.0 + fake_logit).mean()


def condition_weight(step: int, ramp: tuple[int, int]) -> float:
    """How much of the class the generator and the adversarial loss see at ``step``: 0 before ``ramp[0]``, rising
    linearly to 1 at ``ramp[1]``; always 1 for a ramp that ends at 0 (the default, no transition)."""
    start, end = ramp
    if end <= 0:
        return 1.0
    return min(max((step - start) / max(end - start, 1), 0.0), 1.0)


def channels_at(resolution: int, width: int, max_channels: int, min_channels: int = 4) -> int:
    return max(min_channels, min(max_channels, int(width * CHANNEL_MULTIPLIER[resolution])))


def resolutions_up_to(size: int) -> list[int]:
    """The generator's resolutions for ``size``-pixel images: 4, 8, ..., ``size``."""
    return [r for r in CHANNEL_MULTIPLIER if r <= size]


def _init(module: nn.Module) -> nn.Module:
    """N(0, 0.02) weights, zero biases (the paper's init), applied before any spectral norm."""
    nn.init.normal_(module.weight, 0.0, 0.02)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)
    return module


def sn(module: nn.Module) -> nn.Module:
    return spectral_norm(_init(module))


# -- generator ---------------------------------------------------------------------------------
class ConditionalBatchNorm(nn.Module):
    """BatchNorm without its own affine; gain 1 + W_g e(y) and bias W_b e(y) from the class embedding."""

    def __init__(self, channels: int, embed_dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.affine = nn.Linear(embed_dim, 2 * channels)
        nn.init.zeros_(self.affine.weight)  # starts as plain BatchNorm; the class signal is learned
        nn.init.zeros_(self.affine.bias)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        gain, bias = self.affine(embedding).to(x.dtype)[:, :, None, None].chunk(2, dim=1)
        return self.norm(x) * (1 + gain) + bias


class NoiseInjection(nn.Module):
    """Adds a learned multiple (one scalar, 0 at the start) of a per-pixel N(0, 1) map, as the paper's code does after
    StyleGAN (Karras et al. 2019): a source of detail placed at random, such as the scattered lesions of grades 3-4,
    that the deterministic layers otherwise draw as a pattern tied to the feature grid."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)


class UpBlock(nn.Module):
    """x2 upsampling (nearest or bilinear), then one or two (3x3 conv -> [noise] -> conditional BN -> GLU) layers."""

    def __init__(self, in_channels: int, out_channels: int, embed_dim: int, convs: int, noisy: bool = False,
                 upsample: str = "nearest"):
        super().__init__()
        self.upsample = upsample
        chans = [in_channels] + [out_channels] * convs
        self.convs = nn.ModuleList(_init(nn.Conv2d(a, 2 * b, 3, 1, 1, bias=False)) for a, b in zip(chans, chans[1:]))
        self.norms = nn.ModuleList(ConditionalBatchNorm(2 * out_channels, embed_dim) for _ in range(convs))
        self.noise = nn.ModuleList(NoiseInjection() for _ in range(convs)) if noisy else None

    @property
    def noise_maps(self) -> int:
        """How many noise maps ``forward`` takes."""
        return len(self.noise) if self.noise is not None else 0

    def forward(self, x: torch.Tensor, embedding: torch.Tensor, noise: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode=self.upsample)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = conv(x)
            if self.noise is not None:
                x = self.noise[i](x, noise[i])
            x = F.glu(norm(x, embedding), dim=1)
        return x


class SkipLayerExcitation(nn.Module):
    """Gates for the channels of a high-resolution map, computed from a low-resolution one (the paper's SLE)."""

    def __init__(self, low_channels: int, high_channels: int):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(4),
            _init(nn.Conv2d(low_channels, high_channels, 4, 1, 0, bias=False)),
            nn.LeakyReLU(0.1),
            _init(nn.Conv2d(high_channels, high_channels, 1, 1, 0, bias=False)),
            nn.Sigmoid(),
        )

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        return high * self.gate(low)


def sle_pairs(size: int) -> dict[int, int]:
    """{high resolution: low resolution} of the SLE links: 8x apart up to 128 px, 16x (the paper) above."""
    gap = 16 if size >= 256 else 8
    return {low * gap: low for low in (4, 8, 16, 32) if low * gap <= size}


class FastGANGenerator(nn.Module):
    """(z, labels, *noise maps) -> images; without the noise maps, those with ``noise`` draw their own from torch's
    global RNG (training: seeded and checkpointed by the trainer). ``draw_noise`` draws them from a given RNG."""

    def __init__(self, nz: int, width: int, max_channels: int, nc: int, size: int, num_classes: int, embed_dim: int,
                 transitional: bool = False, class_from: int = 4, noise: bool = False, upsample: str = "nearest",
                 min_channels: int = 4):
        super().__init__()
        ch = {r: channels_at(r, width, max_channels, min_channels) for r in resolutions_up_to(size)}
        self.class_from = class_from
        self.embed = nn.Embedding(num_classes, embed_dim)
        if transitional:  # a buffer, so a checkpoint samples with the weight its last step trained with
            self.register_buffer("condition_weight", torch.ones(()))
        self.init_conv = _init(nn.ConvTranspose2d(nz + embed_dim, 2 * ch[4], 4, 1, 0, bias=False))
        self.init_norm = ConditionalBatchNorm(2 * ch[4], embed_dim)
        self.resolutions = resolutions_up_to(size)[1:]  # 8 .. size: one block each
        # two convs at 8, 32, 128... (the paper's UpBlockComp, with the noise when asked for), one at 16, 64, 256...
        self.blocks = nn.ModuleList(
            UpBlock(ch[r // 2], ch[r], embed_dim, convs=2, noisy=noise, upsample=upsample) if log2_int(r) % 2
            else UpBlock(ch[r // 2], ch[r], embed_dim, convs=1, upsample=upsample) for r in self.resolutions
        )
        self.sle_low = sle_pairs(size)
        self.sle = nn.ModuleDict({str(high): SkipLayerExcitation(ch[low], ch[high]) for high, low in self.sle_low.items()})
        self.to_image = _init(nn.Conv2d(ch[size], nc, 3, 1, 1))

    def draw_noise(self, n: int, device: torch.device,
                   generator: Optional[torch.Generator] = None) -> list[torch.Tensor]:
        """The noise maps for ``n`` images (n x 1 x r x r each, coarsest first; none without ``noise``)."""
        return [standard_normal((n, 1, r, r), device, generator)
                for r, block in zip(self.resolutions, self.blocks) for _ in range(block.noise_maps)]

    def forward(self, z: torch.Tensor, labels: torch.Tensor, *noise: torch.Tensor) -> torch.Tensor:
        noise = noise or tuple(self.draw_noise(len(z), z.device))
        embedding = self.embed(labels).to(z.dtype)
        if hasattr(self, "condition_weight"):
            embedding = embedding * self.condition_weight.to(z.dtype)
        blind = torch.zeros_like(embedding)  # what the layers below class_from get
        coarse = embedding if self.class_from <= 4 else blind
        x = self.init_conv(torch.cat([z, coarse], dim=1)[:, :, None, None])
        x = F.glu(self.init_norm(x, coarse), dim=1)
        features = {4: x}
        maps = iter(noise)
        for resolution, block in zip(self.resolutions, self.blocks):
            seen = embedding if resolution >= self.class_from else blind
            x = block(x, seen, [next(maps) for _ in range(block.noise_maps)])
            if resolution in self.sle_low:
                x = self.sle[str(resolution)](features[self.sle_low[resolution]], x)
            features[resolution] = x
        return torch.tanh(self.to_image(x))


# -- discriminator -----------------------------------------------------------------------------
class Blur(nn.Module):
    """A [1, 2, 1] x [1, 2, 1] / 16 low-pass filter per channel, same size out (zero padding). No parameters and no
    state: a discriminator with it loads the checkpoints of one without."""

    def __init__(self):
        super().__init__()
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (taps[:, None] * taps[None, :] / 16)[None, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.kernel.to(x.dtype).expand(x.shape[1], 1, 3, 3)
        return F.conv2d(x, kernel, padding=1, groups=x.shape[1])


def blur_or_identity(blur: bool) -> nn.Module:
    return Blur() if blur else nn.Identity()


class DownBlock(nn.Module):
    """Halve the resolution: (4x4 s2 conv, BN, LReLU, 3x3 conv, BN, LReLU) averaged with (avg-pool, 1x1 conv, BN, LReLU);
    with ``blur`` the strided conv sees its input low-passed."""

    def __init__(self, in_channels: int, out_channels: int, norm: str = "batch", blur: bool = False):
        super().__init__()
        self.blur = blur_or_identity(blur)
        def normalise() -> nn.Module:
            return nn.BatchNorm2d(out_channels) if norm == "batch" else nn.Identity()
        self.main = nn.Sequential(
            sn(nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=False)), normalise(), nn.LeakyReLU(0.2),
            sn(nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)), normalise(), nn.LeakyReLU(0.2),
        )
        self.direct = nn.Sequential(
            nn.AvgPool2d(2), sn(nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False)),
            normalise(), nn.LeakyReLU(0.2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(self.blur(x)) + self.direct(x)) / 2


class Decoder(nn.Module):
    """8x8 features -> an image of ``out_size`` (x2 nearest + 3x3 conv + BN + GLU per doubling), tanh out."""

    def __init__(self, in_channels: int, nc: int, out_size: int, channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(log2_int(out_size) - 3):
            layers += [nn.Upsample(scale_factor=2.0, mode="nearest"), _init(nn.Conv2d(c, 2 * channels, 3, 1, 1, bias=False)),
                       nn.BatchNorm2d(2 * channels), nn.GLU(dim=1)]
            c = channels
        layers += [_init(nn.Conv2d(c, nc, 3, 1, 1)), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


class MinibatchStd(nn.Module):
    """One more feature map for D's logit: how much the features vary within groups of ``group`` consecutive images of
    the batch (ProGAN's minibatch standard deviation); a batch that does not divide uses the largest group size that
    does. Consecutive, not strided as in ProGAN: under torchrun each process holds a contiguous share of the global
    batch, so when that share is a multiple of the group the groups are the ones a single process would form."""

    def __init__(self, group: int):
        super().__init__()
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        group = next(g for g in range(min(self.group, n), 0, -1) if n % g == 0)
        y = x.float().reshape(n // group, group, c, h, w)
        spread = (y.var(dim=1, unbiased=False) + 1e-8).sqrt().mean(dim=(1, 2, 3))  # one figure per group
        spread = spread.repeat_interleave(group)[:, None, None, None].expand(n, 1, h, w)
        return torch.cat([x, spread.to(x.dtype)], dim=1)


class LeCamAnchors(nn.Module):
    """The anchors of the LeCam regulariser (Tseng et al., CVPR 2021): moving averages (decay 0.99, the paper's; from
    0, where a fresh D's logits sit) of D's mean logit on real and on generated images. Buffers, so that a resumed run
    goes on with the anchors it had; the global batch's means under torchrun, so that every rank holds the same."""

    decay = 0.99

    def __init__(self):
        super().__init__()
        self.register_buffer("real", torch.zeros((), dtype=torch.float32))
        self.register_buffer("fake", torch.zeros((), dtype=torch.float32))

    def penalty(self, real_logit: torch.Tensor, fake_logit: torch.Tensor) -> torch.Tensor:
        """Move the anchors with this batch (as the paper's code does, before the penalty), then
        mean(relu(D(real) - anchor_fake)^2) + mean(relu(anchor_real - D(fake))^2)."""
        with torch.no_grad():
            self.real.lerp_(global_mean(real_logit.detach().float()), 1 - self.decay)
            self.fake.lerp_(global_mean(fake_logit.detach().float()), 1 - self.decay)
        return (F.relu(real_logit.float() - self.fake).pow(2).mean()
                + F.relu(self.real - fake_logit.float()).pow(2).mean())


@dataclass
class Judgement:
    """What the discriminator says about a batch."""

    logit: torch.Tensor  # the projection output, one per image: the adversarial logit
    unconditional: torch.Tensor  # its linear term alone: an unconditional discriminator's logit
    recon: Optional[torch.Tensor]  # reconstruction MSE, when a quadrant was asked for
    class_logits: Optional[torch.Tensor]  # the auxiliary classifier's, when asked for and D has one
    local: Optional[torch.Tensor] = None  # N x 256 local logits (one per 16x16 position), when D has them


class FastGANDiscriminator(nn.Module):
    def __init__(self, width: int, max_channels: int, nc: int, size: int, num_classes: int, norm: str = "batch",
                 classifier: bool = False, mbstd_group: int = 0, blur: bool = False, min_channels: int = 4,
                 local: bool = False):
        super().__init__()
        ch = {r: channels_at(r, width, max_channels, min_channels) for r in resolutions_up_to(size)}
        self.blur_image = blur_or_identity(blur)
        self.from_image = nn.Sequential(sn(nn.Conv2d(nc, ch[size // 2], 4, 2, 1, bias=False)), nn.LeakyReLU(0.2))
        self.down_resolutions = [2**k for k in range(log2_int(size) - 2, 2, -1)]  # size/4 .. 8
        self.blocks = nn.ModuleList(DownBlock(ch[2 * r], ch[r], norm, blur) for r in self.down_resolutions)
        self.minibatch_std = MinibatchStd(mbstd_group) if mbstd_group else None
        self.logit = sn(nn.Conv2d(ch[8] + (1 if mbstd_group else 0), 1, 1, 1, 0))
        self.class_embed = sn(nn.Embedding(num_classes, ch[8]))
        # only when asked for: runs trained without it keep loading their checkpoints
        self.classifier = sn(nn.Linear(ch[8], num_classes)) if classifier else None
        self.local_logit = sn(nn.Conv2d(ch[16], 1, 1, 1, 0)) if local else None  # likewise
        self.recon_size = min(size, 32)
        self.part_size = min(size // 2, 32)
        decoder_channels = max(8, ch[32] // 2)
        self.decode_whole = Decoder(ch[8], nc, self.recon_size, decoder_channels)
        self.decode_part = Decoder(ch[16], nc, self.part_size, decoder_channels)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(16x16 features, 8x8 features)."""
        x = self.from_image(self.blur_image(x))
        feat16 = x
        for resolution, block in zip(self.down_resolutions, self.blocks):
            x = block(x)
            if resolution == 16:
                feat16 = x
        return feat16, x

    def judge(self, x: torch.Tensor, labels: torch.Tensor, quadrant: Optional[int] = None,
              classes: bool = False) -> Judgement:
        """D's outputs for images ``x`` of classes ``labels``; with ``quadrant`` (0..3, row-major) also the
        reconstruction error (the whole image from the 8x8 features, that quadrant from the matching quarter of
        the 16x16 features); with ``classes`` the auxiliary classifier's logits, where D has one (asked for only
        where a loss uses them: each call of a spectral-normed layer advances its power iteration)."""
        feat16, feat8 = self.features(x)
        # the reconstruction before the logits, as the code before this method had it: the backward pass then sums
        # the gradients into the features in the same order (only the classifier on real images moved, which changes
        # a run's numbers in the last bits; with the earlier order the default recipe was checked bit for bit)
        recon = self.reconstruction_error(x, feat16, feat8, quadrant) if quadrant is not None else None
        logit_input = self.minibatch_std(feat8) if self.minibatch_std is not None else feat8
        logits = self.logit(logit_input).flatten(1)  # N x 64 positions
        projection = torch.einsum("nchw,nc->nhw", feat8, self.class_embed(labels).to(feat8.dtype)).flatten(1)
        return Judgement(
            logit=(logits + projection).mean(dim=1),
            unconditional=logits.mean(dim=1),
            recon=recon,
            class_logits=self.classifier(feat8.mean(dim=(2, 3))) if (classes and self.classifier is not None) else None,
            local=self.local_logit(feat16).flatten(1) if self.local_logit is not None else None,
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.judge(x, labels).logit

    def reconstruction_error(self, x: torch.Tensor, feat16: torch.Tensor, feat8: torch.Tensor, quadrant: int) -> torch.Tensor:
        whole = self.decode_whole(feat8)
        qy, qx = divmod(quadrant, 2)
        h = feat16.shape[-1] // 2
        part = self.decode_part(feat16[:, :, qy * h : (qy + 1) * h, qx * h : (qx + 1) * h])
        half = x.shape[-1] // 2
        x_part = x[:, :, qy * half : (qy + 1) * half, qx * half : (qx + 1) * half]
        target_whole = F.interpolate(x, size=whole.shape[-2:], mode="area") if whole.shape[-1] != x.shape[-1] else x
        target_part = F.interpolate(x_part, size=part.shape[-2:], mode="area") if part.shape[-1] != half else x_part
        return F.mse_loss(whole.float(), target_whole.float()) + F.mse_loss(part.float(), target_part.float())


@register_model("fastgan")
class FastGAN(GANModel):
    conditional = True
    default_batch_size = 8  # the paper's; many small steps learn more in minutes than a few large ones
    Hyper = FastGANHyper
    log_keys = ("Loss_D", "Loss_G", "D(x)", "D(G(z))", "recon", "ada_p")

    @classmethod
    def saved_hyper(cls, values: dict) -> dict:
        out = super().saved_hyper(values)
        if "class_from" in out and out["class_from"] is None:  # session 17's default: half the image size
            out["class_from"] = -2
        return out

    @classmethod
    def check_spec(cls, spec: DataSpec) -> None:
        check_size(cls.name, spec, SIZES)

    def __init__(self, spec: DataSpec, hyper: FastGANHyper):
        check_positive(self.name, latent_dim=hyper.latent_dim, width=hyper.width, embed_dim=hyper.embed_dim,
                       max_channels=hyper.max_channels, min_channels=hyper.min_channels)
        if hyper.min_channels > hyper.max_channels:
            raise MedisynthError(f"{self.name}: min_channels={hyper.min_channels} is above max_channels="
                                 f"{hyper.max_channels}; lower min_channels or raise max_channels")
        check_non_negative(self.name, class_loss=hyper.class_loss, lecam=hyper.lecam, local_weight=hyper.local_weight)
        check_choice(self.name, "mode_seeking_on", hyper.mode_seeking_on, ("pixels", "structure"))
        check_choice(self.name, "upsample", hyper.upsample, ("nearest", "bilinear"))
        if hyper.mbstd_group < 0 or hyper.mbstd_group == 1:
            raise MedisynthError(f"{self.name}: mbstd_group={hyper.mbstd_group}; 0 (off) or a group of 2 or more images")
        super().__init__(spec, hyper)
        ramp = hyper.condition_ramp
        if len(ramp) != 2 or not all(isinstance(v, int) and v >= 0 for v in ramp) or (ramp[1] and ramp[1] <= ramp[0]):
            raise MedisynthError(f"{self.name}: condition_ramp={list(ramp)}; give [start, end] steps with end > start "
                                 "(e.g. --hp condition_ramp=[1000,2000]), or [0, 0] for a conditional GAN from the first step")
        resolutions = resolutions_up_to(spec.image_size)
        if hyper.class_from not in resolutions and not -len(resolutions) <= hyper.class_from < 0:
            raise MedisynthError(f"{self.name}: class_from={hyper.class_from}; give a resolution of the generator, a "
                                 f"power of two from 4 to the image size {spec.image_size} (4 = every layer sees the "
                                 f"class), or count from the finest: -1 = the last resolution, down to "
                                 f"-{len(resolutions)} = every layer")
        class_from = resolutions[hyper.class_from] if hyper.class_from < 0 else hyper.class_from
        self.generator = FastGANGenerator(hyper.latent_dim, hyper.width, hyper.max_channels, spec.channels,
                                          spec.image_size, spec.num_classes, hyper.embed_dim, transitional=ramp[1] > 0,
                                          class_from=class_from, noise=hyper.noise, upsample=hyper.upsample,
                                          min_channels=hyper.min_channels)
        check_choice(self.name, "d_norm", hyper.d_norm, ("batch", "none"))
        self.discriminator = FastGANDiscriminator(hyper.width, hyper.max_channels, spec.channels, spec.image_size,
                                                  spec.num_classes, hyper.d_norm, classifier=hyper.class_loss > 0,
                                                  mbstd_group=hyper.mbstd_group, blur=hyper.d_blur,
                                                  min_channels=hyper.min_channels, local=hyper.local_weight > 0)
        # only when asked for: runs trained without it keep their checkpoints' keys
        self.lecam_anchors = LeCamAnchors() if hyper.lecam > 0 else None

    def generator_inputs(self, z, labels, generator=None):
        return (z, labels, *self.generator.draw_noise(len(z), z.device, generator))

    def training_step(self, batch, optimizers, step):
        real, labels = batch["image"], batch["label"]
        opt_g, opt_d = optimizers["generator"], optimizers["discriminator"]
        pairs = 2 * (real.shape[0] // 2) if self.hyper.mode_seeking > 0 else 0
        fake_labels = labels
        if pairs:
            # mode seeking pairs neighbours (0, 1), (2, 3)...: each odd fake repeats its even neighbour's class.
            # Neighbours, not halves, so that the ranks' even slices of a global batch hold the same pairs.
            fake_labels = labels.clone()
            fake_labels[1:pairs:2] = labels[0:pairs:2]
        weight = condition_weight(step, self.hyper.condition_ramp)
        if self.transitional:
            self.generator.condition_weight.fill_(weight)
        z = self.sample_z(real.shape[0], real.device)
        fake = self.generator(z, fake_labels)

        # D: hinge loss, plus reconstructing the real images it saw (the self-supervised part)
        set_requires_grad(self.discriminator, True)
        opt_d.zero_grad(set_to_none=True)
        quadrant = int(torch.randint(4, ()))  # a scalar: never mistaken for a per-sample draw under torchrun
        on_real = self.discriminator.judge(self.augment(real), labels, quadrant, classes=True)
        on_fake = self.discriminator.judge(self.augment(fake.detach()), fake_labels)
        loss_d = self.adversarial(hinge_discriminator_loss, (on_real, on_fake), weight)
        loss_d = loss_d + self.hyper.recon_weight * on_real.recon
        if on_real.local is not None:  # unconditional, so not ramped
            loss_d = loss_d + self.hyper.local_weight * hinge_discriminator_loss(on_real.local.float(),
                                                                                 on_fake.local.float())
        if on_real.class_logits is not None:  # the auxiliary classifier learns the classes of real images only
            loss_d = loss_d + self.hyper.class_loss * F.cross_entropy(on_real.class_logits.float(), labels)
        # the logit D is always trained on: under transitional training the class term starts untrained
        d_real, d_fake = ((on_real.unconditional, on_fake.unconditional) if self.transitional
                          else (on_real.logit, on_fake.logit))
        if self.lecam_anchors is not None:
            lecam = self.lecam_anchors.penalty(d_real, d_fake)
            loss_d = loss_d + self.hyper.lecam * lecam
        loss_d.backward()
        opt_d.step()
        d_real, d_fake = d_real.detach().float(), d_fake.detach().float()
        self.augment.observe(d_real)

        set_requires_grad(self.discriminator, False)
        opt_g.zero_grad(set_to_none=True)
        on_gen = self.discriminator.judge(self.augment(fake), fake_labels, classes=True)
        loss_g = self.adversarial(lambda gen_logit: -gen_logit.mean(), (on_gen,), weight)
        if on_gen.local is not None:
            loss_g = loss_g - self.hyper.local_weight * on_gen.local.float().mean()
        if on_gen.class_logits is not None:  # the class is asked of G only as far as the ramp has reached
            loss_g = loss_g + weight * self.hyper.class_loss * F.cross_entropy(on_gen.class_logits.float(), fake_labels)
        if pairs:
            # Mao et al. (MSGAN): for one class, images should differ as much as their latents do
            # eps 0.04 in [-1, 1] units: the diversity monitor's 0.02 in [0, 1] units
            compared = standardise_channels(fake, 0.04) if self.hyper.mode_seeking_on == "structure" else fake
            image_gap = global_mean((compared[0:pairs:2] - compared[1:pairs:2]).abs().float())
            latent_gap = global_mean((z[0:pairs:2] - z[1:pairs:2]).abs().float())
            loss_g = loss_g + self.hyper.mode_seeking / (image_gap / latent_gap + 1e-5)
        loss_g.backward()
        opt_g.step()
        set_requires_grad(self.discriminator, True)

        keys = self.log_keys + (("lecam",) if self.lecam_anchors is not None else ())
        figures = [loss_d, loss_g, torch.sigmoid(d_real).mean(), torch.sigmoid(d_fake).mean(), on_real.recon.detach(),
                   self.augment.p.to(loss_d.dtype)] + ([lecam.to(loss_d.dtype)] if self.lecam_anchors is not None else [])
        logged = dict(zip(keys, torch.stack(figures).detach().tolist()))  # one host read per step
        if self.transitional:
            logged["condition"] = weight
        return logged

    @property
    def transitional(self) -> bool:
        return self.hyper.condition_ramp[1] > 0

    def adversarial(self, loss, judgements: tuple[Judgement, ...], weight: float) -> torch.Tensor:
        """``loss`` of the judgements' adversarial logits; under transitional training the paper's
        L(unconditional logits) + weight x L(conditional logits)."""
        conditional = loss(*(j.logit.float() for j in judgements))
        if not self.transitional:
            return conditional
        return loss(*(j.unconditional.float() for j in judgements)) + weight * conditional
