"""The diversity monitor: pairwise diversity, the collapse warning, and its place in metrics.jsonl."""
from __future__ import annotations

import json

import pytest

import torch
from torch import nn

from medisynth.training.monitor import (COLLAPSE_RATIO, STRUCTURE_COLLAPSE_RATIO, DiversityMonitor, describe,
                                        pairwise_diversity)


def test_pairwise_diversity_of_identical_and_opposite_images():
    same = torch.zeros(5, 3, 64, 64)
    assert pairwise_diversity(same) == 0.0
    black_white = torch.stack([-torch.ones(1, 8, 8), torch.ones(1, 8, 8)])
    assert abs(pairwise_diversity(black_white) - 1.0) < 1e-6


def test_standardised_diversity_ignores_brightness_and_contrast_but_not_layout():
    picture = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    tones = torch.cat([picture * a + b for a, b in [(1.0, 0.0), (0.5, 0.3), (0.8, -0.2), (0.3, 0.1)]])
    assert pairwise_diversity(tones) > 0.1
    assert pairwise_diversity(tones, standardise=True) < 0.1  # not 0: STANDARDISE_EPS damps low-contrast copies
    assert pairwise_diversity(torch.zeros(4, 1, 8, 8), standardise=True) == 0.0  # flat stays flat
    layouts = torch.stack([picture[0], picture[0].flip(-1), picture[0].flip(-2), picture[0].roll(5, -1)])
    assert pairwise_diversity(layouts, standardise=True) > 1.0


def test_the_median_pair_ignores_a_few_outliers():
    copies = torch.cat([-torch.ones(5, 1, 8, 8), torch.ones(1, 1, 8, 8)])  # 10 black pairs; 5 black-white, 1 apart
    assert abs(pairwise_diversity(copies) - 5 / 15) < 1e-6
    assert pairwise_diversity(copies, median=True) == 0.0


class ConstantGenerator(nn.Module):
    """A 'GAN' that draws one fixed image per class whatever the latent: total mode collapse."""

    conditional = True
    monitors_diversity = True

    def __init__(self, varied_class: int | None = None):
        super().__init__()
        self.images = nn.Parameter(torch.rand(3, 1, 16, 16) * 2 - 1)
        self.varied_class = varied_class

    def generate(self, labels, generator=None, truncation=1.0):
        out = self.images[labels].detach().clone()
        if self.varied_class is not None:
            noise = torch.rand(out.shape, generator=generator) * 2 - 1
            out[labels == self.varied_class] = noise[labels == self.varied_class]
        return out


def _real(n=20):
    g = torch.Generator().manual_seed(0)
    return (torch.rand(n, 1, 16, 16, generator=g) * 255).to(torch.uint8), torch.arange(n) % 3


def test_a_generator_of_one_constant_image_per_class_triggers_the_warning():
    images, labels = _real()
    monitor = DiversityMonitor.for_run(ConstantGenerator(), images, labels, ["a", "b", "c"], None, seed=0)
    record = monitor.check(ConstantGenerator())
    assert record["collapse_warning"] == ["a", "b", "c"] and record["diversity"] == 0.0
    assert "COLLAPSE WARNING: a, b, c" in describe(record)


class OnePictureInManyTonesGenerator(ConstantGenerator):
    """One picture per class, its brightness and contrast drawn per sample: varied pixels, one layout."""

    def generate(self, labels, generator=None, truncation=1.0):
        gain = torch.rand(len(labels), 1, 1, 1, generator=generator) * 0.2 + 0.25  # no clipping: |out| < 0.95
        shift = torch.rand(len(labels), 1, 1, 1, generator=generator) - 0.5
        return self.images[labels].detach() * gain + shift


def test_one_picture_in_many_tones_triggers_the_warning_through_the_structure_figure():
    images, labels = _real()
    model = OnePictureInManyTonesGenerator()
    monitor = DiversityMonitor.for_run(model, images, labels, ["a", "b", "c"], None, seed=0)
    record = monitor.check(model)
    # the pixel figure alone would not warn: the tones differ as much as a third of the real images do
    assert all(record["diversity_per_class"][c] > COLLAPSE_RATIO * monitor.real_diversity[c] for c in "abc")
    assert all(record["structure_diversity_per_class"][c] < 0.2 * monitor.real_structure[c] for c in "abc")
    assert record["collapse_warning"] == ["a", "b", "c"]


class CopiesWithOutliersGenerator(ConstantGenerator):
    """Per class, six copies of one picture and two of its negative: a row of copies that two outliers, far from
    them, lift to above half the real spread on average (the bench's CT rows of one pose with one or two others)."""

    def generate(self, labels, generator=None, truncation=1.0):
        out = self.images[labels].detach().clone()
        for label in labels.unique():
            rows = torch.nonzero(labels == label).flatten()[6:]
            out[rows] = -out[rows]
        return out


def test_copies_with_a_few_outliers_trigger_the_warning_through_the_median():
    images, labels = _real()
    model = CopiesWithOutliersGenerator()
    monitor = DiversityMonitor.for_run(model, images, labels, ["a", "b", "c"], None, seed=0)
    record = monitor.check(model)
    rows = model.generate(torch.arange(3).repeat_interleave(monitor.per_class))
    for i, c in enumerate("abc"):
        row = rows[i * monitor.per_class:(i + 1) * monitor.per_class]
        mean = pairwise_diversity(row, standardise=True)
        assert mean > STRUCTURE_COLLAPSE_RATIO * monitor.real_structure[c]  # a mean over pairs would pass the row
        assert record["structure_diversity_per_class"][c] == 0.0  # most pairs are copies
    assert record["collapse_warning"] == ["a", "b", "c"]


