"""The class-conditional diffusion model: shapes, training, guidance, DDIM and EDM/Heun sampling, EMA, checkpoints."""
from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from medisynth.errors import MedisynthError
from medisynth.models import edm
from medisynth.models.base import DataSpec, build_model

TINY = {"num_channels": [8, 16], "num_head_channels": 8, "num_res_blocks": 1}


def tiny_model(size=16, channels=1, classes=("a", "b"), **hyper):
    return build_model("diffusion", DataSpec(size, channels, list(classes)), {**TINY, **hyper})


def random_batch(n=8, size=16, channels=1, classes=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "image": torch.rand(n, channels, size, size, generator=g) * 2 - 1,
        "label": torch.randint(0, classes, (n,), generator=g),
    }


def black_white_batch(n=16, size=16):
    """Class 0 all black (-1), class 1 all white (+1): as different as two classes can be."""
    labels = torch.arange(n) % 2
    images = (labels.float() * 2 - 1).view(n, 1, 1, 1).expand(n, 1, size, size).clone()
    return {"image": images, "label": labels}


@pytest.fixture(scope="module")
def black_white_model():
    """A tiny model trained briefly (300 steps, about 10 s on one thread) on black vs white images."""
    torch.manual_seed(0)
    model = tiny_model(lr=2e-3)
    optimizers = model.configure_optimizers()
    batch = black_white_batch()
    for step in range(300):
        model.training_step(batch, optimizers, step)
        model.update_ema(0.9)
    return model.eval()


@pytest.mark.parametrize("size,channels,widths", [(16, 1, [8, 16]), (32, 3, [8, 16, 16])])
def test_unet_keeps_the_image_shape(size, channels, widths):
    model = tiny_model(size=size, channels=channels, num_channels=widths)
    x = torch.randn(2, channels, size, size)
    out = model.unet(x, timesteps=torch.tensor([0, 999]), class_labels=torch.tensor([0, model.null_label]))
    assert out.shape == x.shape
    # one embedding per class plus the "null" class used for classifier-free guidance
    assert model.unet.class_embedding.num_embeddings == 3


RECIPES = [{"prediction": "epsilon"}, {"prediction": "v_prediction"}, {"recipe": "edm"}]
RECIPE_IDS = ["ddpm-epsilon", "ddpm-v", "edm"]


@pytest.mark.parametrize("recipe", RECIPES, ids=RECIPE_IDS)
def test_one_training_step_is_finite_and_moves_the_weights(recipe):
    torch.manual_seed(0)
    model = tiny_model(**recipe)
    before = {name: p.detach().clone() for name, p in model.unet.named_parameters() if name.endswith("weight")}
    optimizers = model.configure_optimizers()
    # three steps: the UNet's output convolution starts at zero, so step 0 only moves that layer and
    # step 1 everything but the embeddings (biases feeding a GroupNorm never get a gradient, so only
    # weights are compared)
    for step in range(3):
        logs = model.training_step(random_batch(seed=step), optimizers, step)
        assert set(logs) == set(model.log_keys) == {"loss"}
        assert torch.isfinite(torch.tensor(logs["loss"]))
    unchanged = [name for name, p in model.unet.named_parameters() if name in before and torch.equal(before[name], p)]
    assert unchanged == []


@pytest.mark.parametrize("recipe", RECIPES, ids=RECIPE_IDS)
def test_every_recipe_learns(recipe):
    """The loss at fixed (t or sigma, noise, label dropout) drops after 60 steps on one batch."""
    model = tiny_model(**recipe, lr=2e-3)
    batch = black_white_batch()

    def fixed_loss():
        torch.manual_seed(123)
        with torch.no_grad():
            return float(model.diffusion_loss(batch["image"], batch["label"]))

    torch.manual_seed(0)
    start = fixed_loss()
    optimizers = model.configure_optimizers()
    for step in range(60):
        model.training_step(batch, optimizers, step)
    assert fixed_loss() < 0.7 * start


