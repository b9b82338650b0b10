"""dcgan, cgan, wgan-gp: shapes, training steps, sizes, labels, truncation, EMA, the gradient penalty."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from medisynth.errors import MedisynthError
from medisynth.models import DataSpec, build_model, get_model_class
from medisynth.models.gan import gradient_penalty
from medisynth.models.layers import (
    DCGANDiscriminator, DCGANGenerator, evaluating, recompute_batchnorm_statistics,
)

from ._helpers import CLASSES, changed, snapshot, tiny_batch, train_steps

GANS = ["dcgan", "cgan", "wgan-gp"]
TINY = {"width": 8, "latent_dim": 16}


@pytest.mark.parametrize("name", GANS)
@pytest.mark.parametrize("channels", [1, 3])
def test_generate_shape_and_range(name, channels):
    model = build_model(name, DataSpec(32, channels, CLASSES), TINY)
    images = model.generate(torch.tensor([0, 1, 2, 1]), torch.Generator().manual_seed(1))
    assert images.shape == (4, channels, 32, 32)
    assert images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert images.std() > 0


@pytest.mark.parametrize("name", GANS)
@pytest.mark.parametrize("channels", [1, 3])
def test_training_steps_give_finite_logs_and_move_both_networks(name, channels):
    spec = DataSpec(32, channels, CLASSES)
    torch.manual_seed(0)
    model = build_model(name, spec, TINY)
    g_before, d_before = snapshot(model.generator), snapshot(model.discriminator)
    optimizers = model.configure_optimizers()
    logs = model.training_step(tiny_batch(spec), optimizers, 0)
    assert tuple(logs) == model.log_keys
    assert all(isinstance(v, float) and torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert changed(g_before, model.generator) and changed(d_before, model.discriminator)
    # the discriminator is trainable again after the generator's step froze it
    assert all(p.requires_grad for p in model.discriminator.parameters())


@pytest.mark.parametrize("name", ["dcgan", "cgan"])
def test_probabilities_are_logged(name):
    _, logs = train_steps(name, DataSpec(32, 3, CLASSES), TINY, steps=1)
    assert 0 <= logs[0]["D(x)"] <= 1 and 0 <= logs[0]["D(G(z))"] <= 1


@pytest.mark.parametrize("name", GANS)
@pytest.mark.parametrize("size", [16, 48, 512])
def test_check_spec_rejects_sizes_the_architecture_cannot_make(name, size):
    with pytest.raises(MedisynthError, match="32, 64, 128, 256"):
        build_model(name, DataSpec(size, 3, CLASSES), TINY)


@pytest.mark.parametrize("name", GANS)
def test_unknown_diffaugment_policy_is_a_clear_error(name):
    with pytest.raises(MedisynthError, match="flip"):
        build_model(name, DataSpec(32, 3, CLASSES), {**TINY, "diffaugment": "color,flip"})


@pytest.mark.parametrize("name", GANS)
def test_truncation_zero_collapses_to_the_mean_and_one_varies(name):
    model = build_model(name, DataSpec(32, 3, CLASSES), TINY)
    labels = torch.zeros(3, dtype=torch.long)
    collapsed = model.generate(labels, torch.Generator().manual_seed(0), truncation=0.0)
    assert torch.allclose(collapsed[0], collapsed[1]) and torch.allclose(collapsed[0], collapsed[2])
    varied = model.generate(labels, torch.Generator().manual_seed(0), truncation=1.0)
    assert not torch.allclose(varied[0], varied[1])
    with pytest.raises(MedisynthError, match="truncation"):
        model.generate(labels, truncation=-0.5)


@pytest.mark.parametrize("name", GANS)
def test_generate_is_reproducible_with_a_generator(name):
    model = build_model(name, DataSpec(32, 1, CLASSES), TINY)
    labels = torch.tensor([0, 1])
    a = model.generate(labels, torch.Generator().manual_seed(5))
    b = model.generate(labels, torch.Generator().manual_seed(5))
    c = model.generate(labels, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_cgan_generate_respects_labels():
    model = build_model("cgan", DataSpec(32, 3, CLASSES), TINY)
    outs = [model.generate(torch.tensor([k]), torch.Generator().manual_seed(0)) for k in range(3)]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[1], outs[2])
    with pytest.raises(MedisynthError, match="3 classes"):
        model.generate(torch.tensor([3]))


def test_cgan_discriminator_score_uses_the_label():
    model = build_model("cgan", DataSpec(32, 3, CLASSES), TINY)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    s0 = model.discriminator_score(images, torch.tensor([0, 0]))
    s1 = model.discriminator_score(images, torch.tensor([1, 1]))
    assert s0.shape == (2,) and ((s0 >= 0) & (s0 <= 1)).all()
    assert not torch.allclose(s0, s1)


def test_dcgan_discriminator_score_is_a_probability():
    model = build_model("dcgan", DataSpec(32, 1, CLASSES), TINY)
    scores = model.discriminator_score(torch.rand(5, 1, 32, 32) * 2 - 1, torch.zeros(5, dtype=torch.long))
    assert scores.shape == (5,) and ((scores >= 0) & (scores <= 1)).all()


def test_wgan_gp_has_no_probabilistic_score():
    cls = get_model_class("wgan-gp")
    assert not cls.has_discriminator
    model = build_model("wgan-gp", DataSpec(32, 1, CLASSES), TINY)
    with pytest.raises(MedisynthError, match="probabilistic discriminator"):
        model.discriminator_score(torch.zeros(1, 1, 32, 32), torch.zeros(1, dtype=torch.long))


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_dcgan_matches_the_reference_architecture(size):
    """Layer for layer the networks of ../shared/baselines/reference_dcgan.py (copied shapes below)."""
    import numpy as np

    ups = int(np.log2(size)) - 3
    g = DCGANGenerator(100, 64, 3, size).main
    d = DCGANDiscriminator(64, 3, size).main
    g_convs = [m for m in g if isinstance(m, nn.ConvTranspose2d)]
    d_convs = [m for m in d if isinstance(m, nn.Conv2d)]
    assert [tuple(m.weight.shape) for m in g_convs] == (
        [(100, 64 * 2**ups, 4, 4)] + [(64 * 2**i, 64 * 2 ** (i - 1), 4, 4) for i in range(ups, 0, -1)] + [(64, 3, 4, 4)]
    )
    assert [tuple(m.weight.shape) for m in d_convs] == (
        [(64, 3, 4, 4)] + [(64 * 2 ** (i + 1), 64 * 2**i, 4, 4) for i in range(ups)] + [(1, 64 * 2**ups, 4, 4)]
    )
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d) == ups and not any(m.bias is not None for m in d_convs)


def test_dcgan_default_hyper_is_radford():
    model = build_model("dcgan", DataSpec(64, 3, CLASSES))
    opt = model.configure_optimizers()["generator"]
    assert opt.param_groups[0]["lr"] == 2e-4 and tuple(opt.param_groups[0]["betas"]) == (0.5, 0.999)
    assert model.hyper.latent_dim == 100 and model.hyper.width == 64
    std = model.generator.main[0].weight.std().item()
    assert 0.015 < std < 0.025


def test_lr_shortcut_sets_both_learning_rates():
    model = build_model("dcgan", DataSpec(32, 3, CLASSES), {**TINY, "lr": 1e-3, "betas": [0.0, 0.99]})
    opts = model.configure_optimizers()
    assert all(o.param_groups[0]["lr"] == 1e-3 for o in opts.values())
    assert opts["generator"].param_groups[0]["betas"] == (0.0, 0.99)


@pytest.mark.parametrize("name", GANS)
def test_ema_copy_exists_and_update_moves_it(name):
    spec = DataSpec(32, 1, CLASSES)
    model = build_model(name, spec, TINY)
    assert hasattr(model, "ema_generator")
    ema_before = snapshot(model.ema_generator)
    optimizers = model.configure_optimizers()
    model.training_step(tiny_batch(spec), optimizers, 0)
    assert not changed(ema_before, model.ema_generator)  # training alone leaves the EMA copy
    model.update_ema(0.5)
    assert changed(ema_before, model.ema_generator)
    # sampling uses the EMA copy unless use_ema is off
    z_gen = torch.Generator().manual_seed(0)
    with_ema = model.generate(torch.tensor([0]), z_gen)
    model.use_ema = False
    without = model.generate(torch.tensor([0]), torch.Generator().manual_seed(0))
    assert not torch.allclose(with_ema, without)


def test_recompute_batchnorm_statistics_is_the_exact_average_over_its_inputs():
    net = nn.Sequential(nn.Conv2d(2, 3, 1), nn.BatchNorm2d(3, momentum=0.3), nn.ReLU()).eval()
    net[1].running_mean.fill_(5.0)  # stale statistics, as copied from other weights
    inputs = [(torch.randn(4, 2, 5, 5, generator=torch.Generator().manual_seed(i)),) for i in range(3)]
    recompute_batchnorm_statistics(net, inputs)
    with torch.no_grad():
        activations = [net[0](x) for (x,) in inputs]
    means = torch.stack([a.mean(dim=(0, 2, 3)) for a in activations])
    variances = torch.stack([a.transpose(0, 1).flatten(1).var(dim=1) for a in activations])  # unbiased, per batch
    assert torch.allclose(net[1].running_mean, means.mean(0), atol=1e-6)
    assert torch.allclose(net[1].running_var, variances.mean(0), atol=1e-5)
    assert not net.training and not net[1].training and net[1].momentum == 0.3  # modes and momentum put back


@pytest.mark.parametrize("name", [*GANS, "fastgan", "lkgan-small"])
def test_refreshed_ema_generator_normalises_as_its_own_batches_do(name):
    """After training, the EMA generator's eval-mode samples match its train-mode ones (batch statistics) only
    once its statistics are its own: the live generator's, copied by update_ema, belong to other weights."""
    spec = DataSpec(64 if name == "lkgan-small" else 32, 3, CLASSES)  # lkgan-small makes 64 px only
    model, _ = train_steps(name, spec, TINY, steps=3)
    model.update_ema(0.5)  # averaged weights, the live generator's statistics
    latents, labels = torch.randn(256, TINY["latent_dim"]), torch.arange(256) % 3

    def eval_vs_batch_statistics() -> float:
        ema = model.ema_generator
        with torch.no_grad(), evaluating(ema):
            in_eval = ema(latents, labels)
        batch_mode = copy.deepcopy(ema).train()
        with torch.no_grad():
            in_train = batch_mode(latents, labels)
        return float((in_eval - in_train).abs().mean())

    before = eval_vs_batch_statistics()
    model.refresh_ema_statistics(labels, seed=0)
    after = eval_vs_batch_statistics()
    assert after < 0.15 * before, (before, after)  # measured: 0.04-0.09 of it; without the refresh 1.0


