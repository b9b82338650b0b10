"""fastgan: shapes at every size and channel count, conditioning, SLE links, training step, generate/score."""
from __future__ import annotations

import pytest
import torch

from medisynth.errors import MedisynthError
from medisynth.models import DataSpec, build_model
from medisynth.models.fastgan import FastGAN, sle_pairs

from ._helpers import CLASSES, changed, snapshot, tiny_batch

TINY = {"width": 4, "latent_dim": 8, "embed_dim": 4}


@pytest.mark.parametrize("size", [32, 64, 128])
@pytest.mark.parametrize("channels", [1, 3])
def test_generate_and_score_shapes(size, channels):
    model = build_model("fastgan", DataSpec(size, channels, CLASSES), TINY)
    labels = torch.tensor([0, 1, 2, 1])
    images = model.generate(labels, torch.Generator().manual_seed(1))
    assert images.shape == (4, channels, size, size) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0
    scores = model.discriminator_score(images, labels)
    assert scores.shape == (4,) and bool(((scores > 0) & (scores < 1)).all())


def test_discriminator_score_is_the_sigmoid_of_the_hinge_logit():
    model = build_model("fastgan", DataSpec(32, 3, CLASSES), TINY).eval()
    images, labels = tiny_batch(DataSpec(32, 3, CLASSES))["image"], torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        logits = model.discriminator(images, labels)
    assert torch.allclose(model.discriminator_score(images, labels), torch.sigmoid(logits))


def test_the_label_changes_the_image_and_the_score():
    torch.manual_seed(0)
    model = build_model("fastgan", DataSpec(32, 3, CLASSES), TINY)
    # the class-conditional norms start as plain BatchNorm: give them a class signal, as training does
    with torch.no_grad():
        for name, p in model.generator.named_parameters():
            if "affine" in name:
                p.normal_(0, 0.5)
    model.setup_ema()  # refresh the EMA copy that generate() uses
    same_z = [model.generate(torch.tensor([c, c]), torch.Generator().manual_seed(3)) for c in range(3)]
    assert not torch.allclose(same_z[0], same_z[1]) and not torch.allclose(same_z[1], same_z[2])
    images = same_z[0]
    assert not torch.allclose(model.discriminator_score(images, torch.tensor([0, 0])),
                              model.discriminator_score(images, torch.tensor([1, 1])))


@pytest.mark.parametrize("size, links", [(32, {32: 4}), (64, {32: 4, 64: 8}), (128, {32: 4, 64: 8, 128: 16}),
                                         (256, {64: 4, 128: 8, 256: 16}), (1024, {64: 4, 128: 8, 256: 16, 512: 32})])
def test_skip_layer_excitation_links(size, links):
    assert sle_pairs(size) == links


def test_large_sizes_build():
    model = build_model("fastgan", DataSpec(1024, 3, CLASSES), {**TINY, "width": 1, "max_channels": 8})
    assert model.generate(torch.tensor([0]), torch.Generator().manual_seed(0)).shape == (1, 3, 1024, 1024)


