"""The top-level Python API: every lazily exported name resolves, and the documented flow runs.

The flow is the one in ``medisynth/__init__.py``'s docstring, with the lazy names only:
generate_fundus_dataset -> prepare(PrepareConfig) -> train(TrainConfig) -> sample(SampleConfig).
"""
from __future__ import annotations

import csv
import importlib
import subprocess
import sys

import pytest

import medisynth as ms


@pytest.mark.parametrize("name", sorted(ms._LAZY))
def test_lazy_name_resolves(name):
    value = getattr(ms, name)
    expected = getattr(importlib.import_module(ms._LAZY[name]), name)
    # read twice: importing a submodule of the same name (medisynth/balance.py) rebinds the package attribute
    assert getattr(ms, name) is value is expected, f"medisynth.{name} is {value!r}, not {expected!r}"
    assert name in ms.__all__


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_thing'"):
        ms.not_a_thing  # noqa: B018


def test_import_is_cheap():
    """``import medisynth`` must not import torch (the lazy names exist so that it does not)."""
    code = "import sys, medisynth; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_api_flow(tmp_path):
    phantom = ms.generate_fundus_dataset(tmp_path / "phantom", n=20, size=32, seed=1, proportions="1,1,1,1,1")
    prepared = ms.prepare(ms.PrepareConfig(source=phantom, out=tmp_path / "data", size=32, workers=1), progress=False)
    assert prepared.manifest.num_images == 20
    assert list(prepared.manifest.class_names) == ["0", "1", "2", "3", "4"]

    dataset = ms.PreparedDataset(tmp_path / "data", split="train")
    assert len(dataset) == sum(prepared.manifest.counts["train"].values()) > 0

    result = ms.train(ms.TrainConfig(data=tmp_path / "data", model="cgan", out=tmp_path / "run", steps=2,
                                     batch_size=4, device="cpu", sample_every=0, progress=False,
                                     latent_dim=8, hyper={"width": 8, "embed_dim": 4}))
    assert result.steps == 2 and result.run == tmp_path / "run"

    samples = ms.sample(ms.SampleConfig(run=tmp_path / "run", out=tmp_path / "syn", per_class={"4": 3, 0: 2},
                                        device="cpu", progress=False))
    assert samples.written == {"0": 2, "4": 3}
    with open(tmp_path / "syn" / "labels.csv", newline="") as f:
        labels = [row["label"] for row in csv.DictReader(f)]
    assert sorted(labels) == ["0", "0", "4", "4", "4"]
    assert len(list((tmp_path / "syn" / "images").glob("*.png"))) == 5


def test_api_errors_are_medisynth_errors(tmp_path):
    with pytest.raises(ms.MedisynthError, match="unknown model"):
        ms.build_model("no-such-model", None)
    with pytest.raises(ms.MedisynthError, match="no training budget"):
        ms.train(ms.TrainConfig(data=tmp_path, model="cgan", out=tmp_path / "run"))
    # two mistakes at once: the model name is named first (no other setting matters without a model)
    with pytest.raises(ms.MedisynthError, match="unknown model 'no-such-model'"):
        ms.train(ms.TrainConfig(data=tmp_path, model="no-such-model", out=tmp_path / "run"))