def test_generate_leaves_the_live_generator_in_training_mode():
    model = build_model("dcgan", DataSpec(32, 1, CLASSES), TINY).train()
    model.use_ema = False
    model.generate(torch.tensor([0, 0]))
    assert model.generator.training


# -- WGAN-GP ---------------------------------------------------------------------------------------
class LinearCritic(nn.Module):
    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x, labels=None):
        return (x.flatten(1) * self.weight.flatten()).sum(1) + 0.3


def test_gradient_penalty_equals_hand_computation_for_a_linear_critic():
    torch.manual_seed(0)
    w = torch.randn(1, 2, 3, 3)
    critic = LinearCritic(w)
    real, fake = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    # a linear critic's gradient is w everywhere, so the penalty is (||w|| - 1)^2 whatever x_hat is
    expected = (w.norm() - 1) ** 2
    assert torch.allclose(gradient_penalty(critic, real, fake), expected, atol=1e-6)
    # and it is differentiable in the critic's weights (create_graph): d/dw = 2 (||w|| - 1) w / ||w||
    gradient_penalty(critic, real, fake, alpha=torch.full((4, 1, 1, 1), 0.25)).backward()
    assert torch.allclose(critic.weight.grad, 2 * (w.norm() - 1) * w / w.norm(), atol=1e-5)


