"""Adaptive discriminator augmentation (Karras et al., "Training Generative Adversarial Networks
with Limited Data", NeurIPS 2020) driving medisynth's DiffAugment.

Every GAN shows its discriminator augmented images (``medisynth.models.augment``). With ADA
each transform group of the policy (colour, translation, cutout) is applied to each image with
probability ``p``, and ``p`` follows the overfitting heuristic

    r_t = E[sign(D(real))]      (the share of real images D calls real, mapped to [-1, 1])

towards a target (0.6, the paper's): every ``interval`` steps, ``p`` moves by
``sign(r_t - target) * images / (speed_kimg * 1000)`` where ``images`` is the number of real
images seen since the last adjustment, clamped to [0, 1]. ``p`` starts at 0, so a discriminator
that does not overfit trains on clean images, and the skipped work makes p = 0 free.

Speed: the paper lets p go from 0 to 1 in 500k images, about 2% of a 25M-image run. medisynth
runs last minutes on a CPU (a few hundred steps of 64 images, 20k-60k images), so the default
``speed_kimg`` is 20: p can cross its whole range in about 300 steps of 64 images, fast enough
to react inside a short run, slow enough that one noisy interval moves it by at most 1.3%
(4 steps x 64 images / 20k).

A Wasserstein critic has no fixed zero (its output is defined up to a constant), so for it the
sign is taken relative to the batch's mean fake score (``observe(d_real, d_fake)``): the share
of real images the critic ranks above the typical fake. For the logit discriminators (BCE and
hinge) the threshold is 0, as in the paper.

When p has stayed at 1 through a whole log interval, the discriminator still calls more than
``target`` of the real images real with every transform applied to every image: it overfits beyond
what augmentation can hold off, and the heuristic has nothing left to give. The trainer then logs
``ada_ceiling_warning: true`` and "ADA AT CEILING" on the progress line (``at_ceiling``). Measured on
2-core CPUs at 64 px (fastgan, 1,300-20,600 steps): p stayed at or below 0.54 in 17 runs whose grids
showed their data's kind of image (phantom fundus, CT kidney, the 69-image EyePACS sample), and sat at
1 from step 2,600 on in the one run that never learned the phantom's round field of view (square
blobs), which the collapse warning, watching for too little variety only, did not flag.

``p``, the running sum of signs, the image count and the step count are buffers: they are saved
in the model's checkpoint, so a resumed run continues with exactly the same augmentation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from medisynth.errors import MedisynthError
from medisynth.models.augment import AUGMENTATIONS, parse_policy
from medisynth.models.layers import sum_over_ranks


#: p's mean over a log interval at or above this (1 but for rounding): p was 1 through the whole interval
CEILING = 1.0 - 1e-6
#: the metrics.jsonl field the trainer writes each log interval for a model whose p adapts
CEILING_WARNING_KEY = "ada_ceiling_warning"


@dataclass
class ADAHyper:
    """The augmentation fields every GAN's Hyper dataclass inherits."""

    diffaugment: str = "color,translation,cutout"  # "" = off
    ada_target: Optional[float] = 0.6  # target r_t; None = DiffAugment always on (p = 1, no adaptation)
    ada_speed_kimg: float = 20.0  # thousands of images for p to go from 0 to 1
    ada_interval: int = 4  # steps between adjustments of p


class AdaptiveAugment(nn.Module):
    """``augment(images)`` applies each transform group of ``policy`` with probability ``p``.

    ``observe(d_real)`` (after each discriminator pass on real images) feeds the heuristic and
    moves ``p`` every ``interval`` calls. With ``target=None`` p stays at 1: plain DiffAugment."""

    def __init__(self, policy: str, target: Optional[float] = 0.6, speed_kimg: float = 20.0, interval: int = 4):
        super().__init__()
        self.policy = parse_policy(policy)
        if target is not None and not -1.0 < float(target) < 1.0:  # r_t lies in [-1, 1]
            raise MedisynthError(f"hyper-parameter ada_target must be in (-1, 1) (0.6 is usual) or null to switch ADA "
                                 f"off (got {target})")
        if speed_kimg <= 0 or interval < 1:
            raise MedisynthError(
                f"hyper-parameters ada_speed_kimg (got {speed_kimg}) must be positive and ada_interval (got {interval}) >= 1"
            )
        self.target = None if target is None else float(target)
        self.speed_kimg, self.interval = float(speed_kimg), int(interval)
        adaptive = self.target is not None and bool(self.policy)
        self.register_buffer("p", torch.tensor(0.0 if adaptive else 1.0, dtype=torch.float64))
        self.register_buffer("sign_sum", torch.tensor(0.0, dtype=torch.float64))
        self.register_buffer("images", torch.tensor(0, dtype=torch.int64))
        self.register_buffer("steps", torch.tensor(0, dtype=torch.int64))

    @property
    def adaptive(self) -> bool:
        return self.target is not None and bool(self.policy)

    def probability(self) -> float:
        return float(self.p)

    def at_ceiling(self, interval_mean_p: float) -> bool:
        """Whether p, adapting, stayed at 1 through a log interval whose mean p was ``interval_mean_p``."""
        return self.adaptive and interval_mean_p >= CEILING

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.policy:
            return x
        p = self.probability()
        if p <= 0.0:
            return x  # nothing to do: no random draws, no copies (keeps un-augmented GANs as fast as before)
        for name in self.policy:
            augmented = x
            for transform in AUGMENTATIONS[name]:
                augmented = transform(augmented)
            if p >= 1.0:
                x = augmented
            else:
                keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < p
                x = torch.where(keep, augmented, x)
        return x.contiguous()

    @torch.no_grad()
    def observe(self, d_real: torch.Tensor, d_fake: Optional[torch.Tensor] = None) -> None:
        """Accumulate sign(D(real)) (relative to mean D(fake) when given) and adjust p every ``interval`` calls.

        Under data-parallel training each rank sees its slice of the global batch; every call sums
        the figures over the ranks, so the accumulators are the global batch's on every rank. They
        must be: rank 0 alone writes them into checkpoints, and a resume (with any number of ranks)
        continues from them, so a rank holding only its own share would lose the other ranks'."""
        if not self.adaptive:
            return
        scores = d_real.detach().float().reshape(-1)
        if d_fake is not None:
            fake = d_fake.detach().double().reshape(-1)
            fake_sum, fake_count = sum_over_ranks(torch.stack([fake.sum(), fake.new_tensor(fake.numel())]))
            scores = scores - (fake_sum / fake_count).float()
        sign_sum, count = sum_over_ranks(
            torch.stack([torch.sign(scores).sum().double(), scores.new_tensor(scores.numel(), dtype=torch.float64)]))
        self.sign_sum += sign_sum
        self.images += count.to(torch.int64)
        self.steps += 1
        if int(self.steps) % self.interval == 0:
            r_t = self.sign_sum / self.images.clamp(min=1)
            delta = torch.sign(r_t - self.target) * self.images.double() / (self.speed_kimg * 1000.0)
            self.p.copy_((self.p + delta).clamp(0.0, 1.0))
            self.sign_sum.zero_()
            self.images.zero_()

    def extra_repr(self) -> str:
        target = "off" if self.target is None else f"{self.target:g}"
        return f"policy={','.join(self.policy)!r}, ada_target={target}, speed_kimg={self.speed_kimg:g}"

