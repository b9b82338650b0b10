"""Fixtures for the trainer/checkpoint tests: a tiny prepared data set and a tiny trained run."""
from __future__ import annotations

import pytest

from medisynth.training import toy  # registers toy-gan / toy-cgan
from medisynth.training.config import TrainConfig
from medisynth.training.trainer import train


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    """16 px RGB, classes "0" (12 train images) and "1" (6): batch 4 -> 4 batches per epoch."""
    return toy.write_toy_dataset(tmp_path_factory.mktemp("toy") / "data", with_masks=True)


def tiny_config(data, out, **overrides) -> TrainConfig:
    values = dict(data=data, model="toy-cgan", out=out, steps=6, batch_size=4, log_every=2,
                  sample_every=0, checkpoint_every=1000, device="cpu", progress=False)
    values.update(overrides)
    return TrainConfig(**values)


@pytest.fixture(scope="session")
def toy_run(toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "cgan"
    train(tiny_config(toy_data, out))
    return out


@pytest.fixture
def make_config():
    """tiny_config(data, out, **overrides): steps=6, batch 4, CPU, no progress bar."""
    return tiny_config