@pytest.mark.parametrize("channels", [1, 3])
def test_training_step_logs_and_moves_both_networks(channels):
    spec = DataSpec(64, channels, CLASSES)
    torch.manual_seed(0)
    model = build_model("fastgan", spec, TINY)
    g_before, d_before = snapshot(model.generator), snapshot(model.discriminator)
    optimizers = model.configure_optimizers()
    logs = model.training_step(tiny_batch(spec), optimizers, 0)
    assert tuple(logs) == model.log_keys == ("Loss_D", "Loss_G", "D(x)", "D(G(z))", "recon", "ada_p")
    assert all(isinstance(v, float) and torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert logs["recon"] > 0 and 0 <= logs["D(x)"] <= 1
    assert changed(g_before, model.generator) and changed(d_before, model.discriminator)
    assert all(p.requires_grad for p in model.discriminator.parameters())
    # the decoders (the self-supervised part) belong to D's optimiser and learn
    decoder = [p for n, p in model.discriminator.named_parameters() if n.startswith("decode_")]
    assert decoder and all(p.grad is not None for p in decoder)


def test_reconstruction_loss_falls_when_training_on_one_batch():
    spec = DataSpec(32, 1, CLASSES)
    torch.manual_seed(0)
    model = build_model("fastgan", spec, {**TINY, "diffaugment": ""})
    optimizers = model.configure_optimizers()
    # smooth images (4x4 noise upsampled): learnable from 8x8 features, unlike pixel noise
    coarse = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    batch = {"image": torch.nn.functional.interpolate(coarse, size=32, mode="bilinear"), "label": torch.arange(8) % 3}
    recons = [model.training_step(batch, optimizers, s)["recon"] for s in range(15)]
    assert recons[-1] < 0.7 * recons[0]


def test_truncation_zero_gives_one_image_per_class():
    model = build_model("fastgan", DataSpec(32, 3, CLASSES), TINY)
    images = model.generate(torch.tensor([1, 1]), torch.Generator().manual_seed(0), truncation=0.0)
    assert torch.allclose(images[0], images[1])


@pytest.mark.parametrize("size", [16, 48, 2048])
def test_sizes_outside_32_to_1024_are_refused(size):
    with pytest.raises(MedisynthError, match="32, 64, 128, 256, 512, 1024"):
        build_model("fastgan", DataSpec(size, 3, CLASSES), TINY)


def test_labels_outside_the_classes_are_refused():
    model = build_model("fastgan", DataSpec(32, 3, CLASSES), TINY)
    with pytest.raises(MedisynthError, match="3 classes"):
        model.generate(torch.tensor([3]))


@pytest.mark.parametrize("term", ["mode_seeking", "class_loss"])
def test_a_loss_term_changes_the_generator_update(term):
    # the same step with the term's weight at 0 and at 1: the generator must end up elsewhere
    spec = DataSpec(32, 3, CLASSES)
    after = []
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = build_model("fastgan", spec, {**TINY, term: weight})
        logs = model.training_step(tiny_batch(spec, n=6), model.configure_optimizers(), 0)
        assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
        after.append(snapshot(model.generator))
    assert any(not torch.equal(after[0][k], after[1][k]) for k in after[0])
    if term == "class_loss":  # the auxiliary classifier learned from the real images' classes
        head = model.discriminator.classifier
        assert head.weight.shape[0] == len(CLASSES) and head.parametrizations.weight.original.grad is not None


@pytest.mark.parametrize("d_norm, norms", [("batch", True), ("none", False)])
def test_discriminator_normalisation_is_a_choice(d_norm, norms):
    model = build_model("fastgan", DataSpec(32, 3, CLASSES), {**TINY, "d_norm": d_norm})
    blocks = model.discriminator.blocks
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in blocks.modules()) is norms
    opts = model.configure_optimizers()
    logs = model.training_step(tiny_batch(DataSpec(32, 3, CLASSES)), opts, 0)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())


def test_unknown_discriminator_normalisation_is_refused():
    with pytest.raises(MedisynthError, match="d_norm"):
        build_model("fastgan", DataSpec(32, 3, CLASSES), {**TINY, "d_norm": "layer"})


def test_discriminator_learns_faster_than_the_generator_by_default():
    model = build_model("fastgan", DataSpec(32, 3, CLASSES), TINY)
    opts = model.configure_optimizers()
    assert opts["discriminator"].param_groups[0]["lr"] == 4 * opts["generator"].param_groups[0]["lr"]


def test_auxiliary_classifier_is_built_only_when_asked_for():
    spec = DataSpec(32, 3, CLASSES)
    assert build_model("fastgan", spec, TINY).discriminator.classifier is not None  # on by default
    plain = build_model("fastgan", spec, {**TINY, "class_loss": 0.0})
    assert plain.discriminator.classifier is None  # checkpoints of runs without it load as before
    assert not any(name.startswith("classifier") for name in plain.discriminator.state_dict())
    with pytest.raises(MedisynthError, match="class_loss"):
        build_model("fastgan", spec, {**TINY, "class_loss": -1.0})



