"""Building blocks shared by the GANs and VAEs: the Radford DCGAN networks, latent sampling, checks."""
from __future__ import annotations

import contextlib
import math
from typing import Iterable, Iterator, Sequence

import torch
from torch import nn

from medisynth.errors import MedisynthError
from medisynth.models.base import DataSpec

POWERS_OF_TWO_32_256 = (32, 64, 128, 256)


def check_size(model: str, spec: DataSpec, allowed: Sequence[int]) -> None:
    """Raise MedisynthError unless ``spec.image_size`` is one of ``allowed`` and channels >= 1."""
    if spec.image_size not in allowed:
        raise MedisynthError(
            f"model {model!r} cannot make {spec.image_size}x{spec.image_size} images; it makes "
            f"{', '.join(str(s) for s in allowed)} px. Prepare the data at one of these sizes (medisynth prepare --size N)"
        )
    if spec.channels < 1:
        raise MedisynthError(f"model {model!r}: images need at least one channel (got {spec.channels})")


def check_positive(model: str, **values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise MedisynthError(f"model {model!r}: hyper-parameter {name} must be positive (got {value})")


def check_non_negative(model: str, **values: float) -> None:
    """For weights and counts where 0 means "off": refuse only negative values."""
    for name, value in values.items():
        if value < 0:
            raise MedisynthError(f"model {model!r}: hyper-parameter {name} must be >= 0, 0 for off (got {value})")


def check_choice(model: str, name: str, value: object, choices: Sequence[object]) -> None:
    """Raise MedisynthError unless hyper-parameter ``name``'s ``value`` is one of ``choices``."""
    if value not in choices:
        *others, last = [str(c) for c in choices]
        listed = f"{', '.join(others)} or {last}" if others else last
        raise MedisynthError(f"model {model!r}: hyper-parameter {name}={value!r}; choose {listed}")


def log2_int(size: int) -> int:
    return int(round(math.log2(size)))


# -- the Radford et al. DCGAN, as in ../shared/baselines/reference_dcgan.py -------------------------
def dcgan_generator_layers(nz: int, ngf: int, nc: int, size: int) -> nn.Sequential:
    """Transposed convs 1x1 -> 4x4 -> ... -> size, BatchNorm + ReLU, tanh out (layer for layer the reference)."""
    ups = log2_int(size) - 3  # 4x4 -> size/2; the last layer doubles once more
    layers: list[nn.Module] = [
        nn.ConvTranspose2d(nz, ngf * 2**ups, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 2**ups), nn.ReLU(True)
    ]
    for i in range(ups, 0, -1):
        layers += [nn.ConvTranspose2d(ngf * 2**i, ngf * 2 ** (i - 1), 4, 2, 1, bias=False),
                   nn.BatchNorm2d(ngf * 2 ** (i - 1)), nn.ReLU(True)]
    layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
    return nn.Sequential(*layers)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "layer":  # LayerNorm over C x H x W with a per-channel affine: safe for the WGAN-GP critic
        return nn.GroupNorm(1, channels)
    if kind == "none":
        return nn.Identity()
    raise MedisynthError(f"critic_norm {kind!r}: choose batch, layer or none")


def dcgan_discriminator_layers(ndf: int, nc: int, size: int, norm: str = "batch") -> nn.Sequential:
    """Strided convs size -> 4x4 -> 1 logit, LeakyReLU(0.2); ``norm="batch"`` is the reference D.

    The WGAN-GP critic uses ``norm="layer"`` or ``"none"``: the gradient penalty is taken per
    sample, which BatchNorm (mixing the samples of a batch) would break (Gulrajani et al. 2017)."""
    downs = log2_int(size) - 3
    bias = norm == "none"
    layers: list[nn.Module] = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
    for i in range(downs):
        layers += [nn.Conv2d(ndf * 2**i, ndf * 2 ** (i + 1), 4, 2, 1, bias=bias),
                   _norm(norm, ndf * 2 ** (i + 1)), nn.LeakyReLU(0.2, True)]
    layers += [nn.Conv2d(ndf * 2**downs, 1, 4, 1, 0, bias=False)]
    return nn.Sequential(*layers)


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.: conv weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), norm shifts 0."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(nn.Module):
    """z (N x nz) -> images (N x nc x size x size) in [-1, 1]; ``labels`` is ignored (unconditional)."""

    def __init__(self, nz: int, ngf: int, nc: int, size: int):
        super().__init__()
        self.main = dcgan_generator_layers(nz, ngf, nc, size)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(z.reshape(z.shape[0], -1, 1, 1))


class DCGANDiscriminator(nn.Module):
    """images -> one logit (critic value for WGAN-GP) per image, shape N; ``labels`` is ignored."""

    def __init__(self, ndf: int, nc: int, size: int, norm: str = "batch"):
        super().__init__()
        self.main = dcgan_discriminator_layers(ndf, nc, size, norm)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.main(x).reshape(x.shape[0])


