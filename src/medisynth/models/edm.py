"""The EDM recipe of Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models".

The pieces the diffusion model needs to train and sample with the EDM recipe instead of DDPM/DDIM,
written as plain functions of tensors so they work with any denoising network:

- **Preconditioning** (their Table 1, "EDM" column): the network F is wrapped into the denoiser

      D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma))

  with c_skip = sigma_data^2 / (sigma^2 + sigma_data^2), c_out = sigma sigma_data / sqrt(sigma^2 + sigma_data^2),
  c_in = 1 / sqrt(sigma^2 + sigma_data^2) and c_noise = ln(sigma) / 4, so that F's input and its training
  target both have unit variance at every noise level.
- **Training noise levels**: ln(sigma) ~ N(P_mean, P_std^2) with P_mean = -1.2, P_std = 1.2.
- **Loss weight**: lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = 1 / c_out^2, which makes
  the loss on D an unweighted unit-variance loss on F.
- **Sampler**: the deterministic 2nd-order Heun solver of the probability-flow ODE (their Algorithm 1,
  S_churn = 0) on the rho = 7 noise schedule sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) -
  sigma_max^(1/rho)))^rho, then sigma_N = 0. N steps cost 2N - 1 network evaluations (the last step,
  to sigma = 0, is a plain Euler step).

MONAI's ``DiffusionModelUNet`` embeds its timesteps sinusoidally with frequencies from 1 down to 1/10000,
designed for DDPM's integer steps 0..999. EDM's c_noise spans only about [-1.55, 1.1] over the sampling range,
where most of those frequencies would barely move; ``unet_timesteps`` maps c_noise affinely so that the
sampling range [SIGMA_MIN, SIGMA_MAX] covers [0, 999] like the DDPM recipe's timesteps.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

#: the noise range of EDM's sampler (their defaults; the UNet timestep map is pinned to it)
SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
_C_NOISE_MIN, _C_NOISE_MAX = math.log(SIGMA_MIN) / 4, math.log(SIGMA_MAX) / 4
#: the largest MONAI timestep the DDPM recipe uses (num_train_timesteps - 1 at its default 1000)
_UNET_TIMESTEP_MAX = 999.0


def preconditioning(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_skip, c_out, c_in, c_noise) for noise levels ``sigma`` (any shape; results have its shape)."""
    sigma = sigma.float()
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / total.sqrt()
    c_in = total.rsqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def unet_timesteps(c_noise: torch.Tensor) -> torch.Tensor:
    """c_noise -> the float timesteps MONAI's sinusoidal embedding gets (affine; [SIGMA_MIN, SIGMA_MAX] -> [0, 999])."""
    return (c_noise - _C_NOISE_MIN) * (_UNET_TIMESTEP_MAX / (_C_NOISE_MAX - _C_NOISE_MIN))


def training_sigmas(n: int, p_mean: float, p_std: float, device: torch.device | str) -> torch.Tensor:
    """``n`` noise levels with ln(sigma) ~ N(p_mean, p_std^2), drawn from torch's global RNG."""
    return (torch.randn(n, device=device) * p_std + p_mean).exp()


def loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float, device=None) -> torch.Tensor:
    """The ``steps`` noise levels sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min, then a final 0.

    One step is a single jump from sigma_max to 0 (the model's one-shot denoising)."""
    if steps == 1:
        levels = torch.tensor([float(sigma_max)], dtype=torch.float64)
    else:
        ramp = torch.arange(steps, dtype=torch.float64) / (steps - 1)
        lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
        levels = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([levels, levels.new_zeros(1)]).to(device=device, dtype=torch.float32)


def heun_sample(denoise: Callable[[torch.Tensor, float], torch.Tensor], x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Integrate dx/dsigma = (x - D(x; sigma)) / sigma from sigmas[0] to sigmas[-1] = 0 with Heun's method.

    ``x`` is the starting point at sigmas[0] (noise times sigma_max); ``denoise(x, sigma)`` is D.
    Each step takes an Euler step, then corrects it with the slope at its end point (trapezoid rule),
    except the last step to sigma = 0, where the slope is undefined."""
    levels = sigmas.tolist()
    for i, (sigma, sigma_next) in enumerate(zip(levels[:-1], levels[1:])):
        slope = (x - denoise(x, sigma)) / sigma
        x_euler = x + (sigma_next - sigma) * slope
        if sigma_next == 0:
            x = x_euler
        else:
            slope_next = (x_euler - denoise(x_euler, sigma_next)) / sigma_next
            x = x + (sigma_next - sigma) * 0.5 * (slope + slope_next)
    return x