def test_only_the_collapsed_classes_are_named():
    images, labels = _real()
    model = ConstantGenerator(varied_class=1)
    record = DiversityMonitor.for_run(model, images, labels, ["a", "b", "c"], None, seed=0).check(model)
    assert record["collapse_warning"] == ["a", "c"]
    assert record["diversity_per_class"]["b"] > 0.2


def test_models_with_slow_sampling_are_not_watched():
    class Slow(ConstantGenerator):
        monitors_diversity = False

    images, labels = _real()
    assert DiversityMonitor.for_run(Slow(), images, labels, ["a", "b", "c"], None, seed=0) is None


def test_the_check_does_not_touch_the_global_rng():
    images, labels = _real()
    model = ConstantGenerator(varied_class=0)
    monitor = DiversityMonitor.for_run(model, images, labels, ["a", "b", "c"], None, seed=0)
    state = torch.get_rng_state()
    monitor.check(model)
    assert torch.equal(torch.get_rng_state(), state)


def test_a_gan_run_logs_diversity_and_the_warning_field(tmp_path):
    from medisynth.training import toy
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    data = toy.write_toy_dataset(tmp_path / "data", size=32)
    train(TrainConfig(data=data, model="dcgan", out=tmp_path / "run", steps=4, batch_size=4, log_every=2,
                      sample_every=0, device="cpu", progress=False, hyper={"width": 4, "latent_dim": 8}))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    for r in records:
        assert 0.0 <= r["diversity"] <= 1.0 and isinstance(r["collapse_warning"], list)
        assert 0.0 <= r["ada_p"] <= 1.0


def test_the_summary_names_the_classes_that_collapsed_at_the_last_check(tmp_path, monkeypatch):
    from medisynth.training import toy
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    # every check finds class "1" collapsed
    monkeypatch.setattr(DiversityMonitor, "check", lambda self, model: {"diversity": 0.0, "collapse_warning": ["1"]})
    data = toy.write_toy_dataset(tmp_path / "data", size=32)
    result = train(TrainConfig(data=data, model="dcgan", out=tmp_path / "run", steps=3, batch_size=4, log_every=2,
                               sample_every=0, device="cpu", progress=False, hyper={"width": 4, "latent_dim": 8}))
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()] == [2, 3]
    assert result.warnings[0].startswith("collapse: the samples of 1 were near-identical")
    assert "warning at the last check: collapse: the samples of 1" in result.summary()
    per_class = train(TrainConfig(data=data, model="dcgan", out=tmp_path / "pc", steps=2, batch_size=4, log_every=1,
                                  sample_every=0, device="cpu", progress=False, per_class=True,
                                  hyper={"width": 4, "latent_dim": 8}))
    assert "warning at the last check, class 1: collapse" in per_class.summary()
    # a run the clock stops between two log steps is checked once more at the end
    clocked = train(TrainConfig(data=data, model="dcgan", out=tmp_path / "clocked", minutes=0.02, log_every=10**6,
                                batch_size=4, sample_every=0, device="cpu", progress=False,
                                hyper={"width": 4, "latent_dim": 8}))
    records = [json.loads(line) for line in (tmp_path / "clocked" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 1 and records[0]["step"] == clocked.steps and records[0]["collapse_warning"] == ["1"]
    assert records[0]["images_per_second"] > 0  # the record `runs compare` reads its "final" rate from
    assert "warning at the last check: collapse: the samples of 1" in clocked.summary()


@pytest.mark.parametrize("model", ["dcgan", "wgan-gp"])
@pytest.mark.parametrize("p, warned", [(1.0, True), (0.5, False)])
def test_a_gan_run_warns_when_ada_sits_at_its_ceiling(tmp_path, monkeypatch, capsys, model, p, warned):
    from medisynth.models.ada import AdaptiveAugment
    from medisynth.training import toy
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    # a discriminator whose every observation sets p (a real tiny D's r_t is too noisy to hold p anywhere)
    monkeypatch.setattr(AdaptiveAugment, "observe", lambda self, d_real, d_fake=None: self.p.fill_(p))
    data = toy.write_toy_dataset(tmp_path / "data", size=32)
    result = train(TrainConfig(data=data, model=model, out=tmp_path / "run", steps=4, batch_size=4, log_every=2,
                               sample_every=0, device="cpu", progress=True, hyper={"width": 4, "latent_dim": 8}))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["ada_p"] for r in records] == [p, p]
    assert [r["ada_ceiling_warning"] for r in records] == [warned, warned]
    # the summary `medisynth train` prints at the end repeats the last check's warnings
    assert ("warning at the last check: ADA at its ceiling" in result.summary()) is warned
    assert ("collapse" in result.summary()) is bool(records[-1]["collapse_warning"])
    # no terminal here, so the progress bar is one line per log interval on stderr
    lines = [line for line in capsys.readouterr().err.splitlines() if "Loss_D" in line]
    assert len(lines) == 2 and all(("ADA AT CEILING (p = 1)" in line) is warned for line in lines)


def test_plain_diffaugment_is_not_watched_for_the_ceiling(tmp_path):
    from medisynth.training import toy
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    data = toy.write_toy_dataset(tmp_path / "data", size=32)
    train(TrainConfig(data=data, model="dcgan", out=tmp_path / "run", steps=2, batch_size=4, log_every=2,
                      sample_every=0, device="cpu", progress=False,
                      hyper={"width": 4, "latent_dim": 8, "ada_target": None}))
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records and all("ada_ceiling_warning" not in r and r["ada_p"] == 1.0 for r in records)
