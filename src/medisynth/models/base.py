"""The contract every generative model in medisynth fulfils.

A model is one ``nn.Module`` that owns its networks, knows how to build its
optimisers, how to take one training step on a batch, and how to generate
images. The trainer (``medisynth.training.trainer``) and the sampler
(``medisynth.sampling``) only ever talk to this interface, so adding a model
is: subclass ``GenerativeModel``, declare its hyper-parameters as a dataclass,
and register it with ``@register_model("name")``.

Conventions
- a batch is a dict: "image" float N x C x H x W in [-1, 1], "label" int64 class indices,
  and "mask" N x 1 x H x W in [0, 1] for models that need masks;
- ``training_step`` does its own backward passes and optimiser steps (GANs
  alternate networks; VAEs take one step) and returns plain floats for logging;
- randomness comes only from the ``torch.Generator`` passed in, or from torch's
  global RNG that the trainer seeds and checkpoints, so runs are reproducible;
- networks listed in ``ema_networks`` get an exponential moving average copy
  named ``ema_<name>`` that ``generate`` uses when ``use_ema`` is true.
"""
from __future__ import annotations

import copy
import math
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from medisynth.errors import MedisynthError
from medisynth.registry import Registry


@dataclass
class DataSpec:
    """What a model needs to know about the data it is trained on."""

    image_size: int
    channels: int
    class_names: list[str] = field(default_factory=lambda: ["0"])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


