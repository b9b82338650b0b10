"""Generative models, found by name through ``MODEL_REGISTRY`` (``medisynth.registry.Registry``).

Importing this package imports no model module: ``get_model_class(name)`` / ``build_model(name, ...)``
import the one module that defines ``name`` (``MODEL_MODULES``), so sampling a GAN never imports MONAI.
"""
from medisynth.models.base import (
    MODEL_MODULES,
    MODEL_REGISTRY,
    DataSpec,
    GenerativeModel,
    build_model,
    get_model_class,
    register_model,
)

__all__ = ["MODEL_MODULES", "MODEL_REGISTRY", "DataSpec", "GenerativeModel", "build_model", "get_model_class", "register_model"]