class _Oracle(nn.Module):
    """The ideal denoiser for a data set of one image x0: it knows x0, so eps (or v) follows from x_t."""

    def __init__(self, model, x0):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the sampler a device to read
        self.x0, self.prediction = x0, model.hyper.prediction
        self.alphas_cumprod = model.train_scheduler.alphas_cumprod

    def forward(self, x, timesteps, class_labels):
        a = self.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
        eps = (x - a.sqrt() * self.x0) / (1 - a).sqrt()
        return eps if self.prediction == "epsilon" else a.sqrt() * eps - (1 - a).sqrt() * self.x0


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("steps", [1, 5, 20])
def test_ddim_with_an_ideal_denoiser_returns_the_data(prediction, steps):
    """Checks the sampler's use of the prediction target: an exact eps/v oracle must give back x0."""
    model = tiny_model(prediction=prediction)
    x0 = torch.linspace(-0.9, 0.9, 16 * 16).view(1, 1, 16, 16)
    model.unet = _Oracle(model, x0)
    model.use_ema = False
    out = model.generate(torch.tensor([0, 1]), torch.Generator().manual_seed(0), steps=steps, guidance_scale=1.0)
    torch.testing.assert_close(out, x0.expand(2, -1, -1, -1), atol=1e-4, rtol=0)


@pytest.mark.parametrize("steps,expected", [(5, [800, 600, 400, 200, 0]), (1, [0]), (3, [666, 333, 0])])
def test_ddim_timesteps_match_the_step_size_ddim_uses(steps, expected):
    """DDIMScheduler.step jumps from t to t - T // steps, so the schedule must be spaced the same."""
    assert tiny_model().ddim_timesteps(steps).tolist() == expected


def test_conditioning_separates_two_classes(black_white_model):
    labels = torch.tensor([0] * 6 + [1] * 6)
    out = black_white_model.generate(labels, torch.Generator().manual_seed(1), steps=10)
    black, white = out[:6].mean(), out[6:].mean()
    assert white - black > 1.0, (float(black), float(white))


def test_guidance_scale_changes_the_samples_for_the_same_noise(black_white_model):
    labels = torch.tensor([0, 1, 0, 1])
    samples = {
        s: black_white_model.generate(labels, torch.Generator().manual_seed(2), steps=10, guidance_scale=s)
        for s in (0.0, 1.0, 3.0)
    }
    assert (samples[0.0] - samples[3.0]).abs().max() > 0.05
    assert (samples[1.0] - samples[3.0]).abs().max() > 0.01
    # more guidance pushes class 1 towards white and class 0 towards black
    assert samples[3.0][1::2].mean() - samples[3.0][0::2].mean() >= samples[0.0][1::2].mean() - samples[0.0][0::2].mean()


@pytest.mark.parametrize("steps", [5, 20])
def test_ddim_steps_give_reproducible_finite_images(black_white_model, steps):
    labels = torch.tensor([0, 1, 1])
    first = black_white_model.generate(labels, torch.Generator().manual_seed(7), steps=steps)
    again = black_white_model.generate(labels, torch.Generator().manual_seed(7), steps=steps)
    other = black_white_model.generate(labels, torch.Generator().manual_seed(8), steps=steps)
    assert first.shape == (3, 1, 16, 16)
    assert torch.isfinite(first).all() and first.min() >= -1 and first.max() <= 1
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_update_ema_moves_the_ema_copy_towards_the_live_network():
    torch.manual_seed(0)
    model = tiny_model()
    assert model.ema_networks == ("unet",) and hasattr(model, "ema_unet")
    ema_before = [p.clone() for p in model.ema_unet.parameters()]
    model.training_step(random_batch(), model.configure_optimizers(), 0)
    model.update_ema(0.5)
    moved = [not torch.equal(a, b) for a, b in zip(ema_before, model.ema_unet.parameters())]
    assert any(moved)  # (after one step only the zero-initialised output layer has moved)
    for p_ema, p, p0 in zip(model.ema_unet.parameters(), model.unet.parameters(), ema_before):
        torch.testing.assert_close(p_ema, 0.5 * (p0 + p))


def test_sampling_uses_the_ema_network(black_white_model):
    labels = torch.tensor([0, 1])
    with_ema = black_white_model.generate(labels, torch.Generator().manual_seed(3), steps=5)
    black_white_model.use_ema = False
    try:
        live = black_white_model.generate(labels, torch.Generator().manual_seed(3), steps=5)
    finally:
        black_white_model.use_ema = True
    assert not torch.equal(with_ema, live)


def test_safetensors_round_trip_gives_identical_samples(black_white_model, tmp_path):
    hyper = json.loads(json.dumps(dataclasses.asdict(black_white_model.hyper)))  # tuples come back as lists
    save_file({k: v.contiguous() for k, v in black_white_model.state_dict().items()}, tmp_path / "model.safetensors")
    fresh = build_model("diffusion", black_white_model.spec, hyper)
    fresh.load_state_dict(load_file(tmp_path / "model.safetensors"))
    fresh.eval()
    labels = torch.tensor([0, 1, 0])
    expected = black_white_model.generate(labels, torch.Generator().manual_seed(4), steps=5, guidance_scale=2.0)
    assert torch.equal(fresh.generate(labels, torch.Generator().manual_seed(4), steps=5, guidance_scale=2.0), expected)