class GenerativeModel(nn.Module):
    name: ClassVar[str] = ""
    #: one model generates every class (label-conditioned)
    conditional: ClassVar[bool] = False
    #: ``discriminator_score`` is available (for --min-d-score filtering)
    has_discriminator: ClassVar[bool] = False
    #: the latent can be truncated (the truncation trick)
    supports_truncation: ClassVar[bool] = False
    #: dataclass type holding this model's hyper-parameters and their defaults
    Hyper: ClassVar[type] = object
    #: names of sub-networks that get an EMA copy used for sampling
    ema_networks: ClassVar[tuple[str, ...]] = ()
    #: trained on image + mask pairs (pix2pix); the trainer then loads masks into the batch
    needs_masks: ClassVar[bool] = False
    #: the figures ``training_step`` returns, in the order the progress bar shows them
    log_keys: ClassVar[tuple[str, ...]] = ()
    #: ``generate`` makes images from noise (False for translators/upsamplers: pix2pix, edsr)
    samples_from_noise: ClassVar[bool] = True
    #: extra keyword options ``generate`` accepts (e.g. ("guidance_scale", "steps") for diffusion)
    sampling_options: ClassVar[tuple[str, ...]] = ()
    #: sampling is one cheap forward pass: the trainer watches a fixed batch for mode collapse
    monitors_diversity: ClassVar[bool] = False
    #: images per training step when the user gives no --batch-size (TrainConfig.batch_size None)
    default_batch_size: ClassVar[int] = 64

    def __init__(self, spec: DataSpec, hyper: Any):
        super().__init__()
        self.spec = spec
        self.hyper = hyper
        self.use_ema = True

    # -- hyper-parameters -------------------------------------------------
    @classmethod
    def make_hyper(cls, overrides: dict[str, Any] | None = None):
        """Build the Hyper dataclass from defaults plus user overrides (unknown keys are an error)."""
        overrides = dict(overrides or {})
        names = {f.name for f in dataclasses.fields(cls.Hyper)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise MedisynthError(
                f"model {cls.name!r} has no hyper-parameter(s) {', '.join(unknown)}; "
                f"it knows: {', '.join(sorted(names))}"
            )
        defaults = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                    for f in dataclasses.fields(cls.Hyper)
                    if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING}
        # fields annotated Optional[...] take null (YAML's null / ~) as a value of their own
        optional = {f.name for f in dataclasses.fields(cls.Hyper) if "Optional[" in str(f.type) or "None" in str(f.type)}
        for key, value in overrides.items():
            if value is None and key in optional:
                continue  # e.g. ada_target=null: the field's documented "off"
            problem = _hyper_value_problem(key, value, defaults.get(key))
            if problem:
                also = " or null" if key in optional else ""
                raise MedisynthError(f"hyper-parameter {key}={value!r} of model {cls.name!r}: {problem}{also} "
                                     f"(default {defaults.get(key)!r}); fix --hp {key}=... (or the --config file)")
        return cls.Hyper(**overrides)

    @classmethod
    def saved_hyper(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The hyper-parameters a saved run (its model.json) trained with, as overrides for ``make_hyper``.

        JSON made tuples into lists: tuple-typed fields get their tuples back. A field the run's record
        lacks was added after the run was made: it gets ``metadata["before"]``, the behaviour the model
        had before the field existed, where the field declares one (a new default must not change, or
        fail to load, a run trained without it); otherwise today's default."""
        out = dict(values)
        for f in dataclasses.fields(cls.Hyper):
            default = f.default if f.default is not dataclasses.MISSING else None
            if isinstance(default, tuple) and isinstance(out.get(f.name), list):
                out[f.name] = tuple(out[f.name])
            if f.name not in out and "before" in f.metadata:
                out[f.name] = f.metadata["before"]
        return out

    @classmethod
    def check_spec(cls, spec: DataSpec) -> None:
        """Raise MedisynthError if this architecture cannot make images of this size/channels."""

    # -- training ---------------------------------------------------------
    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        raise NotImplementedError

    def training_step(
        self, batch: dict[str, torch.Tensor], optimizers: dict[str, torch.optim.Optimizer], step: int
    ) -> dict[str, float]:
        """One step on ``batch`` = {"image": N x C x H x W in [-1, 1], "label": N int64,
        "mask": N x 1 x H x W in [0, 1] (only for models with ``needs_masks``)}."""
        raise NotImplementedError

    # -- sampling ---------------------------------------------------------
    @torch.no_grad()
    def generate(
        self, labels: torch.Tensor, generator: torch.Generator | None = None, truncation: float = 1.0, **options
    ) -> torch.Tensor:
        """One image per entry of ``labels`` (class indices), as N x C x H x W in [-1, 1].

        ``options`` are the model's ``sampling_options`` (the sampler rejects any other)."""
        raise NotImplementedError

    @torch.no_grad()
    def discriminator_score(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Probability in [0, 1] that each image is real, as the discriminator judges it."""
        raise MedisynthError(f"model {self.name!r} has no discriminator; --min-d-score needs a GAN")

    # -- EMA --------------------------------------------------------------
    def setup_ema(self) -> None:
        for name in self.ema_networks:
            ema = copy.deepcopy(getattr(self, name)).eval()
            for p in ema.parameters():
                p.requires_grad_(False)
            self.add_module(f"ema_{name}", ema)

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        for name in self.ema_networks:
            net, ema = getattr(self, name), getattr(self, f"ema_{name}", None)
            if ema is None:
                continue
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.lerp_(p.detach(), 1.0 - decay)
            for b_ema, b in zip(ema.buffers(), net.buffers()):
                b_ema.copy_(b)

    @torch.no_grad()
    def refresh_ema_statistics(self, labels: torch.Tensor, seed: int) -> None:
        """Give the EMA networks normalisation statistics of their own weights; the trainer calls it
        before it samples from, measures or saves them. ``labels``: the training labels, whose
        frequencies the statistics follow; ``seed`` fixes the inputs drawn. Nothing to do by default
        (no EMA, or no BatchNorm in it): ``update_ema`` copies the live networks' buffers."""

    def sampling_network(self, name: str) -> nn.Module:
        """The EMA copy of ``name`` when EMA is on and present, else the live network."""
        ema = getattr(self, f"ema_{name}", None)
        return ema if (self.use_ema and ema is not None) else getattr(self, name)


#: model name -> the module that defines it, imported on first use (so MONAI is imported only by
#: the models built on it). A new model module adds its names here and registers them with
#: ``@register_model``; the registry refuses a name registered from any other module.
MODEL_MODULES = {
    "dcgan": "medisynth.models.dcgan",
    "cgan": "medisynth.models.cgan",
    "fastgan": "medisynth.models.fastgan",
    "wgan-gp": "medisynth.models.wgan_gp",
    "vae": "medisynth.models.vae",
    "conv-vae": "medisynth.models.vae",
    "conv-cvae": "medisynth.models.vae",
    "resvae": "medisynth.models.resvae",
    "lkgan-small": "medisynth.models.lkgan",
    "lkgan-v1": "medisynth.models.lkgan",
    "lkgan-v2": "medisynth.models.lkgan",
    "autoencoder-kl": "medisynth.models.autoencoder",
    "diffusion": "medisynth.models.diffusion",
    "pix2pix": "medisynth.models.pix2pix",
    "edsr": "medisynth.models.edsr",
}

MODEL_REGISTRY: Registry[type[GenerativeModel]] = Registry("model", base=GenerativeModel, lazy=MODEL_MODULES)


def register_model(name: str):
    """Class decorator: register a GenerativeModel subclass as ``name`` (and set its ``name``)."""

    def wrap(cls: type[GenerativeModel]) -> type[GenerativeModel]:
        MODEL_REGISTRY.register(name, cls)
        cls.name = name
        return cls

    return wrap


def get_model_class(name: str) -> type[GenerativeModel]:
    """The model class registered as ``name`` (importing only its module); MedisynthError if unknown."""
    return MODEL_REGISTRY.get(name)


def _hyper_value_problem(name: str, value: Any, default: Any) -> str | None:
    """Why ``value`` cannot stand in for a hyper-parameter whose default is ``default`` (None if it can).

    Values come from --hp / YAML, which can make strings, dates or bytes out of a typo; each must
    have the default's kind, and numbers must be finite (learning rates also positive)."""
    plain = (type(None), bool, int, float, str, list, tuple, dict)
    if not isinstance(value, plain):
        return f"a {type(value).__name__} is not a hyper-parameter value"
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok, kind = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, kind = isinstance(value, str), "a word"
    elif isinstance(default, (list, tuple)):
        ok, kind = isinstance(value, (list, tuple)), "a list such as [1, 2]"
    else:
        ok, kind = True, ""
    if not ok:
        return f"expected {kind}"
    if name.startswith("lr") and isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0:
        return "a learning rate must be positive"
    return None


def build_model(name: str, spec: DataSpec, hyper_overrides: dict[str, Any] | None = None) -> GenerativeModel:
    """A new, untrained model ``name`` for data described by ``spec``.

    ``hyper_overrides`` replace defaults of the model's ``Hyper`` dataclass (unknown keys and bad
    values raise MedisynthError naming the model's hyper-parameters); EMA copies are set up."""
    cls = get_model_class(name)
    cls.check_spec(spec)
    model = cls(spec, cls.make_hyper(hyper_overrides))
    model.setup_ema()
    return model
