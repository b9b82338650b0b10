"""What every GAN in medisynth shares: optimisers, the alternating D/G step, DiffAugment, sampling.

Subclasses build ``self.generator`` (``forward(z, labels)``, z is N x latent_dim) and
``self.discriminator`` (``forward(images, labels)`` -> one logit / critic value per image)
and declare a Hyper dataclass with at least: latent_dim, lr, lr_g, lr_d, betas, and the
augmentation fields of ``medisynth.models.ada.ADAHyper`` (inherit from it).

Augmentation: DiffAugment's transforms are applied with probability ``ada_p``, which adaptive
discriminator augmentation (``medisynth.models.ada``) adjusts from D's outputs on real images;
``ada_p`` is logged with the losses.

Two training objectives:

- ``GANModel``: the non-saturating GAN loss of Goodfellow et al./Radford et al. written with
  logits (BCE-with-logits): D maximises log D(x) + log(1 - D(G(z))), G maximises log D(G(z)).
  Logs Loss_D, Loss_G, D(x), D(G(z)) (mean sigmoid outputs before the D update), the figures
  of the PyTorch DCGAN tutorial that seed 001 prints.
- ``WGANGPModel``: the Wasserstein loss with gradient penalty (Gulrajani et al. 2017; seed 004
  eq. 2.7). ``n_critic`` critic updates per generator update, all inside one ``training_step``:
  each critic update sees the whole real batch with a fresh z, a fresh DiffAugment draw and
  fresh interpolation points (the trainer hands us one batch per step; splitting it n_critic
  ways would leave tiny batches). The critic's output is not a probability, so these models
  have no ``discriminator_score``.

Steps run in the dtype the trainer chooses: fp32, or under ``torch.autocast`` with bf16
(the trainer's --amp). They do not use a GradScaler, so fp16 autocast is not supported.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from medisynth.errors import MedisynthError
from medisynth.models.ada import AdaptiveAugment
from medisynth.models.base import GenerativeModel
from medisynth.models.layers import (
    check_labels, check_truncation, evaluating, module_device, rank_rows, recompute_batchnorm_statistics,
    sample_latent, set_requires_grad,
)


class GANModel(GenerativeModel):
    has_discriminator = True
    supports_truncation = True
    ema_networks = ("generator",)
    log_keys = ("Loss_D", "Loss_G", "D(x)", "D(G(z))", "ada_p")
    #: the trainer logs the diversity of a fixed batch of samples and warns on collapse
    monitors_diversity = True

    generator: nn.Module
    discriminator: nn.Module

    def __init__(self, spec, hyper):
        super().__init__(spec, hyper)
        self.augment = AdaptiveAugment(hyper.diffaugment, hyper.ada_target, hyper.ada_speed_kimg, hyper.ada_interval)

    # -- optimisers -------------------------------------------------------
    def learning_rates(self) -> tuple[float, float]:
        """(lr_g, lr_d); the ``lr`` shortcut, when given, sets both."""
        lr = getattr(self.hyper, "lr", None)
        return (lr, lr) if lr is not None else (self.hyper.lr_g, self.hyper.lr_d)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        lr_g, lr_d = self.learning_rates()
        betas = tuple(float(b) for b in self.hyper.betas)
        return {
            "generator": torch.optim.Adam(self.generator.parameters(), lr=lr_g, betas=betas),
            "discriminator": torch.optim.Adam(self.discriminator.parameters(), lr=lr_d, betas=betas),
        }

    # -- training ---------------------------------------------------------
    def sample_z(self, n: int, device: torch.device) -> torch.Tensor:
        """Training latents from torch's global RNG (seeded and checkpointed by the trainer)."""
        return torch.randn(n, self.hyper.latent_dim, device=device)

    def training_step(self, batch, optimizers, step):
        real, labels = batch["image"], batch["label"]
        opt_g, opt_d = optimizers["generator"], optimizers["discriminator"]
        fake = self.generator(self.sample_z(real.shape[0], real.device), labels)

        # D: real -> 1, fake -> 0 (softplus(-l) = BCE(l, 1), softplus(l) = BCE(l, 0))
        set_requires_grad(self.discriminator, True)
        opt_d.zero_grad(set_to_none=True)
        d_real = self.discriminator(self.augment(real), labels).float()
        d_fake = self.discriminator(self.augment(fake.detach()), labels).float()
        loss_d = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
        loss_d.backward()
        opt_d.step()
        self.augment.observe(d_real)

        # G: make D call the fakes real; D is frozen so backward skips its weight gradients
        set_requires_grad(self.discriminator, False)
        opt_g.zero_grad(set_to_none=True)
        loss_g = F.softplus(-self.discriminator(self.augment(fake), labels).float()).mean()
        loss_g.backward()
        opt_g.step()
        set_requires_grad(self.discriminator, True)

        figures = torch.stack([loss_d, loss_g, torch.sigmoid(d_real).mean(), torch.sigmoid(d_fake).mean(),
                               self.augment.p.to(loss_d.dtype)])
        return dict(zip(self.log_keys, figures.detach().tolist()))  # one device sync per step

    @torch.no_grad()
    def refresh_ema_statistics(self, labels, seed, batches: int = 4, batch_size: int = 32):
        """BatchNorm statistics for the EMA generator's averaged weights, from ``batches`` x ``batch_size``
        fresh latents with labels drawn from ``labels`` (BigGAN's "standing statistics", Brock et al. 2019).
        ``update_ema`` copies the live generator's statistics, which belong to other weights: with them the
        demo's fastgan (5 minutes, phantom set) drew blurred, low-contrast EMA samples; with their own, the
        same weights drew round fundi with a disc and vessel strokes. 128 samples cost about 4 training
        steps of fastgan at 64 px (~4% of training time at the default 10-second log interval)."""
        ema = getattr(self, "ema_generator", None)
        if ema is None:
            return
        device = module_device(ema)
        draw = torch.Generator().manual_seed(seed)  # its own RNG: refreshing never changes the training result
        inputs = []
        for _ in range(batches):
            z = torch.randn(batch_size, self.hyper.latent_dim, generator=draw)
            y = labels[torch.randint(len(labels), (batch_size,), generator=draw).to(labels.device)]
            # several ranks (synchronised BatchNorm): each runs its share of the same batch
            inputs.append(tuple(rank_rows(t).to(device) for t in self.generator_inputs(z, y, draw)))
        recompute_batchnorm_statistics(ema, inputs)

    def generator_inputs(self, z: torch.Tensor, labels: torch.Tensor,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
        """The generator's arguments for latents ``z`` and ``labels``: a generator that needs more randomness
        (fastgan's noise maps) has it drawn here, after z, from ``generator`` (torch's global RNG when None)."""
        return (z, labels)

    # -- sampling ---------------------------------------------------------
    def check_sampling_labels(self, labels: torch.Tensor) -> None:
        if self.conditional:
            check_labels(self.name, labels, self.spec.num_classes)

    @torch.no_grad()
    def generate(self, labels, generator=None, truncation=1.0, **options):
        psi = check_truncation(self.name, truncation)
        self.check_sampling_labels(labels)
        net = self.sampling_network("generator")
        device = module_device(net)
        z = sample_latent(len(labels), self.hyper.latent_dim, device, generator, psi)
        with evaluating(net):
            images = net(*self.generator_inputs(z, labels.to(device), generator))
        return images.float().clamp_(-1.0, 1.0)

    @torch.no_grad()
    def discriminator_score(self, images, labels):
        self.check_sampling_labels(labels)
        device = module_device(self.discriminator)
        with evaluating(self.discriminator):
            logits = self.discriminator(images.to(device), labels.to(device))
        return torch.sigmoid(logits.float())


def gradient_penalty(
    critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None = None,
    alpha: torch.Tensor | None = None,
) -> torch.Tensor:
    """E[(||grad_x critic(x_hat)||_2 - 1)^2], x_hat uniform on the lines between real and fake (eq. 2.7).

    Unweighted: the caller multiplies by lambda. ``alpha`` (N x 1 x 1 x 1) fixes the interpolation
    points (tests); by default they are drawn from torch's global RNG."""
    if alpha is None:
        alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device, dtype=real.dtype)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat, labels) if labels is not None else critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    norms = grad.float().flatten(1).norm(2, dim=1)
    return ((norms - 1.0) ** 2).mean()


