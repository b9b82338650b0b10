"""Adaptive discriminator augmentation: p follows r_t = E[sign D(real)] towards the target, p = 0 is free."""
from __future__ import annotations

import pytest
import torch

from medisynth.errors import MedisynthError
from medisynth.models import DataSpec, build_model
from medisynth.models.ada import AdaptiveAugment

from ._helpers import CLASSES, tiny_batch


def feed(ada: AdaptiveAugment, logit: float, steps: int, batch: int = 64) -> list[float]:
    history = []
    for _ in range(steps):
        ada.observe(torch.full((batch,), logit))
        history.append(ada.probability())
    return history


def test_p_rises_while_d_is_confident_on_real_images_and_falls_otherwise():
    ada = AdaptiveAugment("color,translation,cutout", target=0.6, speed_kimg=1.0, interval=4)
    assert ada.probability() == 0.0
    rising = feed(ada, 3.0, 40)  # D calls every real image real: r_t = 1 > 0.6, D overfits
    assert rising[-1] > 0.5 and rising == sorted(rising)
    assert rising[3] == pytest.approx(4 * 64 / 1000)  # one adjustment: images seen / (speed_kimg * 1000)
    falling = feed(ada, -3.0, 20)  # r_t = -1 < 0.6
    assert falling[-1] < rising[-1] and falling == sorted(falling, reverse=True)
    feed(ada, -3.0, 200)
    assert ada.probability() == 0.0  # clamped


def test_p_reaches_one_and_stays_clamped():
    ada = AdaptiveAugment("translation", target=0.6, speed_kimg=0.1, interval=1)
    feed(ada, 5.0, 10)
    assert ada.probability() == 1.0


@pytest.mark.parametrize("policy, target, mean_p, expected", [
    ("translation", 0.6, 1.0, True),  # p at 1 through the whole interval
    ("translation", 0.6, 0.999, False),  # p came down, or only reached 1 during the interval
    ("translation", 0.6, 0.0, False),
    ("translation", None, 1.0, False),  # plain DiffAugment: p = 1 by choice, not because D overfits
    ("", 0.6, 1.0, False),  # no augmentation at all
])
def test_the_ceiling_is_a_whole_interval_at_p_one_while_adapting(policy, target, mean_p, expected):
    assert AdaptiveAugment(policy, target=target).at_ceiling(mean_p) is expected


def test_a_wasserstein_critic_is_judged_against_its_fakes():
    # critic values with an arbitrary offset: every real above the fakes means overfitting
    ada = AdaptiveAugment("color", target=0.6, speed_kimg=1.0, interval=1)
    for _ in range(3):
        ada.observe(torch.full((8,), -50.0), torch.full((8,), -60.0))
    assert ada.probability() > 0


def test_p_zero_skips_the_augmentation_and_draws_no_random_numbers():
    ada = AdaptiveAugment("color,translation,cutout", target=0.6)
    x = torch.rand(4, 3, 16, 16)
    state = torch.get_rng_state()
    assert ada(x) is x
    assert torch.equal(torch.get_rng_state(), state)


def test_p_one_without_adaptation_is_plain_diffaugment():
    from medisynth.models.augment import diff_augment

    ada = AdaptiveAugment("color,translation,cutout", target=None)
    x = torch.rand(4, 3, 16, 16)
    torch.manual_seed(0)
    ours = ada(x)
    torch.manual_seed(0)
    assert torch.equal(ours, diff_augment(x, "color,translation,cutout"))
    feed(ada, 5.0, 10)
    assert ada.probability() == 1.0  # target None: never adapts


def test_p_half_augments_some_images_and_keeps_others():
    ada = AdaptiveAugment("cutout", target=0.6)
    ada.p.fill_(0.5)
    x = torch.rand(64, 1, 16, 16) + 1.0  # no zeros: cutout is visible
    torch.manual_seed(0)
    cut = (ada(x) == 0).flatten(1).any(dim=1)
    assert 10 < int(cut.sum()) < 54


@pytest.mark.parametrize("name", ["dcgan", "cgan", "wgan-gp", "fastgan"])
def test_every_gan_logs_ada_p_and_keeps_it_in_its_state(name):
    spec = DataSpec(32, 3, CLASSES)
    model = build_model(name, spec, {"width": 4, "latent_dim": 8, "ada_speed_kimg": 0.004, "ada_interval": 1,
                                     **({"n_critic": 1} if name == "wgan-gp" else {})})
    optimizers = model.configure_optimizers()
    logs = [model.training_step(tiny_batch(spec), optimizers, s)["ada_p"] for s in range(3)]
    assert all(0.0 <= p <= 1.0 for p in logs)
    assert "augment.p" in model.state_dict() and float(model.state_dict()["augment.p"]) == logs[-1]


@pytest.mark.parametrize("values", [{"ada_target": 1.5}, {"ada_speed_kimg": 0}, {"ada_interval": 0}])
def test_bad_ada_settings_are_clear_errors(values):
    with pytest.raises(MedisynthError, match="ada_"):
        build_model("dcgan", DataSpec(32, 3, CLASSES), {"width": 4, "latent_dim": 8, **values})


def test_ada_target_null_from_the_command_line_is_plain_diffaugment():
    from medisynth.training.config import parse_hp

    overrides = parse_hp(["ada_target=null", "width=4", "latent_dim=8"])  # what --hp ada_target=null gives
    model = build_model("dcgan", DataSpec(32, 3, CLASSES), overrides)
    assert model.hyper.ada_target is None and model.augment.probability() == 1.0
    with pytest.raises(MedisynthError, match="expected a number or null"):
        build_model("dcgan", DataSpec(32, 3, CLASSES), parse_hp(["ada_target=none"]))