def test_gradient_penalty_of_a_quadratic_critic_uses_the_interpolates():
    class Quadratic(nn.Module):
        def forward(self, x, labels=None):
            return 0.5 * (x.flatten(1) ** 2).sum(1)  # gradient = x_hat

    real, fake = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    alpha = torch.tensor([0.0, 0.5, 1.0]).view(3, 1, 1, 1)
    x_hat = alpha * real + (1 - alpha) * fake
    expected = ((x_hat.flatten(1).norm(dim=1) - 1) ** 2).mean()
    assert torch.allclose(gradient_penalty(Quadratic(), real, fake, alpha=alpha), expected, atol=1e-6)


def test_wgan_gp_defaults_follow_gulrajani():
    model = build_model("wgan-gp", DataSpec(32, 1, CLASSES))
    h = model.hyper
    assert (h.n_critic, h.gp_weight, h.lr_g, h.lr_d, tuple(h.betas)) == (5, 10.0, 1e-4, 1e-4, (0.0, 0.9))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.discriminator.modules())


def test_wgan_gp_takes_n_critic_critic_steps_per_generator_step():
    spec = DataSpec(32, 1, CLASSES)
    model = build_model("wgan-gp", spec, {**TINY, "n_critic": 3})
    optimizers = model.configure_optimizers()
    model.training_step(tiny_batch(spec), optimizers, 0)
    d_steps = optimizers["discriminator"].state[next(model.discriminator.parameters())]["step"]
    g_steps = optimizers["generator"].state[next(model.generator.parameters())]["step"]
    assert (int(d_steps), int(g_steps)) == (3, 1)


@pytest.mark.parametrize("name", GANS)
def test_training_step_runs_under_bf16_autocast(name):
    spec = DataSpec(32, 3, CLASSES)
    model = build_model(name, spec, TINY)
    optimizers = model.configure_optimizers()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logs = model.training_step(tiny_batch(spec), optimizers, 0)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