@pytest.mark.parametrize("recipe", ["ddpm", "edm"])
def test_training_step_runs_under_bf16_autocast(recipe):
    torch.manual_seed(0)
    model = tiny_model(recipe=recipe)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logs = model.training_step(random_batch(), model.configure_optimizers(), 0)
    assert torch.isfinite(torch.tensor(logs["loss"]))


@pytest.mark.parametrize(
    "hyper,size,match",
    [
        ({"prediction": "x0"}, 16, "prediction"),
        ({"schedule": "quadratic"}, 16, "schedule"),
        ({"p_uncond": 1.0}, 16, "p_uncond"),
        ({"num_channels": [8, 16, 16, 16]}, 12, "not divisible"),
        ({"attention_levels": [True]}, 16, "attention_levels"),
        ({"no_such_thing": 1}, 16, "no_such_thing"),
        ({"recipe": "ddim"}, 16, "recipe"),
        ({"recipe": "edm", "edm_sigma_min": 100.0}, 16, "edm_sigma_min"),
        ({"recipe": "edm", "edm_rho": 0.0}, 16, "edm_rho"),
        ({"recipe": "edm", "edm_sigma_data": -0.5}, 16, "edm_sigma_data"),
        ({"sampling_steps": 0}, 16, "sampling_steps"),
    ],
)
def test_bad_hyper_parameters_are_one_clear_error(hyper, size, match):
    with pytest.raises(MedisynthError, match=match):
        tiny_model(size=size, **hyper)


@pytest.mark.parametrize("recipe", ["ddpm", "edm"])
@pytest.mark.parametrize(
    "options,match",
    [({"steps": 0}, "--sampling-steps"), ({"steps": 5000}, "--sampling-steps"), ({"guidance_scale": -1.0}, "--guidance-scale"),
     ({"truncation": 0.5}, "truncation")],
)
def test_bad_sampling_options_are_one_clear_error(options, match, recipe):
    with pytest.raises(MedisynthError, match=match):
        tiny_model(recipe=recipe).generate(torch.tensor([0]), torch.Generator().manual_seed(0), **options)


def test_labels_outside_the_classes_are_an_error():
    with pytest.raises(MedisynthError, match="class indices"):
        tiny_model().generate(torch.tensor([2]), torch.Generator().manual_seed(0), steps=2)


# -- through the trainer and the sampler --------------------------------------------------------
def _train_config(data, out, steps, recipe="ddpm", **overrides):
    from medisynth.training.config import TrainConfig

    return TrainConfig(data=data, model="diffusion", out=out, steps=steps, batch_size=4, hyper={**TINY, "recipe": recipe},
                       checkpoint_every=100, sample_every=0, device="cpu", progress=False, **overrides)


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    from medisynth.training.toy import write_toy_dataset

    return write_toy_dataset(tmp_path_factory.mktemp("toy"), per_class={"0": 4, "1": 4}, size=16, channels=1)


@pytest.mark.parametrize("recipe", ["ddpm", "edm"])
def test_trainer_resume_continues_a_diffusion_run_exactly(toy_data, tmp_path, recipe):
    """4 steps in one go == 2 steps, stop, resume, 2 more (t or sigma, noise and label dropout replay exactly)."""
    from medisynth.runs import latest_checkpoint
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    train(_train_config(toy_data, tmp_path / "straight", 4, recipe))
    train(_train_config(toy_data, tmp_path / "split", 2, recipe))
    train(TrainConfig(resume=tmp_path / "split", steps=4, progress=False))
    straight = load_file(latest_checkpoint(tmp_path / "straight") / "model.safetensors")
    split = load_file(latest_checkpoint(tmp_path / "split") / "model.safetensors")
    assert straight.keys() == split.keys() and any(k.startswith("ema_unet.") for k in split)
    for key in straight:
        assert torch.equal(straight[key], split[key]), key