@pytest.mark.parametrize("n, group", [(8, 4), (6, 3), (5, 1)])
def test_minibatch_std_is_the_spread_over_groups(n, group):
    from medisynth.models.fastgan import MinibatchStd

    varied = torch.randn(n, 3, 4, 4)
    out = MinibatchStd(4)(varied)
    assert out.shape == (n, 4, 4, 4) and torch.equal(out[:, :3], varied)
    spread = out[:, 3, 0, 0]
    expected = varied.reshape(n // group, group, 3, 4, 4).var(1, unbiased=False).add(1e-8).sqrt().mean((1, 2, 3))
    assert torch.allclose(spread, expected.repeat_interleave(group))  # consecutive images form a group
    same = MinibatchStd(4)(varied[:1].expand(n, 3, 4, 4))[:, 3]
    assert float(same.max()) < 1e-3  # near-identical images: no spread, which no real batch shows
    if group > 1:
        assert float(spread.min()) > 0.1


def test_minibatch_std_trains_and_is_refused_with_groups_of_one():
    spec = DataSpec(32, 3, CLASSES)
    model = build_model("fastgan", spec, {**TINY, "mbstd_group": 4})
    assert model.discriminator.minibatch_std is not None
    assert build_model("fastgan", spec, TINY).discriminator.minibatch_std is None  # off by default
    logs = model.training_step(tiny_batch(spec, n=8), model.configure_optimizers(), 0)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    for bad in (1, -2):
        with pytest.raises(MedisynthError, match="mbstd_group"):
            build_model("fastgan", spec, {**TINY, "mbstd_group": bad})


def test_mode_seeking_on_structure_changes_the_update_and_ignores_tones():
    from medisynth.models.layers import standardise_channels

    picture = torch.rand(1, 3, 8, 8) * 2 - 1
    tones = torch.cat([picture * 0.5 + 0.2, picture * 0.9 - 0.1])
    assert (tones[0] - tones[1]).abs().mean() > 0.1
    same = standardise_channels(tones, 0.04)
    assert (same[0] - same[1]).abs().mean() < 0.1  # one picture, two tones
    spec = DataSpec(32, 3, CLASSES)
    after = []
    for on in ("pixels", "structure"):
        torch.manual_seed(0)
        model = build_model("fastgan", spec, {**TINY, "mode_seeking": 1.0, "mode_seeking_on": on})
        logs = model.training_step(tiny_batch(spec, n=6), model.configure_optimizers(), 0)
        assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
        after.append(snapshot(model.generator))
    assert any(not torch.equal(after[0][k], after[1][k]) for k in after[0])
    with pytest.raises(MedisynthError, match="mode_seeking_on"):
        build_model("fastgan", spec, {**TINY, "mode_seeking_on": "features"})


@pytest.mark.parametrize("ramp, step, weight", [((0, 0), 0, 1.0), ((0, 0), 10**6, 1.0), ((10, 20), 0, 0.0),
                                                ((10, 20), 10, 0.0), ((10, 20), 15, 0.5), ((10, 20), 20, 1.0),
                                                ((10, 20), 99, 1.0), ((0, 4), 1, 0.25)])
def test_condition_weight_ramps_from_start_to_end(ramp, step, weight):
    from medisynth.models.fastgan import condition_weight

    assert condition_weight(step, ramp) == pytest.approx(weight)


def test_before_the_ramp_the_class_reaches_neither_the_image_nor_the_class_terms():
    # transitional training (Shahbazi et al. 2022) starts as an unconditional GAN
    spec = DataSpec(32, 3, CLASSES)
    torch.manual_seed(0)
    model = build_model("fastgan", spec, {**TINY, "condition_ramp": [5, 10]})
    logs = model.training_step(tiny_batch(spec, n=6), model.configure_optimizers(), 0)
    assert logs["condition"] == 0.0 and all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert float(model.generator.condition_weight) == 0.0
    model.generator.embed.weight.data.normal_()  # even a learned embedding changes nothing at weight 0
    z = torch.randn(1, TINY["latent_dim"]).repeat(3, 1)
    with torch.no_grad():
        model.generator.eval()
        images = model.generator(z, torch.arange(3))
    assert torch.equal(images[0], images[1]) and torch.equal(images[1], images[2])
    projection = model.discriminator.class_embed.parametrizations.weight.original
    assert projection.grad is None or not projection.grad.any()  # the class term was not trained
    model.generator.train()
    logs = model.training_step(tiny_batch(spec, n=6), model.configure_optimizers(), 7)
    assert logs["condition"] == pytest.approx(0.4) and float(model.generator.condition_weight) == pytest.approx(0.4)
    assert projection.grad is not None and projection.grad.any()


def test_without_a_ramp_there_is_no_condition_weight():
    model = build_model("fastgan", DataSpec(32, 3, CLASSES), TINY)
    assert not hasattr(model.generator, "condition_weight")
    spec = DataSpec(32, 3, CLASSES)
    assert "condition" not in model.training_step(tiny_batch(spec, n=6), model.configure_optimizers(), 0)


@pytest.mark.parametrize("bad", [[5, 5], [10, 2], [-1, 3], [1, 2, 3], [0.5, 2]])
def test_a_ramp_that_does_not_rise_is_refused(bad):
    with pytest.raises(MedisynthError, match="condition_ramp"):
        build_model("fastgan", DataSpec(32, 3, CLASSES), {**TINY, "condition_ramp": bad})


@pytest.mark.parametrize("class_from, blind_blocks", [(4, 0), (8, 0), (16, 1), (32, 2), (-1, 2), (-2, 1), (-4, 0)])
def test_layers_below_class_from_do_not_see_the_class(class_from, blind_blocks):
    model = build_model("fastgan", DataSpec(32, 3, CLASSES), {**TINY, "class_from": class_from})
    with torch.no_grad():  # a class signal in every conditional norm and in the input embedding, as training gives
        for name, p in model.generator.named_parameters():
            if "affine" in name or "embed" in name:
                p.normal_(0, 0.5)
    generator = model.generator.eval()
    outputs: list[torch.Tensor] = []
    hooks = [block.register_forward_hook(lambda module, args, out: outputs.append(out)) for block in generator.blocks]
    z = torch.randn(1, TINY["latent_dim"]).repeat(2, 1)
    with torch.no_grad():
        images = generator(z, torch.tensor([0, 2]))
    for hook in hooks:
        hook.remove()
    # blocks 8, 16, 32 px: the first blind_blocks give both classes the same features, the later ones do not
    # (at class_from 4 the input embedding differs, so even the 8 px block does)
    for index, features in enumerate(outputs):
        assert torch.equal(features[0], features[1]) == (index < blind_blocks)
    assert not torch.equal(images[0], images[1])


@pytest.mark.parametrize("bad", [2, 12, 64, 0, -5, None])
def test_class_from_must_be_a_resolution_of_the_generator(bad):
    with pytest.raises(MedisynthError, match="class_from"):
        build_model("fastgan", DataSpec(32, 3, CLASSES), {**TINY, "class_from": bad})


@pytest.mark.parametrize("size", [32, 64, 256])
def test_by_default_the_class_reaches_the_last_resolution_only(size):
    model = build_model("fastgan", DataSpec(size, 3, CLASSES), {**TINY, "width": 1, "max_channels": 8})
    assert model.generator.class_from == size


def test_a_run_saved_before_class_from_keeps_every_layer_conditional():
    hyper = FastGAN.saved_hyper({**TINY})  # a model.json written before the field existed
    assert build_model("fastgan", DataSpec(64, 3, CLASSES), hyper).generator.class_from == 4


def test_a_run_saved_with_session_17s_default_keeps_the_last_two_resolutions():
    hyper = FastGAN.saved_hyper({**TINY, "class_from": None})  # its model.json says null: half the image size
    assert build_model("fastgan", DataSpec(64, 3, CLASSES), hyper).generator.class_from == 32


# -- per-pixel noise (--hp noise=true) ------------------------------------------------------
NOISY = {**TINY, "noise": True}


def set_noise_weights(model, value: float) -> None:
    with torch.no_grad():
        for name, p in model.generator.named_parameters():
            if ".noise." in name:
                p.fill_(value)
    model.setup_ema()


@pytest.mark.parametrize("size, maps", [(32, [8, 8, 32, 32]), (64, [8, 8, 32, 32]), (128, [8, 8, 32, 32, 128, 128])])
def test_noise_maps_one_per_conv_of_the_two_conv_blocks(size, maps):
    model = build_model("fastgan", DataSpec(size, 3, CLASSES), {**NOISY, "width": 1, "max_channels": 8})
    drawn = model.generator.draw_noise(2, torch.device("cpu"))
    assert [tuple(m.shape) for m in drawn] == [(2, 1, r, r) for r in maps]
    assert build_model("fastgan", DataSpec(size, 3, CLASSES), {**TINY, "width": 1, "max_channels": 8}) \
        .generator.draw_noise(2, torch.device("cpu")) == []


def test_noise_starts_silent_and_once_weighted_changes_the_image():
    torch.manual_seed(0)
    model = build_model("fastgan", DataSpec(32, 3, CLASSES), NOISY)
    net, z, labels = model.generator.eval(), torch.randn(2, 8), torch.tensor([0, 1])
    a, b = (net(z, labels, *net.draw_noise(2, z.device, torch.Generator().manual_seed(s))) for s in (1, 2))
    assert torch.equal(a, b)  # every noise weight starts at 0: a new run starts as the noiseless generator
    set_noise_weights(model, 0.5)
    a, b = (net(z, labels, *net.draw_noise(2, z.device, torch.Generator().manual_seed(s))) for s in (1, 2))
    assert not torch.allclose(a, b)


def test_noisy_samples_come_from_the_sampling_seed_alone():
    model = build_model("fastgan", DataSpec(32, 3, CLASSES), NOISY)
    set_noise_weights(model, 0.5)
    labels = torch.tensor([0, 1, 2])
    rng = torch.get_rng_state()
    first, again, other = (model.generate(labels, torch.Generator().manual_seed(s)) for s in (7, 7, 8))
    assert torch.equal(first, again) and not torch.allclose(first, other)
    assert torch.equal(torch.get_rng_state(), rng)  # drawn from the sampling RNG, not torch's global one
    model.refresh_ema_statistics(labels, seed=3)  # the EMA's BatchNorm statistics: noise from their own RNG too
    assert torch.equal(torch.get_rng_state(), rng)


def test_a_training_step_learns_the_noise_weights():
    torch.manual_seed(0)
    model = build_model("fastgan", DataSpec(32, 3, CLASSES), NOISY)
    model.training_step(tiny_batch(DataSpec(32, 3, CLASSES)), model.configure_optimizers(), 0)
    weights = [float(p.detach()) for name, p in model.generator.named_parameters() if ".noise." in name]
    assert len(weights) == 4 and all(w != 0 for w in weights)


# -- the generator's upsampling (--hp upsample=bilinear) --------------------------------------
def test_bilinear_upsampling_builds_trains_and_changes_the_image():
    spec = DataSpec(32, 3, CLASSES)
    images = {}
    for mode in ("nearest", "bilinear"):
        torch.manual_seed(0)
        model = build_model("fastgan", spec, {**TINY, "upsample": mode})
        model.training_step(tiny_batch(spec), model.configure_optimizers(), 0)
        images[mode] = model.generate(torch.tensor([0, 1]), torch.Generator().manual_seed(1))
    assert images["bilinear"].shape == (2, 3, 32, 32)
    assert not torch.allclose(images["nearest"], images["bilinear"])  # same weights at init, other upsampling


def test_an_unknown_upsampling_is_refused():
    with pytest.raises(MedisynthError, match="upsample='bicubic'; choose nearest or bilinear"):
        build_model("fastgan", DataSpec(32, 3, CLASSES), {**TINY, "upsample": "bicubic"})


# -- the discriminator's anti-aliased downsampling (--hp d_blur=true) --------------------------
def test_blur_keeps_constants_and_removes_the_finest_checkerboard():
    from medisynth.models.fastgan import Blur

    flat = torch.full((1, 2, 8, 8), 0.7)
    assert torch.allclose(Blur()(flat)[..., 1:-1, 1:-1], flat[..., 1:-1, 1:-1])  # away from the zero padding
    rows, cols = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    checkerboard = ((rows + cols) % 2 * 2 - 1).float()[None, None]  # period 2 px: the Nyquist pattern
    assert float(Blur()(checkerboard)[..., 1:-1, 1:-1].abs().max()) < 1e-6


@pytest.mark.parametrize("size", [32, 64])
def test_blurred_discriminator_trains_and_loads_the_checkpoints_of_a_plain_one(size):
    spec = DataSpec(size, 3, CLASSES)
    torch.manual_seed(0)
    plain = build_model("fastgan", spec, TINY)
    blurred = build_model("fastgan", spec, {**TINY, "d_blur": True})
    assert plain.discriminator.state_dict().keys() == blurred.discriminator.state_dict().keys()  # no new state
    blurred.discriminator.load_state_dict(plain.discriminator.state_dict())
    images, labels = tiny_batch(spec)["image"], torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        assert not torch.allclose(plain.discriminator.eval()(images, labels), blurred.discriminator.eval()(images, labels))
    logs = blurred.training_step(tiny_batch(spec), blurred.configure_optimizers(), 0)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    assert sum(isinstance(m, torch.nn.Identity) for m in plain.discriminator.modules()) == len(plain.discriminator.blocks) + 1


# -- the fewest channels at any resolution (--hp min_channels=N) -------------------------------
def test_min_channels_widens_only_the_fine_layers_of_both_networks():
    from medisynth.models.fastgan import channels_at

    assert [channels_at(r, 8, 512, 32) for r in (4, 8, 16, 32, 64)] == [128, 64, 32, 32, 32]
    assert [channels_at(r, 8, 512) for r in (4, 8, 16, 32, 64)] == [128, 64, 32, 16, 16]
    spec = DataSpec(64, 3, CLASSES)
    plain = build_model("fastgan", spec, {**TINY, "width": 8})
    fine = build_model("fastgan", spec, {**TINY, "width": 8, "min_channels": 32})
    assert fine.discriminator.from_image[0].weight.shape[0] == 32 > plain.discriminator.from_image[0].weight.shape[0]
    assert fine.generator.to_image.weight.shape[1] == 32 > plain.generator.to_image.weight.shape[1]
    logs = fine.training_step(tiny_batch(spec), fine.configure_optimizers(), 0)
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values())
    with pytest.raises(MedisynthError, match="min_channels=1024 is above max_channels=512"):
        build_model("fastgan", spec, {**TINY, "min_channels": 1024})
    with pytest.raises(MedisynthError, match="min_channels must be positive"):
        build_model("fastgan", spec, {**TINY, "min_channels": 0})


