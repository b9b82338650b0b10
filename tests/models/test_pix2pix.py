"""pix2pix: U-Net and PatchGAN shapes, a short training, paired augmentation, translate, bad input."""
from __future__ import annotations

import pytest
import torch

from medisynth.errors import MedisynthError
from medisynth.models import DataSpec, build_model
from medisynth.models.pix2pix import PatchDiscriminator, UNetGenerator, paired_augment

TINY = {"ngf": 8, "ndf": 8}


def pair_batch(size: int, channels: int = 3, n: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = (torch.rand(n, 1, size, size, generator=g) > 0.8).float()
    # the target depends on the mask, so the generator has something to learn
    image = (mask.repeat(1, channels, 1, 1) * 1.5 - 0.75) + 0.1 * torch.randn(n, channels, size, size, generator=g)
    return {"image": image.clamp(-1, 1), "mask": mask, "label": torch.zeros(n, dtype=torch.long)}


@pytest.mark.parametrize("size,depth", [(32, 5), (64, 6), (128, 7), (256, 8)])
def test_unet_shapes_and_depth(size, depth):
    net = UNetGenerator(1, 3, size, ngf=4)
    out = net(torch.zeros(1, 1, size, size))
    assert net.depth == depth
    assert out.shape == (1, 3, size, size)
    assert out.min() >= -1 and out.max() <= 1


def test_unet_depth_is_capped_for_large_images():
    assert UNetGenerator(1, 3, 1024, ngf=2, max_depth=8).depth == 8


def test_unet_outermost_skip_keeps_pixel_detail():
    """A one-pixel change in the mask changes the output right there (the skip connections at work)."""
    torch.manual_seed(0)
    net = UNetGenerator(1, 1, 32, ngf=4, dropout=0.0).eval()
    x = torch.zeros(1, 1, 32, 32)
    y = x.clone()
    y[0, 0, 5, 7] = 1.0
    diff = (net(x) - net(y)).abs()[0, 0]
    assert diff[4:7, 6:9].max() > 1e-4


@pytest.mark.parametrize("size,patches", [(32, 2), (64, 6), (256, 30)])
def test_patchgan_output_grid(size, patches):
    """The 70x70 PatchGAN gives a 30x30 grid of logits at 256 px, as in Isola et al."""
    d = PatchDiscriminator(1 + 3, ndf=4)
    assert d(torch.zeros(2, 4, size, size)).shape == (2, 1, patches, patches)


@pytest.mark.parametrize("channels", [1, 3])
def test_short_training_changes_both_networks_with_finite_losses(channels):
    torch.manual_seed(0)
    model = build_model("pix2pix", DataSpec(32, channels), TINY).train()
    optimizers = model.configure_optimizers()
    g0 = [p.detach().clone() for p in model.generator.parameters()]
    d0 = [p.detach().clone() for p in model.discriminator.parameters()]
    logs = [model.training_step(pair_batch(32, channels, seed=s), optimizers, s) for s in range(3)]
    assert set(logs[0]) == set(model.log_keys) == {"Loss_D", "Loss_G", "L1"}
    assert all(torch.isfinite(torch.tensor(v)) for log in logs for v in log.values())
    assert any(not torch.equal(a, b) for a, b in zip(g0, model.generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, model.discriminator.parameters()))
    assert all(p.requires_grad for p in model.discriminator.parameters())  # D is unfrozen after the G step


def test_l1_falls_when_fitting_one_pair():
    torch.manual_seed(0)
    model = build_model("pix2pix", DataSpec(32, 1), {**TINY, "augment": False, "lr": 1e-3}).train()
    optimizers = model.configure_optimizers()
    batch = pair_batch(32, 1, n=1)
    first = model.training_step(batch, optimizers, 0)["L1"]
    for s in range(1, 25):
        last = model.training_step(batch, optimizers, s)["L1"]
    assert last < 0.6 * first


@pytest.mark.parametrize("gan_mode", ["vanilla", "lsgan"])
def test_gan_modes(gan_mode):
    model = build_model("pix2pix", DataSpec(32, 3), {**TINY, "gan_mode": gan_mode})
    log = model.training_step(pair_batch(32), model.configure_optimizers(), 0)
    assert log["Loss_D"] > 0


def test_paired_augment_keeps_image_and_mask_aligned():
    """Image = colour-coded copy of the mask; after augmentation it must still be a copy of the mask."""
    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(16, 1, 8, 8, generator=g) > 0.5).float()
    image = torch.cat([mask * 2 - 1, -(mask * 2 - 1), mask], dim=1)
    aug_image, aug_mask = paired_augment(image, mask, torch.Generator().manual_seed(3))
    assert torch.equal(aug_image[:, :1], aug_mask * 2 - 1)
    assert torch.equal(aug_image[:, 2:], aug_mask)
    assert not torch.equal(aug_mask, mask)  # something did move
    # every output is one of the 8 dihedral transforms of its input
    for m0, m1 in zip(mask[:, 0], aug_mask[:, 0]):
        variants = [torch.rot90(m, k, (0, 1)) for m in (m0, m0.flip(-1)) for k in range(4)]
        assert any(torch.equal(v, m1) for v in variants)


def test_paired_augment_is_reproducible_and_checks_sizes():
    image, mask = torch.randn(4, 3, 8, 8), torch.rand(4, 1, 8, 8)
    a = paired_augment(image, mask, torch.Generator().manual_seed(0))
    b = paired_augment(image, mask, torch.Generator().manual_seed(0))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(MedisynthError, match="differ"):
        paired_augment(image, torch.rand(4, 1, 16, 16))


def test_translate_shape_range_and_ema():
    model = build_model("pix2pix", DataSpec(64, 3), TINY)
    out = model.translate(torch.rand(3, 1, 64, 64).round(), batch_size=2)
    assert out.shape == (3, 3, 64, 64)
    assert out.min() >= -1 and out.max() <= 1
    assert hasattr(model, "ema_generator") and model.sampling_network("generator") is model.ema_generator


def test_translate_rejects_wrong_mask_shape():
    model = build_model("pix2pix", DataSpec(32, 3), TINY)
    with pytest.raises(MedisynthError, match="N x 1 x 32 x 32"):
        model.translate(torch.rand(1, 3, 32, 32))
    with pytest.raises(MedisynthError, match="N x 1 x 32 x 32"):
        model.translate(torch.rand(1, 1, 64, 64))


def test_generate_points_to_the_pipeline():
    model = build_model("pix2pix", DataSpec(32, 3), TINY)
    with pytest.raises(MedisynthError, match="medisynth pipeline vessels"):
        model.generate(torch.zeros(1, dtype=torch.long))


def test_training_without_masks_is_a_clear_error():
    model = build_model("pix2pix", DataSpec(32, 3), TINY)
    with pytest.raises(MedisynthError, match="masks"):
        model.training_step({"image": torch.zeros(1, 3, 32, 32)}, model.configure_optimizers(), 0)


@pytest.mark.parametrize("size", [16, 48, 2048])
def test_sizes_outside_the_unet_range_are_refused(size):
    with pytest.raises(MedisynthError, match="power-of-two"):
        build_model("pix2pix", DataSpec(size, 3))


def test_unknown_gan_mode_is_refused():
    with pytest.raises(MedisynthError, match="gan_mode"):
        build_model("pix2pix", DataSpec(32, 3), {"gan_mode": "wgan"})