def test_sampler_writes_a_diffusion_run_with_its_options(toy_data, tmp_path):
    import pandas as pd

    from medisynth.sampling import SampleConfig, sample
    from medisynth.training.trainer import train

    train(_train_config(toy_data, tmp_path / "run", 2))
    config = dict(run=tmp_path / "run", per_class={"1": 3, "0": 2}, steps=3, guidance_scale=1.5, device="cpu",
                  progress=False, seed=5)
    sample(SampleConfig(out=tmp_path / "a", **config))
    sample(SampleConfig(out=tmp_path / "b", **config))
    table = pd.read_csv(tmp_path / "a" / "labels.csv", dtype={"label": str})
    assert sorted(table["label"].tolist()) == ["0", "0", "1", "1", "1"]
    for image in table["image"]:  # same seed, same steps: the same images
        assert (tmp_path / "a" / "images" / f"{image}.png").read_bytes() == (tmp_path / "b" / "images" / f"{image}.png").read_bytes()
    with pytest.raises(MedisynthError, match="truncation"):
        sample(SampleConfig(out=tmp_path / "c", truncation=0.5, **config))


# -- latent diffusion ----------------------------------------------------------------------------
AE_TINY = {"num_channels": [8, 16], "latent_channels": 2}


@pytest.fixture(scope="module")
def autoencoder_run(toy_data, tmp_path_factory):
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    run = tmp_path_factory.mktemp("ae") / "run"
    train(TrainConfig(data=toy_data, model="autoencoder-kl", out=run, steps=3, batch_size=4, hyper=AE_TINY,
                      sample_every=0, device="cpu", progress=False))
    return run


def test_autoencoder_kl_trains_and_keeps_the_image_shape(autoencoder_run):
    from medisynth.runs import load_run

    ae = load_run(autoencoder_run, device="cpu").model
    images = torch.rand(3, 1, 16, 16) * 2 - 1
    assert ae.encode(images).shape == (3, 2, 8, 8) == (3, *ae.latent_shape)
    assert ae.reconstruct(images).shape == images.shape
    assert ae.generate(torch.zeros(2, dtype=torch.long), torch.Generator().manual_seed(0)).shape == (2, 1, 16, 16)


@pytest.mark.parametrize("recipe", ["ddpm", "edm"])
def test_latent_diffusion_trains_in_the_latent_space_and_decodes_images(toy_data, autoencoder_run, tmp_path, recipe):
    from medisynth.runs import load_run
    from medisynth.training.trainer import train

    hyper = {**TINY, "num_channels": [8, 16], "autoencoder_run": str(autoencoder_run), "recipe": recipe}
    config = _train_config(toy_data, tmp_path / "ldm", 3)
    config.hyper = hyper
    train(config)
    model = load_run(tmp_path / "ldm", device="cpu").model
    assert model.latent and model.unet.conv_in.conv.in_channels == 2
    assert float(model.latent_scale) > 0  # measured on the first batch and saved with the run
    if recipe == "edm":
        assert model.sigma_data == 1.0  # the latents are scaled to unit variance
    ae = load_run(autoencoder_run, device="cpu").model
    for key, value in ae.state_dict().items():  # the frozen autoencoder travelled unchanged
        assert torch.equal(model.autoencoder.state_dict()[key], value), key
    out = model.generate(torch.tensor([0, 1]), torch.Generator().manual_seed(0), steps=3)
    again = model.generate(torch.tensor([0, 1]), torch.Generator().manual_seed(0), steps=3)
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all() and torch.equal(out, again)


def test_latent_diffusion_refuses_an_unusable_autoencoder_run(toy_data, autoencoder_run, tmp_path):
    with pytest.raises(MedisynthError, match="autoencoder_run"):
        tiny_model(autoencoder_run=str(tmp_path / "missing"))
    with pytest.raises(MedisynthError, match="32 px"):  # trained on 16 px images
        tiny_model(size=32, autoencoder_run=str(autoencoder_run))


def test_hyper_parameters_set_the_default_sampling_options(black_white_model):
    model = build_model("diffusion", black_white_model.spec,
                        {**TINY, "lr": 2e-3, "sampling_steps": 4, "guidance_scale": 1.5}).eval()
    model.load_state_dict(black_white_model.state_dict())
    labels = torch.tensor([0, 1])
    default = model.generate(labels, torch.Generator().manual_seed(6))
    assert torch.equal(default, model.generate(labels, torch.Generator().manual_seed(6), steps=4, guidance_scale=1.5))
    assert not torch.equal(default, model.generate(labels, torch.Generator().manual_seed(6), steps=5, guidance_scale=1.5))


