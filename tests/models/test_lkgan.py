"""lkgan-small / -v1 / -v2 (seed 004): sizes, skip wiring, the learnable kernel, WGAN-GP training."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from medisynth.errors import MedisynthError
from medisynth.models import DataSpec, build_model, get_model_class
from medisynth.models.lkgan import SkipPath

from ._helpers import CLASSES, changed, snapshot, tiny_batch

SIZES = {"lkgan-small": 64, "lkgan-v1": 128, "lkgan-v2": 128}
TINY = {"width": 4, "max_channels": 16, "latent_dim": 16, "n_critic": 1}


@pytest.mark.parametrize("name", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_generate_shape_and_range(name, channels):
    model = build_model(name, DataSpec(SIZES[name], channels, CLASSES), TINY)
    images = model.generate(torch.tensor([0, 1]), torch.Generator().manual_seed(0))
    assert images.shape == (2, channels, SIZES[name], SIZES[name])
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0


@pytest.mark.parametrize("name", SIZES)
@pytest.mark.parametrize("channels", [1, 3])
def test_training_step_is_finite_and_moves_both_networks(name, channels):
    spec = DataSpec(SIZES[name], channels, CLASSES)
    torch.manual_seed(0)
    model = build_model(name, spec, TINY)
    g_before, d_before = snapshot(model.generator), snapshot(model.discriminator)
    logs = model.training_step(tiny_batch(spec, n=2), model.configure_optimizers(), 0)
    assert tuple(logs) == ("Loss_D", "Loss_G", "W_dist", "GP", "ada_p")
    assert torch.isfinite(torch.tensor(list(logs.values()))).all()
    assert changed(g_before, model.generator) and changed(d_before, model.discriminator)


@pytest.mark.parametrize("name,bad", [("lkgan-small", 128), ("lkgan-v1", 64), ("lkgan-v2", 32)])
def test_check_spec_names_the_one_size(name, bad):
    with pytest.raises(MedisynthError, match=f"makes {SIZES[name]} px"):
        build_model(name, DataSpec(bad, 1, CLASSES), TINY)


def _skip_sources(model):
    return model.generator.skip_sources


def test_skip_wiring_per_variant():
    small = build_model("lkgan-small", DataSpec(64, 1, CLASSES), TINY)
    v1 = build_model("lkgan-v1", DataSpec(128, 1, CLASSES), TINY)
    v2 = build_model("lkgan-v2", DataSpec(128, 1, CLASSES), TINY)
    # small: 5 blocks (4x4 + four upsamplings), v1/v2: 6 blocks (F_1..F_6 of eq. 3.3)
    assert _skip_sources(small) == [[1]] * 5
    assert _skip_sources(v1) == [[1, 1]] * 6  # layer i-1 added twice
    assert _skip_sources(v2) == [[1]] + [[1, 2]] * 5  # layers i-1 and i-2
    scales = [[p.scale for p in paths] for paths in v2.generator.skips]
    assert scales == [[1]] + [[2, 2]] + [[2, 4]] * 4  # x_0 and x_1 are both 4x4
    modes = {p.mode for paths in v1.generator.skips for p in paths}
    assert modes == {"bilinear", "nearest"}


def test_stem_is_one_linear_layer_to_1x4x4():
    model = build_model("lkgan-v2", DataSpec(128, 1, CLASSES), {**TINY, "latent_dim": 128})
    assert isinstance(model.generator.linear, nn.Linear)
    assert tuple(model.generator.linear.weight.shape) == (16, 128)


def test_learnable_kernel_is_random_normal_and_learned():
    spec = DataSpec(128, 1, CLASSES)
    torch.manual_seed(0)
    model = build_model("lkgan-v1", spec, {**TINY, "kernel_size": 5})
    kernel = model.generator.kernel
    assert tuple(kernel.weight.shape) == (1, 1, 5, 5)
    assert kernel.weight.std() > 0.5  # N(0, 1), not the N(0, 0.02) of the other layers
    before = kernel.weight.detach().clone()
    model.training_step(tiny_batch(spec, n=2), model.configure_optimizers(), 0)
    assert not torch.equal(before, kernel.weight)


@pytest.mark.parametrize("name", SIZES)
def test_learnable_kernel_off_works(name):
    spec = DataSpec(SIZES[name], 1, CLASSES)
    model = build_model(name, spec, {**TINY, "learnable_kernel": False})
    assert model.generator.kernel is None
    logs = model.training_step(tiny_batch(spec, n=2), model.configure_optimizers(), 0)
    assert torch.isfinite(torch.tensor(list(logs.values()))).all()


def test_small_defaults_to_no_kernel_and_larger_ones_to_the_kernel():
    """Seed 004 §4: the kernel hurt the small GAN's FID (262 vs 64) and helped the 128 px ones."""
    assert get_model_class("lkgan-small").Hyper().learnable_kernel is False
    assert get_model_class("lkgan-v1").Hyper().learnable_kernel is True
    assert get_model_class("lkgan-v2").Hyper().learnable_kernel is True
    assert get_model_class("lkgan-v2").Hyper().latent_dim == 100


def test_even_kernel_size_is_rejected():
    with pytest.raises(MedisynthError, match="odd"):
        build_model("lkgan-v1", DataSpec(128, 1, CLASSES), {**TINY, "kernel_size": 4})


@pytest.mark.parametrize("name", SIZES)
def test_truncation_and_ema(name):
    model = build_model(name, DataSpec(SIZES[name], 1, CLASSES), TINY)
    assert hasattr(model, "ema_generator")
    labels = torch.zeros(2, dtype=torch.long)
    collapsed = model.generate(labels, torch.Generator().manual_seed(0), truncation=0.0)
    varied = model.generate(labels, torch.Generator().manual_seed(0), truncation=1.0)
    assert torch.allclose(collapsed[0], collapsed[1]) and not torch.allclose(varied[0], varied[1])
    with pytest.raises(MedisynthError, match="probabilistic"):
        model.discriminator_score(collapsed, labels)


def test_skip_path_interpolates_then_projects():
    path = SkipPath(3, 5, scale=4, mode="nearest")
    out = path(torch.randn(2, 3, 4, 4))
    assert out.shape == (2, 5, 16, 16)
