"""models/layers.py: the shared hyper-parameter checks, as each model reports them."""
from __future__ import annotations

import pytest

from medisynth.errors import MedisynthError
from medisynth.models import DataSpec, build_model
from medisynth.models.layers import check_choice


@pytest.mark.parametrize("choices, listed", [(("a",), "a"), (("a", "b"), "a or b"), (("a", "b", "c"), "a, b or c")])
def test_check_choice_names_the_value_and_lists_the_choices(choices, listed):
    check_choice("m", "x", choices[-1], choices)  # a valid value passes
    with pytest.raises(MedisynthError) as refused:
        check_choice("m", "x", "z", choices)
    assert str(refused.value) == f"model 'm': hyper-parameter x='z'; choose {listed}"


@pytest.mark.parametrize("model, name, choices", [
    ("fastgan", "upsample", "nearest or bilinear"),
    ("fastgan", "d_norm", "batch or none"),
    ("fastgan", "mode_seeking_on", "pixels or structure"),
    ("pix2pix", "gan_mode", "vanilla or lsgan"),
    ("vae", "recon", "bce or mse"),
    ("diffusion", "recipe", "ddpm or edm"),
    ("diffusion", "prediction", "epsilon or v_prediction"),
])
def test_every_model_refuses_an_unknown_choice_in_one_line(model, name, choices):
    with pytest.raises(MedisynthError) as refused:
        build_model(model, DataSpec(32, 3, ["a", "b"]), {name: "nope"})
    assert str(refused.value) == f"model {model!r}: hyper-parameter {name}='nope'; choose {choices}"


@pytest.mark.parametrize("model, name, size", [
    ("fastgan", "class_loss", 32),
    ("fastgan", "lecam", 32),
    ("vae", "kl_weight", 32),
    ("wgan-gp", "gp_weight", 32),
    ("resvae", "blocks", 64),
])
def test_every_model_refuses_a_negative_weight_or_count_in_one_line(model, name, size):
    build_model(model, DataSpec(size, 3, ["a", "b"]), {name: 0})  # 0 is "off", allowed
    with pytest.raises(MedisynthError) as refused:
        build_model(model, DataSpec(size, 3, ["a", "b"]), {name: -1})
    assert str(refused.value) == f"model {model!r}: hyper-parameter {name} must be >= 0, 0 for off (got -1)"