class WGANGPModel(GANModel):
    """Wasserstein GAN with gradient penalty; Hyper also needs n_critic and gp_weight."""

    has_discriminator = False
    log_keys = ("Loss_D", "Loss_G", "W_dist", "GP", "ada_p")

    def training_step(self, batch, optimizers, step):
        real, labels = batch["image"], batch["label"]
        opt_g, opt_d = optimizers["generator"], optimizers["discriminator"]
        n = real.shape[0]
        totals = torch.zeros(3, device=real.device)  # critic loss, W distance, GP summed over critic steps

        set_requires_grad(self.discriminator, True)
        for _ in range(self.hyper.n_critic):
            with torch.no_grad():
                fake = self.generator(self.sample_z(n, real.device), labels)
            real_aug, fake_aug = self.augment(real), self.augment(fake)
            opt_d.zero_grad(set_to_none=True)
            c_real_each = self.discriminator(real_aug, labels).float()
            c_fake_each = self.discriminator(fake_aug, labels).float()
            c_real, c_fake = c_real_each.mean(), c_fake_each.mean()
            gp = gradient_penalty(self.discriminator, real_aug, fake_aug, labels)
            loss_d = c_fake - c_real + self.hyper.gp_weight * gp
            loss_d.backward()
            opt_d.step()
            self.augment.observe(c_real_each, c_fake_each)  # a critic has no fixed zero: rank against the fakes
            totals += torch.stack([loss_d, c_real - c_fake, gp]).detach()

        set_requires_grad(self.discriminator, False)
        opt_g.zero_grad(set_to_none=True)
        fake = self.generator(self.sample_z(n, real.device), labels)
        loss_g = -self.discriminator(self.augment(fake), labels).float().mean()
        loss_g.backward()
        opt_g.step()
        set_requires_grad(self.discriminator, True)

        loss_d, w_dist, gp, loss_g = torch.cat([totals / self.hyper.n_critic, loss_g.detach()[None]]).tolist()
        return {"Loss_D": loss_d, "Loss_G": loss_g, "W_dist": w_dist, "GP": gp, "ada_p": self.augment.probability()}

    @torch.no_grad()
    def discriminator_score(self, images, labels):
        raise MedisynthError(
            f"model {self.name!r} has a Wasserstein critic whose output is an unbounded score, not a "
            "probability, so --min-d-score cannot filter its samples; filter with a GAN that has a "
            "probabilistic discriminator (dcgan, cgan) or drop --min-d-score"
        )
