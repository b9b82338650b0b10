"""vae, conv-vae, conv-cvae, resvae: shapes, training steps, sizes, labels, truncation, loss."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medisynth.errors import MedisynthError
from medisynth.models import DataSpec, build_model, get_model_class

from ._helpers import CLASSES, changed, snapshot, tiny_batch, train_steps

VAES = {
    "vae": {"hidden": 32, "latent_dim": 8},
    "conv-vae": {"width": 8, "latent_dim": 8},
    "conv-cvae": {"width": 8, "latent_dim": 8},
    "resvae": {"width": 8, "latent_dim": 8, "blocks": 1},
}


@pytest.mark.parametrize("name", VAES)
@pytest.mark.parametrize("channels", [1, 3])
def test_generate_shape_and_range(name, channels):
    model = build_model(name, DataSpec(32, channels, CLASSES), VAES[name])
    images = model.generate(torch.tensor([0, 1, 2]), torch.Generator().manual_seed(0))
    assert images.shape == (3, channels, 32, 32)
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0


@pytest.mark.parametrize("name", VAES)
@pytest.mark.parametrize("channels", [1, 3])
def test_training_steps_give_finite_logs_and_change_parameters(name, channels):
    spec = DataSpec(32, channels, CLASSES)
    torch.manual_seed(0)
    model = build_model(name, spec, VAES[name])
    before = snapshot(model)
    optimizers = model.configure_optimizers()
    logs = [model.training_step(tiny_batch(spec, seed=s), optimizers, s) for s in range(2)]
    assert all(tuple(l) == ("loss", "recon", "kl") for l in logs)
    assert all(torch.isfinite(torch.tensor(list(l.values()))).all() for l in logs)
    assert all(abs(l["loss"] - (l["recon"] + l["kl"])) < 1e-3 * abs(l["loss"]) for l in logs)
    assert changed(before, model)


def test_vae_loss_is_bce_on_unit_pixels_plus_kl():
    """With a decoder that ignores z and an encoder giving mu=0, logvar=0, KL is 0 and recon is plain BCE."""
    spec = DataSpec(8, 1, CLASSES)
    model = build_model("vae", spec, {"hidden": 4, "latent_dim": 2})
    logits = torch.randn(1, 1, 8, 8)
    model.encode = lambda x, labels: (torch.zeros(x.shape[0], 2), torch.zeros(x.shape[0], 2))
    model.decode = lambda z, labels: logits.expand(z.shape[0], -1, -1, -1)
    images = torch.rand(3, 1, 8, 8) * 2 - 1
    loss, recon, kl = model.losses(images, torch.zeros(3, dtype=torch.long))
    expected = F.binary_cross_entropy(torch.sigmoid(logits).expand(3, -1, -1, -1), (images + 1) / 2, reduction="sum") / 3
    assert torch.allclose(recon, expected, rtol=1e-4) and kl.abs() < 1e-6 and torch.allclose(loss, recon)


def test_kl_of_a_known_posterior():
    spec = DataSpec(8, 1, CLASSES)
    model = build_model("vae", spec, {"hidden": 4, "latent_dim": 2, "kl_weight": 0.5})
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    model.encode = lambda x, labels: (mu, logvar)
    _, _, kl = model.losses(torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long))
    # KL(N(mu, e^logvar) || N(0, 1)) = 0.5 * sum(mu^2 + e^logvar - 1 - logvar)
    expected = 0.5 * (1.0 + (torch.e**2 - 1 - 2))
    assert abs(kl.item() - expected) < 1e-4


@pytest.mark.parametrize("name,size", [("conv-vae", 16), ("conv-vae", 48), ("conv-cvae", 512), ("resvae", 1024), ("resvae", 96)])
def test_check_spec_rejects_sizes(name, size):
    with pytest.raises(MedisynthError, match="px"):
        build_model(name, DataSpec(size, 3, CLASSES), VAES[name])


def test_fc_vae_rejects_large_images_and_points_to_conv_models():
    with pytest.raises(MedisynthError, match="conv-vae or resvae"):
        build_model("vae", DataSpec(256, 3, CLASSES))


@pytest.mark.parametrize("name", VAES)
def test_truncation_scales_the_latent(name):
    model = build_model(name, DataSpec(32, 1, CLASSES), VAES[name])
    labels = torch.zeros(2, dtype=torch.long)
    collapsed = model.generate(labels, torch.Generator().manual_seed(0), truncation=0.0)
    varied = model.generate(labels, torch.Generator().manual_seed(0), truncation=1.0)
    assert torch.allclose(collapsed[0], collapsed[1]) and not torch.allclose(varied[0], varied[1])


def test_conditional_flags():
    assert get_model_class("conv-cvae").conditional and not get_model_class("conv-vae").conditional
    assert all(get_model_class(n).supports_truncation for n in VAES)


def test_conv_cvae_generate_respects_labels():
    model = build_model("conv-cvae", DataSpec(32, 3, CLASSES), VAES["conv-cvae"])
    outs = [model.generate(torch.tensor([k]), torch.Generator().manual_seed(0)) for k in range(3)]
    assert not torch.allclose(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])
    with pytest.raises(MedisynthError, match="3 classes"):
        model.generate(torch.tensor([7]))


@pytest.mark.parametrize("size", [64, 128])
def test_resvae_on_one_channel_vessel_masks(size):
    spec = DataSpec(size, 1, ["vessels"])
    model = build_model("resvae", spec, {"width": 4, "max_channels": 16, "latent_dim": 8, "blocks": 1})
    optimizers = model.configure_optimizers()
    masks = (torch.rand(2, 1, size, size) > 0.8).float() * 2 - 1  # binary maps in {-1, 1}
    logs = model.training_step({"image": masks, "label": torch.zeros(2, dtype=torch.long)}, optimizers, 0)
    assert torch.isfinite(torch.tensor(list(logs.values()))).all()
    assert model.generate(torch.zeros(2, dtype=torch.long)).shape == (2, 1, size, size)


def test_resvae_is_deeper_with_more_blocks():
    spec = DataSpec(32, 1, CLASSES)
    shallow = build_model("resvae", spec, {"width": 8, "blocks": 1})
    deep = build_model("resvae", spec, {"width": 8, "blocks": 3})
    count = lambda m: sum(type(x).__name__ == "ResBlock" for x in m.modules())  # noqa: E731
    assert count(deep) == 3 * count(shallow) > 0


def test_mse_reconstruction_option_and_bad_option():
    _, logs = train_steps("resvae", DataSpec(32, 1, CLASSES), {**VAES["resvae"], "recon": "mse"}, steps=1)
    assert torch.isfinite(torch.tensor(logs[0]["recon"]))
    with pytest.raises(MedisynthError, match="recon=.l1.; choose bce or mse"):
        build_model("resvae", DataSpec(32, 1, CLASSES), {"recon": "l1"})


@pytest.mark.parametrize("name", VAES)
def test_training_step_runs_under_bf16_autocast(name):
    spec = DataSpec(32, 3, CLASSES)
    model = build_model(name, spec, VAES[name])
    optimizers = model.configure_optimizers()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logs = model.training_step(tiny_batch(spec), optimizers, 0)
    assert torch.isfinite(torch.tensor(list(logs.values()))).all()