# -- latents, modes ------------------------------------------------------------------------------
def check_truncation(model: str, truncation: float) -> float:
    truncation = float(truncation)
    if not (truncation >= 0.0 and math.isfinite(truncation)):
        raise MedisynthError(
            f"model {model!r}: --truncation must be a number >= 0 (got {truncation}); "
            "1 = no truncation, smaller trades variety for typical images, 0 = every image the mean"
        )
    return truncation


def standard_normal(shape: tuple[int, ...], device: torch.device,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, 1) numbers on ``device``: from torch's global RNG, or drawn on ``generator``'s own device (a CPU generator
    stays valid for a CUDA model) and moved."""
    if generator is None:
        return torch.randn(shape, device=device)
    return torch.randn(shape, generator=generator, device=generator.device).to(device)


def sample_latent(
    n: int, dim: int, device: torch.device, generator: torch.Generator | None = None, truncation: float = 1.0
) -> torch.Tensor:
    """z ~ N(0, I) scaled by the truncation psi: z = mean + psi * (z - mean) with mean 0."""
    z = standard_normal((n, dim), device, generator)
    return z * truncation if truncation != 1.0 else z


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


@contextlib.contextmanager
def evaluating(net: nn.Module) -> Iterator[nn.Module]:
    """Eval mode (BatchNorm running statistics, no updates to them) for the block, then back."""
    was_training = net.training
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)


@torch.no_grad()
def recompute_batchnorm_statistics(net: nn.Module, inputs: Iterable[tuple]) -> None:
    """Re-estimate ``net``'s BatchNorm running statistics from forward passes over ``inputs``
    (argument tuples): an exact average over all of them, then every module's mode and momentum back.

    ``torch.optim.swa_utils.update_bn`` does this for networks of one argument; generators take
    two (latents and labels). Averaged weights (EMA, SWA) need statistics of their own: the live
    network's belong to other weights."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return
    flags = {m: m.training for m in net.modules()}
    momenta = {m: m.momentum for m in norms}
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # None: a cumulative average over every batch, not an exponential one
    net.train()
    try:
        for args in inputs:
            net(*args)
    finally:
        for m, flag in flags.items():
            m.training = flag
        for m, momentum in momenta.items():
            m.momentum = momentum


def standardise_channels(images: torch.Tensor, eps: float) -> torch.Tensor:
    """Each image's channels shifted and scaled to zero mean and unit spread; ``eps`` (in the images' units) keeps a
    flat image flat instead of amplifying its noise. Used where one picture in several tones must count as one."""
    return (images - images.mean((2, 3), keepdim=True)) / (images.std((2, 3), keepdim=True) + eps)


def set_requires_grad(net: nn.Module, flag: bool) -> None:
    """Freeze a network while the other one steps, so backward skips its weight gradients."""
    for p in net.parameters():
        p.requires_grad_(flag)


def check_labels(model: str, labels: torch.Tensor, num_classes: int) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise MedisynthError(
            f"model {model!r} was trained on {num_classes} classes (indices 0..{num_classes - 1}); "
            f"got class indices {int(labels.min())}..{int(labels.max())}"
        )


# -- data-parallel figures (torch.distributed directly: models sit below the training stage and must not import it)
def _ranks_active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def sum_over_ranks(figures: torch.Tensor) -> torch.Tensor:
    """``figures`` summed over the data-parallel ranks (unchanged on one process); no gradient."""
    if _ranks_active():
        torch.distributed.all_reduce(figures)
    return figures


def share_bounds(count: int, world: int, rank: int) -> tuple[int, int]:
    """Rank ``rank``'s contiguous share ``[start, stop)`` of ``count`` items split over ``world`` ranks;
    shares differ by one item at most (``medisynth.training.distributed.shard_bounds`` reads it too)."""
    return count * rank // world, count * (rank + 1) // world


def rank_rows(x: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of ``x``'s rows (all of them on one process): a batch that every rank
    drew alike, split so that a synchronised BatchNorm sees it once, as one process would."""
    if not _ranks_active():
        return x
    start, stop = share_bounds(len(x), torch.distributed.get_world_size(), torch.distributed.get_rank())
    return x[start:stop]


class _GlobalMean(torch.autograd.Function):
    """The mean of ``x`` over every rank's elements. Every rank gets the same value, so the loss built
    on it is the same on every rank; the trainer then AVERAGES the ranks' gradients, which divides
    this term's share by the world size: the backward multiplies it back."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        totals = sum_over_ranks(torch.stack([x.detach().sum(dtype=torch.float64),
                                             torch.tensor(float(x.numel()), dtype=torch.float64, device=x.device)]))
        ctx.shape, ctx.count = x.shape, float(totals[1])
        return (totals[0] / totals[1]).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        world = torch.distributed.get_world_size()
        return (grad * (world / ctx.count)).expand(ctx.shape)


def global_mean(x: torch.Tensor) -> torch.Tensor:
    """``x.mean()`` over the global batch: for a loss that is not a mean of per-sample terms (so that
    averaging the ranks' gradients would not reproduce one process's), e.g. 1 / mean(...)."""
    return _GlobalMean.apply(x) if _ranks_active() else x.mean()