# -- the LeCam regulariser (--hp lecam=W) ------------------------------------------------------
def test_lecam_anchors_move_one_hundredth_of_the_way_then_penalise_logits_past_them():
    from medisynth.models.fastgan import LeCamAnchors

    anchors = LeCamAnchors()
    real, fake = torch.tensor([3.0, 1.0]), torch.tensor([-1.0, -3.0])
    penalty = anchors.penalty(real, fake)
    assert float(anchors.real) == pytest.approx(0.02) and float(anchors.fake) == pytest.approx(-0.02)
    # relu(D(real) - anchor_fake)^2 and relu(anchor_real - D(fake))^2, each averaged over the batch
    expected = ((3.02**2 + 1.02**2) + (1.02**2 + 3.02**2)) / 2
    assert float(penalty) == pytest.approx(expected)
    # logits already inside the anchors (real below the fake anchor, fake above the real one) cost nothing
    anchors.real.fill_(1.0)
    anchors.fake.fill_(2.0)
    assert float(anchors.penalty(torch.tensor([1.0]), torch.tensor([1.5]))) == 0.0


def test_lecam_is_built_only_when_asked_for_and_changes_the_discriminator_update():
    spec = DataSpec(32, 3, CLASSES)
    plain = build_model("fastgan", spec, TINY)
    assert plain.lecam_anchors is None  # runs trained without it keep their checkpoints' keys
    assert not any("lecam" in key for key in plain.state_dict())
    after = []
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = build_model("fastgan", spec, {**TINY, "lecam": weight})
        logs = model.training_step(tiny_batch(spec, n=6), model.configure_optimizers(), 0)
        assert ("lecam" in logs) is (weight > 0)
        after.append(snapshot(model.discriminator))
    assert logs["lecam"] > 0 and set(model.state_dict()) >= {"lecam_anchors.real", "lecam_anchors.fake"}
    assert float(model.lecam_anchors.real) != 0 and float(model.lecam_anchors.fake) != 0
    assert any(not torch.equal(after[0][k], after[1][k]) for k in after[0])
    with pytest.raises(MedisynthError, match="lecam must be >= 0, 0 for off"):
        build_model("fastgan", spec, {**TINY, "lecam": -0.1})