# -- the EDM recipe (Karras et al. 2022) ---------------------------------------------------------
def test_edm_preconditioning_keeps_the_input_as_sigma_goes_to_zero():
    """c_skip -> 1 and c_out -> 0: at vanishing noise the denoiser returns its input, whatever the network says."""
    c_skip, c_out, c_in, _ = edm.preconditioning(torch.tensor([1e-7, 0.5, 80.0]), sigma_data=0.5)
    assert c_skip[0] == pytest.approx(1.0, abs=1e-12) and c_out[0] == pytest.approx(0.0, abs=1e-6)
    # unit-variance input (c_in^2 (sigma^2 + sigma_data^2) = 1) and the loss weight undoes c_out^2
    sigma = torch.tensor([1e-3, 0.5, 80.0])
    _, c_out, c_in, _ = edm.preconditioning(sigma, sigma_data=0.5)
    torch.testing.assert_close(c_in**2 * (sigma**2 + 0.25), torch.ones(3))
    torch.testing.assert_close(edm.loss_weight(sigma, 0.5) * c_out**2, torch.ones(3))

    torch.manual_seed(0)
    model = tiny_model(recipe="edm")
    for p in model.unet.parameters():  # a network with a large output, so a leak through c_out would show
        p.data.normal_(0, 0.3)
    x = torch.randn(3, 1, 16, 16)
    labels = torch.tensor([0, 1, model.null_label])
    assert model.edm_denoise(model.unet, x, torch.full((3, 1, 1, 1), 0.5), labels).sub(x).abs().max() > 0.1
    torch.testing.assert_close(model.edm_denoise(model.unet, x, torch.full((3, 1, 1, 1), 1e-7), labels), x,
                               atol=1e-5, rtol=0)


def test_edm_maps_its_sampling_range_onto_monais_timesteps():
    """MONAI's sinusoidal embedding is built for timesteps 0..999; c_noise = ln(sigma)/4 is mapped onto them."""
    sigma = torch.tensor([edm.SIGMA_MIN, 1.0, edm.SIGMA_MAX])
    timesteps = edm.unet_timesteps(edm.preconditioning(sigma, 0.5)[3])
    torch.testing.assert_close(timesteps[[0, 2]], torch.tensor([0.0, 999.0]), atol=1e-3, rtol=0)
    assert 0 < timesteps[1] < 999


@pytest.mark.parametrize("steps", [1, 2, 18])
def test_karras_sigmas_run_from_sigma_max_to_sigma_min_then_zero(steps):
    sigmas = edm.karras_sigmas(steps, 0.002, 80.0, 7.0)
    assert sigmas.shape == (steps + 1,) and sigmas[0] == pytest.approx(80.0) and sigmas[-1] == 0
    if steps > 1:
        assert sigmas[-2] == pytest.approx(0.002)
    assert (sigmas[1:] < sigmas[:-1]).all()
    if steps == 18:  # rho = 7 puts most steps at low noise: the middle level is ~2.5, not ~40
        assert 1.0 < sigmas[9] < 5.0


