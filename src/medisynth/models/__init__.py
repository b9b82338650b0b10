"""Generative models, found by name through ``MODEL_REGISTRY``.

Importing this package registers every model module listed below.
"""
from medisynth.models.base import MODEL_REGISTRY, DataSpec, GenerativeModel, build_model, get_model_class, register_model

__all__ = ["MODEL_REGISTRY", "DataSpec", "GenerativeModel", "build_model", "get_model_class", "register_model"]
