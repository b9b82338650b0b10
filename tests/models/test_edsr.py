"""edsr: x2/x4 shapes, architecture details, a short training, upscale, evaluate_sr, bad input."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medisynth.errors import MedisynthError
from medisynth.models import DataSpec, build_model
from medisynth.models.edsr import bicubic_downsample, evaluate_sr

TINY = {"n_resblocks": 2, "n_feats": 8, "patch_size": 16}


def smooth_images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Low-frequency images (sums of a few sinusoids): bicubic does well on them, so learning must beat a strong baseline."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = torch.zeros(n, channels, size, size)
    for i in range(n):
        for c in range(channels):
            fx, fy, phase = (torch.rand(3, generator=g) * torch.tensor([6.0, 6.0, 6.28])).tolist()
            out[i, c] = 0.8 * torch.sin(2 * math.pi * (fx * xx + fy * yy) + phase)
    return out


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("channels", [1, 3])
def test_upscale_shapes(scale, channels):
    model = build_model("edsr", DataSpec(32, channels), {**TINY, "scale": scale})
    out = model.upscale(torch.zeros(2, channels, 12, 10))
    assert out.shape == (2, channels, 12 * scale, 10 * scale)
    assert out.min() >= -1 and out.max() <= 1


def test_architecture_has_no_batch_norm_and_uses_pixel_shuffle():
    model = build_model("edsr", DataSpec(32, 3), {"n_resblocks": 3, "n_feats": 8, "scale": 4})
    kinds = [type(m) for m in model.modules()]
    assert not any(issubclass(k, nn.modules.batchnorm._BatchNorm) for k in kinds)
    assert kinds.count(nn.PixelShuffle) == 2  # two x2 stages for x4
    assert all(b.res_scale == 0.1 for b in model.generator.body if hasattr(b, "res_scale"))


def test_short_training_changes_weights_and_loss_is_finite():
    torch.manual_seed(0)
    model = build_model("edsr", DataSpec(32, 3), TINY).train()
    optimizers = model.configure_optimizers()
    before = [p.detach().clone() for p in model.parameters()]
    logs = [model.training_step({"image": smooth_images(2, 3, 32, s)}, optimizers, s) for s in range(3)]
    assert all(math.isfinite(log["L1"]) for log in logs)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_training_crops_patches_of_the_configured_size():
    model = build_model("edsr", DataSpec(64, 1), {**TINY, "patch_size": 24})
    seen = []
    original = model.generator.forward
    model.generator.forward = lambda x: (seen.append(tuple(x.shape)), original(x))[1]
    model.training_step({"image": smooth_images(2, 1, 64)}, model.configure_optimizers(), 0)
    assert seen == [(2, 1, 12, 12)]  # 24 px HR patches, bicubic-downsampled by 2


def test_learning_beats_an_untrained_network_and_evaluate_sr_reports_all_figures():
    torch.manual_seed(0)
    model = build_model("edsr", DataSpec(32, 1), {**TINY, "lr": 1e-3, "augment": False})
    held_out = smooth_images(4, 1, 32, seed=99)
    before = evaluate_sr(model, held_out)
    optimizers = model.configure_optimizers()
    for s in range(60):
        model.training_step({"image": smooth_images(4, 1, 32, seed=s)}, optimizers, s)
    after = evaluate_sr(model, held_out)
    assert set(after) == {"psnr_edsr", "psnr_bicubic", "ssim_edsr", "ssim_bicubic"}
    assert after["psnr_bicubic"] == pytest.approx(before["psnr_bicubic"])  # the baseline does not move
    assert after["psnr_edsr"] > before["psnr_edsr"] + 3


def test_bicubic_downsample_halves_the_size():
    assert bicubic_downsample(torch.zeros(1, 3, 32, 30), 2).shape == (1, 3, 16, 15)
    x = torch.full((1, 1, 16, 16), 0.5)
    assert torch.allclose(bicubic_downsample(x, 2), torch.full((1, 1, 8, 8), 0.5), atol=1e-5)


def test_upscale_rejects_other_channel_counts():
    model = build_model("edsr", DataSpec(32, 3), TINY)
    with pytest.raises(MedisynthError, match="3-channel"):
        model.upscale(torch.zeros(1, 1, 8, 8))


def test_generate_points_to_the_pipeline():
    model = build_model("edsr", DataSpec(32, 3), TINY)
    with pytest.raises(MedisynthError, match="--sr-run"):
        model.generate(torch.zeros(1, dtype=torch.long))


@pytest.mark.parametrize("scale", [3, 8])
def test_unsupported_scales_are_refused(scale):
    with pytest.raises(MedisynthError, match="scale must be 2 or 4"):
        build_model("edsr", DataSpec(32, 3), {"scale": scale})
