"""Generative models, found by name through ``MODEL_REGISTRY``.

Importing this package registers every model module listed below.
"""
from medisynth.models.base import MODEL_REGISTRY, DataSpec, GenerativeModel, build_model, get_model_class, register_model
from medisynth.models import dcgan, cgan, wgan_gp, vae, resvae, lkgan, autoencoder, diffusion, pix2pix, edsr  # noqa: E402,F401

__all__ = ["MODEL_REGISTRY", "DataSpec", "GenerativeModel", "build_model", "get_model_class", "register_model"]