class _Counting(nn.Module):
    """Wraps a network and counts its calls (one call may carry the conditional and unconditional halves)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.calls = net, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.net(*args, **kwargs)


@pytest.mark.parametrize("steps", [1, 3, 18])
@pytest.mark.parametrize("guidance_scale", [1.0, 2.0])
def test_heun_with_n_steps_calls_the_network_2n_minus_1_times(steps, guidance_scale):
    model = tiny_model(recipe="edm").eval()
    model.use_ema = False
    model.unet = _Counting(model.unet)
    out = model.generate(torch.tensor([0, 1]), torch.Generator().manual_seed(0), steps=steps,
                         guidance_scale=guidance_scale)
    assert model.unet.calls == 2 * steps - 1
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()


def test_edm_samples_with_18_heun_steps_by_default_at_small_sizes():
    model = tiny_model(recipe="edm").eval()
    model.use_ema = False
    model.unet = _Counting(model.unet)
    model.generate(torch.tensor([0]), torch.Generator().manual_seed(0))
    assert model.default_sampling_steps() == 18 and model.unet.calls == 35
    assert tiny_model().default_sampling_steps() == 50  # the DDPM recipe keeps its 50 DDIM steps


class _EDMOracle(nn.Module):
    """The ideal EDM network for a data set of one image x0: F such that D(x; sigma) = x0 exactly."""

    def __init__(self, x0, sigma_data):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the sampler a device to read
        self.x0, self.sigma_data = x0, sigma_data

    def forward(self, x_in, timesteps, class_labels):
        # invert edm.unet_timesteps: timesteps 0..999 <-> ln(sigma) in [ln SIGMA_MIN, ln SIGMA_MAX]
        lo, hi = math.log(edm.SIGMA_MIN), math.log(edm.SIGMA_MAX)
        sigma = torch.exp(lo + timesteps.double() / 999 * (hi - lo)).float().view(-1, 1, 1, 1)
        c_skip, c_out, c_in, _ = edm.preconditioning(sigma, self.sigma_data)
        x = x_in / c_in
        return (self.x0 - c_skip * x) / c_out


@pytest.mark.parametrize("steps", [1, 5, 18])
def test_heun_with_an_ideal_denoiser_returns_the_data(steps):
    """Checks the preconditioning, the timestep map and the solver together: an exact denoiser gives back x0."""
    model = tiny_model(recipe="edm")
    x0 = torch.linspace(-0.9, 0.9, 16 * 16).view(1, 1, 16, 16)
    model.unet = _EDMOracle(x0, model.sigma_data)
    model.use_ema = False
    out = model.generate(torch.tensor([0, 1]), torch.Generator().manual_seed(0), steps=steps, guidance_scale=2.0)
    torch.testing.assert_close(out, x0.expand(2, -1, -1, -1), atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def edm_black_white_model():
    """A tiny EDM model trained briefly (300 steps) on black vs white images."""
    torch.manual_seed(0)
    model = tiny_model(recipe="edm", lr=2e-3)
    optimizers = model.configure_optimizers()
    batch = black_white_batch()
    for step in range(300):
        model.training_step(batch, optimizers, step)
        model.update_ema(0.9)
    return model.eval()


def test_edm_conditioning_and_guidance_separate_two_classes(edm_black_white_model):
    labels = torch.tensor([0] * 4 + [1] * 4)
    # (at 18 Heun steps: with 4-6 steps, guidance 3 overshoots on this two-image toy)
    samples = {s: edm_black_white_model.generate(labels, torch.Generator().manual_seed(1), steps=18, guidance_scale=s)
               for s in (0.0, 1.0, 3.0)}
    for s in (1.0, 3.0):
        black, white = samples[s][:4].mean(), samples[s][4:].mean()
        assert white - black > 1.0, (s, float(black), float(white))
    assert (samples[0.0] - samples[3.0]).abs().max() > 0.05  # guidance changes the samples of the same noise


def test_edm_sampling_is_reproducible_and_uses_the_ema_network(edm_black_white_model):
    labels = torch.tensor([0, 1, 1])
    first = edm_black_white_model.generate(labels, torch.Generator().manual_seed(7), steps=4)
    assert torch.equal(first, edm_black_white_model.generate(labels, torch.Generator().manual_seed(7), steps=4))
    assert not torch.equal(first, edm_black_white_model.generate(labels, torch.Generator().manual_seed(8), steps=4))
    assert torch.isfinite(first).all() and first.min() >= -1 and first.max() <= 1
    edm_black_white_model.use_ema = False
    try:
        live = edm_black_white_model.generate(labels, torch.Generator().manual_seed(7), steps=4)
    finally:
        edm_black_white_model.use_ema = True
    assert not torch.equal(first, live)


def test_cli_trains_and_samples_the_edm_recipe(toy_data, tmp_path):
    """`medisynth train --hp recipe=edm`, then `medisynth sample --sampling-steps` (Heun steps) and `--guidance-scale`."""
    from typer.testing import CliRunner

    from medisynth.cli import app

    def cli(*args):
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, (result.output, result.exception)

    run = tmp_path / "run"
    cli("train", toy_data, "--model", "diffusion", "--out", run, "--steps", 2, "--batch-size", 4, "--device", "cpu",
        "--hp", "recipe=edm", "--hp", "num_channels=[8,16]", "--hp", "num_head_channels=8")
    assert json.loads((run / "model.json").read_text())["hyper"]["recipe"] == "edm"
    assert list((run / "samples").glob("*.png"))  # the final grid, sampled with the default Heun steps
    cli("sample", run, "--out", tmp_path / "synth", "--per-class", "1=3", "--sampling-steps", 3, "--guidance-scale", 1.5,
        "--device", "cpu")
    assert len(list((tmp_path / "synth" / "images").glob("*.png"))) == 3
    result = CliRunner().invoke(app, ["sample", str(run), "--out", str(tmp_path / "bad"), "--per-class", "1=1",
                                      "--sampling-steps", "0", "--device", "cpu"])
    # (in-process the app raises; the console script turns MedisynthError into one line and exit 2)
    assert isinstance(result.exception, MedisynthError) and "--sampling-steps 0" in str(result.exception)
