"""The diversity monitor: pairwise diversity, the collapse warning, and its place in metrics.jsonl."""
from __future__ import annotations

import json

import torch
from torch import nn

from medisynth.training.monitor import DiversityMonitor, describe, pairwise_diversity


def test_pairwise_diversity_of_identical_and_opposite_images():
    same = torch.zeros(5, 3, 64, 64)
    assert pairwise_diversity(same) == 0.0
    black_white = torch.stack([-torch.ones(1, 8, 8), torch.ones(1, 8, 8)])
    assert abs(pairwise_diversity(black_white) - 1.0) < 1e-6


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