# -- the local adversarial output (--hp local_weight=W) -----------------------------------------
@pytest.mark.parametrize("size", [32, 64])
def test_local_logits_are_one_per_position_of_the_16x16_features_and_built_only_when_asked_for(size):
    spec = DataSpec(size, 3, CLASSES)
    plain = build_model("fastgan", spec, TINY)
    assert plain.discriminator.local_logit is None  # runs trained without it keep their checkpoints' keys
    assert not any("local_logit" in key for key in plain.state_dict())
    assert plain.discriminator.judge(torch.zeros(2, 3, size, size), torch.tensor([0, 1])).local is None
    local = build_model("fastgan", spec, {**TINY, "local_weight": 1.0})
    judgement = local.discriminator.judge(torch.zeros(2, 3, size, size), torch.tensor([0, 1]))
    assert judgement.local.shape == (2, 16 * 16)


@pytest.mark.parametrize("network", ["discriminator", "generator"])
def test_local_logits_enter_each_network_s_loss_and_refuse_a_negative_weight(network):
    spec = DataSpec(32, 3, CLASSES)
    # the other network's learning rate at 0: D steps first, so its update sees only its own loss; with D frozen,
    # G's update differs only where G's own loss takes the local logits
    other = {"discriminator": "generator", "generator": "discriminator"}[network]
    after = []
    plain = build_model("fastgan", spec, TINY)
    for weight in (0.0, 1.0):
        model = build_model("fastgan", spec, {**TINY, "local_weight": weight})
        model.load_state_dict(plain.state_dict(), strict=False)  # the same weights but the local head's
        torch.manual_seed(0)  # and the same draws (z, augmentation) in the step
        optimizers = model.configure_optimizers()
        for group in optimizers[other].param_groups:
            group["lr"] = 0.0
        model.training_step(tiny_batch(spec, n=6), optimizers, 0)
        after.append(snapshot(getattr(model, network)))
    shared = [k for k in after[0] if k in after[1]]
    assert any(not torch.equal(after[0][k], after[1][k]) for k in shared)
    with pytest.raises(MedisynthError, match="local_weight must be >= 0"):
        build_model("fastgan", spec, {**TINY, "local_weight": -1.0})
