"""medisynth export: the generator alone, loadable and sampleable like its run, a quarter of its size or less."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors import SafetensorError
from typer.testing import CliRunner

import medisynth
from medisynth.cli import app
from medisynth.errors import MedisynthError
from medisynth.export import EXPORT_JSON, export_run
from medisynth.io import read_image
from medisynth.models.base import register_model
from medisynth.provenance import read_provenance
from medisynth.runs import Run
from medisynth.sampling import SampleConfig, sample
from medisynth.training import toy
from medisynth.training.config import TrainConfig
from medisynth.training.trainer import train


@register_model("toy-peeking-gan")
class PeekingGAN(toy.ToyGAN):
    """Generates with a discriminator weight read directly (no forward call): an export cannot see it."""

    def generate(self, labels, generator=None, truncation=1.0, **options):
        # any change of that trained weight changes the images (a sign alone matched a fresh init half the time)
        return super().generate(labels, generator, truncation) * (1 + self.discriminator[0].weight.flatten()[0])


def _train(data, out, model, **kw):
    values = dict(data=data, model=model, out=out, steps=2, batch_size=4, log_every=1, sample_every=0, device="cpu",
                  progress=False)
    values.update(kw)
    train(TrainConfig(**values))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = toy.write_toy_dataset(root / "data", size=32, channels=1)
    return {
        "dcgan": _train(data, root / "dcgan", "dcgan", hyper={"width": 8}, latent_dim=16),
        "cgan": _train(data, root / "cgan", "toy-cgan"),
        "per-class": _train(data, root / "per-class", "toy-gan", per_class=True),
        "peeking": _train(data, root / "peeking", "toy-peeking-gan"),
    }


def _sample(run, out, **kw):
    sample(SampleConfig(run=run, out=out, device="cpu", progress=False, seed=3, **kw))
    return pd.read_csv(out / "labels.csv", dtype=str)


@pytest.mark.parametrize("name, request_", [
    ("dcgan", {"n": 5}), ("cgan", {"per_class": {"0": 3, "1": 2}}), ("per-class", {"per_class": {"0": 2, "1": 3}}),
])
def test_export_samples_the_same_images_as_its_run(runs, tmp_path, name, request_):
    run = runs[name]
    result = export_run(run, tmp_path / "exported")
    from_run = _sample(run, tmp_path / "a", **request_)
    from_export = _sample(tmp_path / "exported", tmp_path / "b", **request_)
    assert list(from_run["image"]) == list(from_export["image"])
    assert list(from_run["label"]) == list(from_export["label"])
    for image in from_run["image"]:
        assert np.array_equal(read_image(tmp_path / "a" / "images" / f"{image}.png"),
                              read_image(tmp_path / "b" / "images" / f"{image}.png"))
    # the same run id in the images' provenance, so images of the export trace back to the run
    assert list(from_run["run_id"]) == list(from_export["run_id"]) == [Run(run).id] * len(from_run)
    assert result.export_bytes <= result.run_bytes / 4, result.summary()


def test_export_keeps_the_ema_generator_only(runs, tmp_path):
    export_run(runs["dcgan"], tmp_path / "g")
    record = json.loads((tmp_path / "g" / EXPORT_JSON).read_text())
    assert record["kept"] == ["ema_generator"] and "discriminator" in record["omitted"] and "generator" in record["omitted"]
    loaded = medisynth.load_run(tmp_path / "g")
    assert torch.equal(loaded.generate([0, 0], seed=4), medisynth.load_run(runs["dcgan"]).generate([0, 0], seed=4))
    with pytest.raises(MedisynthError, match="EMA networks; drop --no-ema"):
        medisynth.load_run(tmp_path / "g", ema=False)


def test_an_export_that_would_not_reproduce_the_run_is_refused(runs, tmp_path):
    with pytest.raises(MedisynthError, match="does not reproduce the run's images"):
        export_run(runs["peeking"], tmp_path / "g")
    assert not (tmp_path / "g").exists()


def test_model_card_names_data_classes_budget_and_the_evaluation(runs, tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    metrics = {"schema": "medisynth.metrics/1", "created": "2026-11-28T00:00:00+00:00",
               "inputs": {"n_fake": 40, "n_real": 30, "real_split": "train"},
               "distribution": {"pixels": {"fid": 12.345, "kid_mean": 0.0125, "precision": 0.5, "recall": 0.25}},
               "cas": {"overall": 0.75, "real_heldout_accuracy": 0.8},
               "memorization": {"pixel": {"fraction_flagged": 0.0, "heldout_fraction_flagged": 0.1, "dcr_ratio": 1.02}},
               "warnings": ["only 40 synthetic images"]}
    (report / "metrics.json").write_text(json.dumps(metrics))
    export_run(runs["cgan"], tmp_path / "g", report=report)
    card = (tmp_path / "g" / "README.md").read_text()
    for text in ("toy-cgan", "32 x 32 px, 1 channel", "0 = 0, 1 = 1", "steps 2", "| fid (pixels) | 12.35 |",
                 "| CAS (real-trained classifier on synthetic) | 0.75 |", "only 40 synthetic images",
                 "never in a validation or test set", str(runs["cgan"].parent / "data")):
        assert text in card, text
    without = export_run(runs["cgan"], tmp_path / "h")
    assert "No evaluation was given" in (without.out / "README.md").read_text()
    # a per-class run keeps its spec in the classes' runs (the card said "? x ? px" before session 29)
    export_run(runs["per-class"], tmp_path / "p")
    assert "32 x 32 px, 1 channel" in (tmp_path / "p" / "README.md").read_text()


def test_cli_export_and_its_errors(runs, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(runs["cgan"]), "--out", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    assert "of the run's" in result.output and medisynth.load_run(tmp_path / "g").class_names == ["0", "1"]
    again = runner.invoke(app, ["export", str(runs["cgan"]), "--out", str(tmp_path / "g")])
    assert isinstance(again.exception, MedisynthError) and "already exists" in str(again.exception)
    bad = runner.invoke(app, ["export", str(runs["cgan"]), "--out", str(tmp_path / "h"), "--report", str(tmp_path)])
    assert isinstance(bad.exception, MedisynthError) and "--report" in str(bad.exception)
    assert "metrics.json" in str(bad.exception) and not (tmp_path / "h").exists()
    # the sampled images of an export carry the same provenance as the run's
    sample(SampleConfig(run=tmp_path / "g", out=tmp_path / "s", n=2, device="cpu", progress=False))
    first = sorted((tmp_path / "s" / "images").iterdir())[0]
    assert read_provenance(first)["run_id"] == Run(runs["cgan"]).id


def test_a_full_disk_during_export_is_one_error_and_leaves_nothing(runs, tmp_path, monkeypatch):
    def full_disk(tensors, filename, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(medisynth.export, "save_file", full_disk)
    with pytest.raises(MedisynthError, match="could not write the exported weights .*No space left on device.*export again"):
        export_run(runs["cgan"], tmp_path / "g")
    assert not list(tmp_path.iterdir())  # neither the export nor its temporary folder
