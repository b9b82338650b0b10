"""Class-conditional denoising diffusion (DDPM or EDM training and sampling, classifier-free guidance).

Built on MONAI's generative blocks: ``monai.networks.nets.DiffusionModelUNet`` (with a class
embedding) is the denoiser in both recipes, chosen by the ``recipe`` hyper-parameter:

- ``ddpm`` (the default): ``monai.networks.schedulers.DDPMScheduler`` supplies the noise schedule
  used in training (``add_noise``, ``get_velocity``) and ``DDIMScheduler`` takes the deterministic
  (eta = 0) sampling steps.
- ``edm`` (Karras et al. 2022, see ``medisynth.models.edm``): the UNet is wrapped in EDM's
  preconditioning, trained on log-normal noise levels with EDM's loss weight, and sampled with the
  deterministic 2nd-order Heun solver on the rho = 7 schedule (``steps`` = Heun steps, 2 steps - 1
  network evaluations).

Classifier-free guidance (Ho & Salimans 2022), as the ``guidance_scale`` s:

    eps = eps_uncond + s * (eps_cond - eps_uncond)

so s = 0 is the unconditional model, s = 1 the plain conditional model, s > 1 pushes samples
towards their class (the convention of MONAI's tutorials and diffusers; Ho & Salimans' w is
s - 1). The network learns the unconditional model because training replaces each label by an
extra "null" class index (= num_classes) with probability ``p_uncond``. With v-prediction the
same combination is applied to the predicted v (it is linear in eps at a fixed x_t), and with EDM
to the UNet output F (the denoiser D = c_skip x + c_out F is linear in F at a fixed x and sigma).

Latent diffusion (Rombach et al. 2022): with ``autoencoder_run=RUN`` (a trained
``autoencoder-kl`` run on the same data) the UNet works on the autoencoder's latents, scaled
to unit variance by a factor measured on the first training batch (kept in the state dict);
samples are decoded back to images. The autoencoder's weights are copied into this model's
checkpoint (frozen), so retraining the autoencoder run later cannot change a trained
diffusion run; its folder must still exist to rebuild the architecture.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, NoiseSchedules
from monai.utils import OptionalImportError

from medisynth.errors import MedisynthError
from medisynth.models import autoencoder as _autoencoder  # noqa: F401  (registers "autoencoder-kl")
from medisynth.models import edm
from medisynth.models.base import DataSpec, GenerativeModel, register_model
from medisynth.models.layers import check_choice, standard_normal

PREDICTIONS = ("epsilon", "v_prediction")
RECIPES = ("ddpm", "edm")
MAX_HEUN_STEPS = 1000


@dataclass
class DiffusionHyper:
    #: "ddpm" (DDPM training, DDIM sampling: num_train_timesteps, schedule, prediction apply) or "edm"
    #: (Karras et al. 2022 preconditioning, noise levels, loss weight and Heun sampler: the edm_* fields apply)
    recipe: str = "ddpm"
    #: UNet widths, one per resolution level (the image is halved between levels)
    num_channels: Sequence[int] = (32, 64, 64)
    #: self-attention per level (one flag per num_channels entry); None = only at the lowest resolution
    attention_levels: Sequence[bool] | None = None
    num_res_blocks: int = 1
    #: channels per attention head (capped at the level's width)
    num_head_channels: int = 32
    num_train_timesteps: int = 1000
    #: a MONAI noise schedule: linear_beta, scaled_linear_beta, sigmoid_beta or cosine
    schedule: str = "linear_beta"
    #: what the UNet predicts: "v_prediction" (v = sqrt(a) eps - sqrt(1-a) x0, Salimans & Ho 2022) or
    #: "epsilon" (the noise). v is the default: on short trainings the eps model's x0 estimate at high
    #: noise (x0 = (x_t - sqrt(1-a) eps) / sqrt(a), sqrt(a) ~ 0.01) is useless, and its samples
    #: ignored the class in our 300-step black/white test where v's separated cleanly.
    prediction: str = "v_prediction"
    #: probability of training on the null label (teaches the unconditional model for guidance)
    p_uncond: float = 0.1
    lr: float = 2e-4
    weight_decay: float = 0.0
    #: gradient norm clipping (0 = off)
    grad_clip: float = 1.0
    #: sampling defaults, overridable per call (``medisynth sample --sampling-steps --guidance-scale``); also what
    #: the trainer's sample grids use. None: 50 DDIM steps (ddpm); 18 Heun steps up to 64 px, 32 above (edm)
    sampling_steps: Optional[int] = None
    guidance_scale: float = 2.0
    #: a trained ``autoencoder-kl`` run folder: diffuse in its latent space (latent diffusion)
    autoencoder_run: Optional[str] = None
    #: EDM: the data's standard deviation; None = 0.5 for images in [-1, 1], 1.0 for the unit-variance latents
    edm_sigma_data: Optional[float] = None
    #: EDM: training noise levels ln(sigma) ~ N(edm_p_mean, edm_p_std^2)
    edm_p_mean: float = -1.2
    edm_p_std: float = 1.2
    #: EDM sampler: the noise range and the schedule's exponent rho
    edm_sigma_min: float = edm.SIGMA_MIN
    edm_sigma_max: float = edm.SIGMA_MAX
    edm_rho: float = 7.0


def norm_groups(widths: Sequence[int]) -> int:
    """GroupNorm groups for the UNet: at most 32, dividing every width, at least 4 channels each.

    Groups of one channel would erase the time/class embedding: MONAI's residual block adds it as a
    per-channel constant just before a GroupNorm, which removes any per-group constant.
    """
    return max(1, min(32, math.gcd(*widths) // 4))


def _build_unet(**kwargs) -> DiffusionModelUNet:
    try:
        return DiffusionModelUNet(**kwargs)
    except OptionalImportError as err:  # MONAI's attention blocks need einops
        raise MedisynthError(
            f"the diffusion UNet's attention needs an optional package ({err.args[0].splitlines()[0]}); "
            "`pip install einops`, or turn attention off with --hp attention_levels=[false,false,false]"
        ) from None


@register_model("diffusion")
class DiffusionModel(GenerativeModel):
    conditional = True
    Hyper = DiffusionHyper
    ema_networks = ("unet",)
    log_keys = ("loss",)
    sampling_options = ("guidance_scale", "steps")

    @classmethod
    def check_spec(cls, spec: DataSpec) -> None:
        if spec.channels < 1 or spec.image_size < 4:
            raise MedisynthError(
                f"diffusion needs at least 1 channel and 4 px images (got {spec.channels} channels, "
                f"{spec.image_size} px); re-run `medisynth prepare` with a larger --size"
            )

    def __init__(self, spec: DataSpec, hyper: DiffusionHyper):
        super().__init__(spec, hyper)
        widths = tuple(int(c) for c in hyper.num_channels)
        if hyper.attention_levels is None:
            attention = (False,) * (len(widths) - 1) + (True,)
        else:
            attention = tuple(bool(a) for a in hyper.attention_levels)
        self.latent = hyper.autoencoder_run is not None
        if self.latent:
            self.autoencoder = load_autoencoder(Path(hyper.autoencoder_run), spec)
            self.sample_shape = self.autoencoder.latent_shape
            # 1 / std of the latents, measured on the first training batch (Rombach et al.'s scale factor)
            self.register_buffer("latent_scale", torch.zeros(()))
        else:
            self.sample_shape = (spec.channels, spec.image_size, spec.image_size)
        self._check_hyper(self.sample_shape, widths, attention)
        self.null_label = spec.num_classes  # the extra "no class" embedding used by guidance
        self.unet = _build_unet(
            spatial_dims=2,
            in_channels=self.sample_shape[0],
            out_channels=self.sample_shape[0],
            num_res_blocks=int(hyper.num_res_blocks),
            channels=widths,
            attention_levels=attention,
            norm_num_groups=norm_groups(widths),
            num_head_channels=tuple(min(int(hyper.num_head_channels), w) for w in widths),
            num_class_embeds=spec.num_classes + 1,
        )
        if hyper.recipe == "edm":
            self.sigma_data = hyper.edm_sigma_data or (1.0 if self.latent else 0.5)
            return
        # The schedulers hold plain tensors (no parameters or buffers), so nothing of theirs goes
        # into the state dict: they are rebuilt from the hyper-parameters.
        self.train_scheduler = DDPMScheduler(
            num_train_timesteps=hyper.num_train_timesteps, schedule=hyper.schedule, prediction_type=hyper.prediction
        )
        self.sample_scheduler = DDIMScheduler(
            num_train_timesteps=hyper.num_train_timesteps,
            schedule=hyper.schedule,
            prediction_type=hyper.prediction,
            clip_sample=not self.latent,  # images live in [-1, 1]; latents do not
            set_alpha_to_one=True,
        )

    @staticmethod
    def _check_hyper(shape: tuple[int, int, int], widths: tuple[int, ...], attention: tuple[bool, ...]) -> None:
        problems = []
        if not widths or min(widths) < 1:
            problems.append("num_channels must be a non-empty list of positive widths, e.g. 32,64,64")
        if len(attention) != len(widths):
            problems.append(
                f"attention_levels has {len(attention)} entries but num_channels has {len(widths)}; give one per level"
            )
        levels = len(widths)
        if widths and shape[-1] % (2 ** (levels - 1)):
            problems.append(
                f"the diffused image (or latent) size {shape[-1]} px is not divisible by 2^{levels - 1} "
                f"(num_channels has {levels} levels); "
                f"use fewer levels or a --size that is a multiple of {2 ** (levels - 1)}"
            )
        if problems:
            raise MedisynthError("diffusion hyper-parameters: " + "; ".join(problems))

    @classmethod
    def make_hyper(cls, overrides=None):
        hyper = super().make_hyper(overrides)
        check_choice(cls.name, "prediction", hyper.prediction, PREDICTIONS)
        check_choice(cls.name, "schedule", hyper.schedule, sorted(NoiseSchedules.names))
        if not 0.0 <= hyper.p_uncond < 1.0:
            raise MedisynthError(f"--hp p_uncond={hyper.p_uncond}: must be in [0, 1)")
        if hyper.num_train_timesteps < 2:
            raise MedisynthError(f"--hp num_train_timesteps={hyper.num_train_timesteps}: must be at least 2")
        check_choice(cls.name, "recipe", hyper.recipe, RECIPES)
        if hyper.sampling_steps is not None and hyper.sampling_steps < 1:
            raise MedisynthError(f"--hp sampling_steps={hyper.sampling_steps}: must be at least 1")
        if not 0 < hyper.edm_sigma_min < hyper.edm_sigma_max:
            raise MedisynthError(
                f"--hp edm_sigma_min={hyper.edm_sigma_min}, edm_sigma_max={hyper.edm_sigma_max}: "
                "need 0 < edm_sigma_min < edm_sigma_max"
            )
        for name in ("edm_p_std", "edm_rho", "edm_sigma_data"):
            value = getattr(hyper, name)
            if value is not None and not value > 0:
                raise MedisynthError(f"--hp {name}={value}: must be positive")
        if hyper.autoencoder_run is not None:  # an absolute path, so the run can be sampled from anywhere
            hyper.autoencoder_run = str(Path(hyper.autoencoder_run).expanduser().resolve())
        return hyper

    # -- training ---------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {
            "unet": torch.optim.AdamW(
                self.unet.parameters(), lr=self.hyper.lr, weight_decay=self.hyper.weight_decay, betas=(0.9, 0.999)
            )
        }

    def to_latent(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> the space the UNet diffuses in (the images themselves, or scaled latents)."""
        if not self.latent:
            return images.float()
        z = self.autoencoder.encode(images.float()).float()
        if self.latent_scale == 0:  # first batch of a run: fix the scale factor for good
            self.latent_scale.fill_(1.0 / z.std().clamp_min(1e-6))
        return z * self.latent_scale

    def from_latent(self, x: torch.Tensor) -> torch.Tensor:
        return self.autoencoder.decode(x / self.latent_scale) if self.latent else x.clamp(-1.0, 1.0)

    def _drop_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Each label replaced by the null label with probability p_uncond (teaches the unguided model)."""
        drop = torch.rand(labels.shape[0], device=labels.device) < self.hyper.p_uncond
        return torch.where(drop, torch.full_like(labels, self.null_label), labels)

    def edm_denoise(self, net, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """EDM's preconditioned denoiser D(x; sigma) = c_skip x + c_out F(c_in x; c_noise), in float32.

        ``sigma`` has one noise level per image (shape N x 1 x 1 x 1)."""
        c_skip, c_out, c_in, c_noise = edm.preconditioning(sigma, self.sigma_data)
        out = net(c_in * x, timesteps=edm.unet_timesteps(c_noise).flatten(), class_labels=labels).float()
        return c_skip * x + c_out * out

    def diffusion_loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The denoising loss on one batch; t (or sigma), noise and label dropout come from torch's global RNG."""
        images = self.to_latent(images)
        n = images.shape[0]
        if self.hyper.recipe == "edm":
            sigma = edm.training_sigmas(n, self.hyper.edm_p_mean, self.hyper.edm_p_std, images.device).view(-1, 1, 1, 1)
            noisy = images + torch.randn_like(images) * sigma
            denoised = self.edm_denoise(self.unet, noisy, sigma, self._drop_labels(labels))
            return (edm.loss_weight(sigma, self.sigma_data) * (denoised - images) ** 2).mean()
        t = torch.randint(0, self.hyper.num_train_timesteps, (n,), device=images.device)
        noise = torch.randn_like(images)
        labels = self._drop_labels(labels)
        noisy = self.train_scheduler.add_noise(images, noise, t)
        target = noise if self.hyper.prediction == "epsilon" else self.train_scheduler.get_velocity(images, noise, t)
        prediction = self.unet(noisy, timesteps=t, class_labels=labels)
        return F.mse_loss(prediction.float(), target)

    def training_step(self, batch, optimizers, step):
        optimizer = optimizers["unet"]
        optimizer.zero_grad(set_to_none=True)
        loss = self.diffusion_loss(batch["image"], batch["label"].long())
        loss.backward()
        if self.hyper.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.unet.parameters(), self.hyper.grad_clip)
        optimizer.step()
        return {"loss": float(loss.detach())}

    # -- sampling ---------------------------------------------------------
    def ddim_timesteps(self, steps: int) -> torch.Tensor:
        """Evenly spaced timesteps T-k, T-2k, ..., 0 with k = T // steps (descending).

        MONAI's ``DDIMScheduler.set_timesteps`` spaces them by (T-1)/(steps-1) while its ``step``
        jumps back by T // steps; with few steps the two disagree (at 5 steps: 999 -> 799 computed
        but 749 used next), so we set the "leading" spacing ``step`` assumes.
        """
        stride = self.hyper.num_train_timesteps // steps
        return torch.arange(0, steps, dtype=torch.long).flip(0) * stride

    def default_sampling_steps(self) -> int:
        """``sampling_steps``, or the recipe's default: 50 DDIM steps; 18 Heun steps (35 network evaluations,
        EDM's setting at 32 px) for images or latents up to 64 px, where sampling cost matters most on a
        CPU, and 32 above (EDM used 40 at 64 px)."""
        if self.hyper.sampling_steps is not None:
            return int(self.hyper.sampling_steps)
        if self.hyper.recipe == "edm":
            return 18 if self.sample_shape[-1] <= 64 else 32
        return 50

    def _predict(self, net, x, t, labels, guidance_scale: float) -> torch.Tensor:
        """The guided model output at UNet timestep ``t`` (an int for DDPM, a float for EDM) for the whole batch."""
        n = x.shape[0]
        null = torch.full_like(labels, self.null_label)
        if guidance_scale == 1.0:  # plain conditional model: one pass
            x_in, l_in = x, labels
        elif guidance_scale == 0.0:  # unconditional model: one pass
            x_in, l_in = x, null
        else:  # conditional and unconditional in one batch
            x_in, l_in = torch.cat([x, x]), torch.cat([labels, null])
        dtype = torch.long if isinstance(t, int) else torch.float32
        timesteps = torch.full((x_in.shape[0],), t, device=x.device, dtype=dtype)
        out = net(x_in, timesteps=timesteps, class_labels=l_in).float()
        if x_in.shape[0] == n:
            return out
        cond, uncond = out[:n], out[n:]
        return uncond + guidance_scale * (cond - uncond)

    @torch.no_grad()
    def generate(self, labels, generator=None, truncation=1.0, guidance_scale=None, steps=None):
        if truncation != 1.0:
            raise MedisynthError("diffusion does not support --truncation; leave it at 1.0")
        guidance_scale = float(self.hyper.guidance_scale if guidance_scale is None else guidance_scale)
        steps = int(self.default_sampling_steps() if steps is None else steps)
        if guidance_scale < 0:
            raise MedisynthError(f"--guidance-scale {guidance_scale}: must be >= 0 (0 = unconditional, 1 = plain conditional)")
        max_steps = MAX_HEUN_STEPS if self.hyper.recipe == "edm" else self.hyper.num_train_timesteps
        if not 1 <= steps <= max_steps:
            raise MedisynthError(f"--sampling-steps {steps}: must be between 1 and {max_steps}")
        labels = torch.as_tensor(labels, dtype=torch.long)
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.spec.num_classes):
            raise MedisynthError(f"class indices must be in 0..{self.spec.num_classes - 1}")

        net = self.sampling_network("unet")
        device = next(net.parameters()).device
        labels = labels.to(device)
        if self.latent and self.latent_scale == 0:
            raise MedisynthError("this latent diffusion model has not been trained yet (its latent scale is unset)")
        shape = (labels.shape[0], *self.sample_shape)
        # The initial noise is the only randomness (DDIM with eta = 0 is deterministic): drawn from the
        # caller's generator on that generator's device, so a seed reproduces its images on that device.
        x = standard_normal(shape, device, generator)

        if self.hyper.recipe == "edm":
            x = self._sample_heun(net, x, labels, guidance_scale, steps)
        else:
            x = self._sample_ddim(net, x, labels, guidance_scale, steps)
        return self.from_latent(x)

    def _sample_ddim(self, net, x, labels, guidance_scale: float, steps: int) -> torch.Tensor:
        scheduler = self.sample_scheduler
        scheduler.set_timesteps(steps)
        scheduler.timesteps = self.ddim_timesteps(steps)
        for t in scheduler.timesteps.tolist():
            out = self._predict(net, x, t, labels, guidance_scale)
            x, _ = scheduler.step(out, t, x, eta=0.0)
        return x

    def _sample_heun(self, net, noise, labels, guidance_scale: float, steps: int) -> torch.Tensor:
        """EDM's deterministic Heun sampler from unit ``noise`` (scaled to sigma_max) down to sigma = 0."""
        h = self.hyper
        sigmas = edm.karras_sigmas(steps, h.edm_sigma_min, h.edm_sigma_max, h.edm_rho, device=noise.device)

        def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:
            c_skip, c_out, c_in, c_noise = edm.preconditioning(torch.tensor(sigma), self.sigma_data)
            out = self._predict(net, c_in.item() * x, float(edm.unet_timesteps(c_noise)), labels, guidance_scale)
            return c_skip.item() * x + c_out.item() * out

        return edm.heun_sample(denoise, noise * sigmas[0], sigmas)


def load_autoencoder(run: Path, spec: DataSpec) -> GenerativeModel:
    """The trained ``autoencoder-kl`` of ``run``, frozen, checked against the data this model is trained on."""
    from medisynth.runs import load_run  # runs sits above models.base; imported on use, not at registration

    try:
        loaded = load_run(run, device="cpu").model
    except MedisynthError as err:
        raise MedisynthError(f"--hp autoencoder_run={run}: {err}") from None
    if loaded.name != "autoencoder-kl":
        raise MedisynthError(
            f"--hp autoencoder_run={run}: that run trained {loaded.name!r}, not 'autoencoder-kl'; "
            f"train one first: medisynth train DATA --model autoencoder-kl --out AE_RUN"
        )
    if (loaded.spec.image_size, loaded.spec.channels) != (spec.image_size, spec.channels):
        raise MedisynthError(
            f"--hp autoencoder_run={run}: the autoencoder was trained on {loaded.spec.image_size} px, "
            f"{loaded.spec.channels}-channel images but this data has {spec.image_size} px, {spec.channels} channels; "
            f"train the autoencoder on the same prepared data"
        )
    for p in loaded.parameters():
        p.requires_grad_(False)
    return loaded.eval()
