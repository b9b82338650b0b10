"""medisynth.registry: one helper for models, sources and feature spaces; lazy model modules."""
from __future__ import annotations

import subprocess
import sys

import pytest

from medisynth.errors import MedisynthError
from medisynth.registry import Registry


class Base:
    pass


class Good(Base):
    pass


class Other(Base):
    pass


def test_register_and_get():
    registry = Registry("thing", base=Base)
    assert registry.register("good")(Good) is Good
    assert registry.get("good") is Good and "good" in registry and list(registry) == ["good"]


@pytest.mark.parametrize("name, obj, message", [
    ("Bad Name", Good, "not valid"),
    ("", Good, "not valid"),
    ("good", object, "not a subclass of Base"),
    ("taken", Other, "already registered by"),
])
def test_register_refuses(name, obj, message):
    registry = Registry("thing", base=Base)
    registry.register("taken", Good)
    with pytest.raises(ValueError, match=message):
        registry.register(name, obj)


def test_unknown_name_lists_the_choices():
    registry = Registry("thing", base=Base, lazy={"later": "some.module"})
    registry.register("good", Good)
    with pytest.raises(MedisynthError, match=r"unknown thing 'nope'; choose one of: later, good"):
        registry.get("nope")


def test_lazy_name_belongs_to_its_module():
    registry = Registry("thing", base=Base, lazy={"good": "elsewhere.module"})
    assert "good" in registry and len(registry) == 1
    with pytest.raises(ValueError, match="belongs to elsewhere.module"):
        registry.register("good", Good)


def test_lazy_module_is_imported_on_lookup():
    registry = Registry("parser", lazy={"json-decoder": "json.decoder"})
    with pytest.raises(RuntimeError, match="did not register parser 'json-decoder'"):
        registry.get("json-decoder")  # json.decoder is imported, but registers nothing here


@pytest.mark.parametrize("registry_path", [
    "medisynth.models.base:MODEL_REGISTRY", "medisynth.data.sources.base:SOURCE_REGISTRY",
    "medisynth.features.base:FEATURE_SPACES",
])
def test_the_three_registries_use_the_helper(registry_path):
    import importlib

    module, attr = registry_path.split(":")
    assert isinstance(getattr(importlib.import_module(module), attr), Registry)


def test_a_real_duplicate_model_name_is_refused():
    from medisynth.models.base import GenerativeModel, get_model_class, register_model

    get_model_class("cgan")  # loaded first, so the refusal does not depend on which tests ran before
    with pytest.raises(ValueError, match="'cgan' is already registered by medisynth.models.cgan.CGAN"):
        @register_model("cgan")
        class Impostor(GenerativeModel):
            pass


def test_loading_a_gan_does_not_import_monai():
    code = ("import sys; from medisynth.models import get_model_class; get_model_class('cgan'); "
            "import medisynth.sampling, medisynth.runs; print('monai' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
    code = "import sys; from medisynth.models import get_model_class; get_model_class('diffusion'); print('monai' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "True", done.stderr
