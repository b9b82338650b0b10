"""Sampling: counts per class, the image-folder format, filters, streaming, per-class runs, bad input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import medisynth.sampling.writer as sampling
from medisynth.errors import MedisynthError
from medisynth.io import read_image
from medisynth.models.base import register_model
from medisynth.sampling import SampleConfig, parse_per_class, sample
from medisynth.training import toy
from medisynth.training.config import TrainConfig
from medisynth.training.trainer import train


@register_model("toy-plain")
class PlainGAN(toy.ToyGAN):
    """No discriminator score, no truncation: for the refusal tests."""

    has_discriminator = False
    supports_truncation = False


@register_model("toy-maskgan")
class MaskGAN(toy.ToyGAN):
    needs_masks = True


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return toy.write_toy_dataset(tmp_path_factory.mktemp("toy") / "data", with_masks=True)


def _train(data, out, model, **kw):
    values = dict(data=data, model=model, out=out, steps=4, batch_size=4, log_every=2, sample_every=0,
                  device="cpu", progress=False)
    values.update(kw)
    train(TrainConfig(**values))
    return out


@pytest.fixture(scope="module")
def runs(toy_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "cgan": _train(toy_data, root / "cgan", "toy-cgan"),
        "gan": _train(toy_data, root / "gan", "toy-gan"),
        "per-class": _train(toy_data, root / "per-class", "toy-gan", per_class=True),
        "plain": _train(toy_data, root / "plain", "toy-plain"),
    }


def config(run, out, **kw) -> SampleConfig:
    return SampleConfig(run=run, out=out, device="cpu", progress=False, **kw)


def labels_csv(out) -> pd.DataFrame:
    return pd.read_csv(out / "labels.csv", dtype={"image": str, "label": str})


# -- counts and format ---------------------------------------------------------------
@pytest.mark.parametrize("request_, expected", [
    ({"per_class": {"1": 5, "0": 2}}, {"0": 2, "1": 5}),  # by name
    ({"per_class": parse_per_class("0=3,1=1")}, {"0": 3, "1": 1}),
    ({"n": 5}, {"0": 3, "1": 2}),  # equal split, remainder to the lowest index
])
def test_counts_per_class_and_image_folder_format(runs, tmp_path, request_, expected):
    out = tmp_path / "s"
    result = sample(config(runs["cgan"], out, batch_size=2, **request_))
    assert result.written == expected
    table = labels_csv(out)
    assert list(table.columns) == ["image", "label", "class_index", "synthetic", "model", "run", "seed",
                                   "medisynth_version", "run_id", "checkpoint_step"]
    assert table.groupby("label").size().to_dict() == expected
    assert (table["synthetic"] == 1).all() and (table["model"] == "toy-cgan").all()
    assert (table["class_index"] == table["label"].astype(int)).all()
    assert table["image"].is_unique and table["image"].str.match(r"syn_[01]_\d{6}$").all()
    for image_id in table["image"]:
        assert read_image(out / "images" / f"{image_id}.png").shape == (16, 16, 3)
    assert sorted(p.stem for p in (out / "images").iterdir()) == sorted(table["image"])
    assert read_image(out / "grid.png").shape[0] == 2 + 2 * 18  # one row per class
    info = json.loads((out / "sample.json").read_text())
    assert info["written"] == expected and info["seed"] == 0


def test_same_seed_same_images_other_seed_other_images(runs, tmp_path):
    paths = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        sample(config(runs["cgan"], tmp_path / name, per_class={"0": 2}, seed=seed))
        paths.append(read_image(tmp_path / name / "images" / "syn_0_000002.png"))
    assert np.array_equal(paths[0], paths[1]) and not np.array_equal(paths[0], paths[2])


def test_prepare_reads_the_folder_back(runs, tmp_path):
    from medisynth.data.prepare import PrepareConfig, prepare

    out = tmp_path / "s"
    sample(config(runs["cgan"], out, per_class={"0": 3, "1": 3}))
    result = prepare(PrepareConfig(source=out, out=tmp_path / "prepared", size=16, workers=1,
                                   val_fraction=0.0, test_fraction=0.0))
    assert result.manifest.num_images == 6
    assert sorted(result.manifest.class_names) == ["0", "1"]


def test_unconditional_model_gives_unlabelled_images_and_refuses_classes(runs, tmp_path):
    result = sample(config(runs["gan"], tmp_path / "s", n=3))
    assert result.written == {"unlabelled": 3}
    table = labels_csv(tmp_path / "s")
    assert (table["label"] == "unlabelled").all() and (table["class_index"] == -1).all()
    with pytest.raises(MedisynthError, match="--per-class"):
        sample(config(runs["gan"], tmp_path / "t", per_class={"1": 2}))


def test_per_class_run_dispatches_to_each_class_model(runs, tmp_path, monkeypatch):
    used = []
    real = toy.ToyGAN.generate

    def spy(self, labels, *args, **kwargs):
        used.append((self.spec.class_names, int(labels[0]), id(self)))
        return real(self, labels, *args, **kwargs)

    monkeypatch.setattr(toy.ToyGAN, "generate", spy)
    result = sample(config(runs["per-class"], tmp_path / "s", per_class={"0": 2, "1": 3}))
    assert result.written == {"0": 2, "1": 3}
    models_by_label = {}
    for _, label, model_id in used:
        models_by_label.setdefault(label, set()).add(model_id)
    assert len(models_by_label[0] | models_by_label[1]) == 2  # two different models
    steps = json.loads((tmp_path / "s" / "sample.json").read_text())["checkpoint_steps"]
    assert steps == {"0": 4, "1": 4}


# -- filters -------------------------------------------------------------------------------
def test_truncation_changes_images_and_needs_support(runs, tmp_path):
    sample(config(runs["cgan"], tmp_path / "a", per_class={"0": 2}))
    sample(config(runs["cgan"], tmp_path / "b", per_class={"0": 2}, truncation=0.3))
    a, b = (read_image(tmp_path / d / "images" / "syn_0_000001.png") for d in "ab")
    assert not np.array_equal(a, b)
    with pytest.raises(MedisynthError, match="truncation"):
        sample(config(runs["plain"], tmp_path / "c", n=2, truncation=0.5))
    assert not (tmp_path / "c").exists()


def test_min_d_score_keeps_only_high_scores(runs, tmp_path):
    probe = sample(config(runs["cgan"], tmp_path / "probe", per_class={"0": 64}, min_d_score=0.0))
    assert probe.acceptance["0"] == 1.0
    scores = labels_csv(tmp_path / "probe")["d_score"].to_numpy()
    threshold = float(np.quantile(scores, 0.7))  # ~30 % of draws pass
    result = sample(config(runs["cgan"], tmp_path / "s", per_class={"0": 10, "1": 4}, min_d_score=threshold, batch_size=8))
    table = labels_csv(tmp_path / "s")
    assert (table["d_score"] >= threshold).all()
    # ~30 % of class 0's draws pass and 20x the count may be tried: class 0 is filled
    assert result.written["0"] == 10 and "0" not in result.shortfall
    assert 0 < result.acceptance["0"] < 1.0 and result.attempts["0"] > 10
    # a class falls short only when the filter rejected draws until the attempt cap, and says by how much
    for label, asked in {"0": 10, "1": 4}.items():
        assert result.written[label] + result.shortfall.get(label, 0) == asked
        if result.shortfall.get(label):
            assert result.attempts[label] >= 20 * asked and result.acceptance[label] < 1.0


def test_min_d_score_shortfall_is_reported(runs, tmp_path, capsys):
    result = sample(config(runs["cgan"], tmp_path / "s", per_class={"1": 3}, min_d_score=1.0, max_attempts=2, batch_size=2))
    assert result.written == {"1": 0} and result.shortfall == {"1": 3} and result.attempts == {"1": 6}
    assert "fewer images than asked" in capsys.readouterr().err
    assert json.loads((tmp_path / "s" / "sample.json").read_text())["shortfall"] == {"1": 3}


def test_min_d_score_needs_a_discriminator(runs, tmp_path):
    with pytest.raises(MedisynthError, match="discriminator"):
        sample(config(runs["plain"], tmp_path / "s", n=2, min_d_score=0.5))


def test_max_similarity_drops_near_copies(runs, tmp_path, monkeypatch):
    seen = {}

    class Recorder:
        def keep(self, images):
            seen.setdefault("batches", []).append(images.shape)
            keep = np.ones(len(images), dtype=bool)
            keep[::2] = False  # drop every other image
            return keep

    def detector(data, threshold, progress, reference):
        seen["reference"], seen["threshold"] = tuple(reference.shape), threshold
        return Recorder()

    monkeypatch.setattr("medisynth.metrics.copy_detection.copy_detector", detector)
    result = sample(config(runs["cgan"], tmp_path / "s", per_class={"0": 4}, max_similarity=0.9, batch_size=4))
    assert seen["reference"] == (18, 3, 16, 16)  # the train split, N x C x H x W like the queries
    assert seen["threshold"] == 0.9 and seen["batches"][0] == (4, 3, 16, 16)
    assert result.written == {"0": 4} and result.acceptance["0"] == 0.5


def test_max_similarity_with_the_real_detector(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDISYNTH_CACHE", str(tmp_path / "cache"))
    # no toy image is a copy of a training image: nothing is rejected
    result = sample(config(runs["cgan"], tmp_path / "s", per_class={"0": 3}, max_similarity=0.999999, batch_size=4))
    assert result.written == {"0": 3} and result.shortfall == {}
    assert result.attempts == {"0": 4} and result.acceptance == {"0": 1.0}  # a filtered draw is a whole batch
    assert list((tmp_path / "cache" / "ssl").glob("*.safetensors"))  # the data set's encoder, cached


def test_max_similarity_shortfall_is_counted(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDISYNTH_CACHE", str(tmp_path / "cache"))
    # every correlation is >= -1, so that threshold rejects every draw
    result = sample(config(runs["cgan"], tmp_path / "s", per_class={"0": 3}, max_similarity=-1.0, max_attempts=2,
                           batch_size=2))
    assert result.written == {"0": 0} and result.shortfall == {"0": 3}
    assert result.attempts == {"0": 6} and result.acceptance == {"0": 0.0}


def test_min_confidence_keeps_images_the_domain_classifier_puts_in_their_class(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDISYNTH_CACHE", str(tmp_path / "cache"))
    probe = sample(config(runs["cgan"], tmp_path / "probe", per_class={"0": 32}, min_confidence=0.0))
    confidence = labels_csv(tmp_path / "probe")["confidence"].to_numpy()
    assert probe.acceptance["0"] == 1.0 and ((confidence >= 0) & (confidence <= 1)).all()
    threshold = float(np.quantile(confidence, 0.5))
    result = sample(config(runs["cgan"], tmp_path / "s", per_class={"0": 6}, min_confidence=threshold, batch_size=8))
    assert (labels_csv(tmp_path / "s")["confidence"] >= threshold).all()
    # half the draws pass and 20x the count may be tried: the class is filled, no shortfall
    assert result.written == {"0": 6} and result.shortfall == {}
    assert 0 < result.acceptance["0"] < 1.0
    assert list((tmp_path / "cache" / "classifiers").glob("*.safetensors")), "the classifier is cached"


@pytest.mark.parametrize("run, value, message", [
    ("cgan", 1.5, "probability"),
    ("gan", 0.5, "labelled samples"),  # one unconditional model: its images have no class to check
])
def test_min_confidence_refusals(runs, tmp_path, run, value, message):
    with pytest.raises(MedisynthError, match=message):
        sample(config(runs[run], tmp_path / "s", n=2, min_confidence=value))


# -- streaming ---------------------------------------------------------------------------------
def test_images_are_written_batch_by_batch(runs, tmp_path, monkeypatch):
    events = []
    real_generate, real_write = toy.ToyCGAN.generate, sampling.write_png

    def generate(self, labels, *args, **kwargs):
        events.append(("generate", len(labels)))
        return real_generate(self, labels, *args, **kwargs)

    def write(path, image, **kwargs):
        if path.parent.name == "images":  # the samples, not grid.png at the end
            events.append(("write", path.name))
        real_write(path, image, **kwargs)

    monkeypatch.setattr(toy.ToyCGAN, "generate", generate)
    monkeypatch.setattr(sampling, "write_png", write)
    sample(config(runs["cgan"], tmp_path / "s", per_class={"0": 10}, batch_size=4))
    kinds = "".join("g" if kind == "generate" else "w" for kind, _ in events)
    assert kinds == "gwwwwgwwwwgww"  # each batch is written before the next is generated


# -- bad input -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, message", [
    ({"per_class": {"7": 2}}, "not a class"),
    ({"per_class": {"Tumor": 2}}, "not a class"),
    ({"n": 2, "per_class": {"0": 2}}, "one of them"),
    ({}, "one of them"),
    ({"n": 2, "guidance_scale": 3.0}, "--guidance-scale"),
    ({"n": 2, "steps": 10}, "--sampling-steps"),
])
def test_bad_requests(runs, tmp_path, kwargs, message):
    with pytest.raises(MedisynthError, match=message):
        sample(config(runs["cgan"], tmp_path / "s", **kwargs))
    assert not (tmp_path / "s").exists()


def test_not_a_run_and_truncated_checkpoint(runs, tmp_path):
    with pytest.raises(MedisynthError, match="not a medisynth run"):
        sample(config(tmp_path, tmp_path / "s", n=1))
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(runs["cgan"], broken)
    weights = next((broken / "checkpoints").glob("step-*")) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(MedisynthError, match="damaged"):
        sample(config(broken, tmp_path / "s", n=1))


def test_mask_translation_models_are_not_sampled_here(toy_data, tmp_path):
    run = _train(toy_data, tmp_path / "maskgan", "toy-maskgan", steps=1)
    with pytest.raises(MedisynthError, match="pipeline"):
        sample(config(run, tmp_path / "s", n=1))


def test_cli_sample(runs, tmp_path):
    from typer.testing import CliRunner

    from medisynth.cli import app

    out = tmp_path / "s"
    result = CliRunner().invoke(app, ["sample", str(runs["cgan"]), "--out", str(out), "--per-class", "0=2,1=1",
                                      "--device", "cpu", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert labels_csv(out).groupby("label").size().to_dict() == {"0": 2, "1": 1}
    assert "wrote 3 images" in result.output


# -- the real models ---------------------------------------------------------------------------------
@pytest.mark.parametrize("model, per_class", [("cgan", False), ("dcgan", True)])
def test_real_gans_sample_per_class_with_d_score(tmp_path, model, per_class):
    data = toy.write_toy_dataset(tmp_path / "data32", size=32)
    run = _train(data, tmp_path / "run", model, steps=2, per_class=per_class, hyper={"width": 4, "latent_dim": 8})
    result = sample(config(run, tmp_path / "s", per_class={"0": 3, "1": 2}, min_d_score=0.0, truncation=0.7))
    assert result.written == {"0": 3, "1": 2}
    table = labels_csv(tmp_path / "s")
    assert table["d_score"].between(0, 1).all()
    assert read_image(tmp_path / "s" / "images" / f"{table['image'][0]}.png").shape == (32, 32, 3)


def test_impossible_threshold_stops_early_with_a_suggestion(runs, tmp_path):
    # no discriminator score reaches 1.0: class 1 stops after max(4 batches, 256 images), not 20 x 500
    result = sample(config(runs["cgan"], tmp_path / "s", per_class={"0": 2, "1": 500}, min_d_score=1.0, batch_size=8))
    assert result.attempts["1"] == 256 and result.written["1"] == 0 and result.shortfall["1"] == 500
    message = result.stopped_early["1"]
    assert "--min-d-score 1" in message and "90th percentile" in message
    assert not result.complete
    record = json.loads((tmp_path / "s" / "sample.json").read_text())
    assert record["requested"] == {"0": 2, "1": 500} and record["written"]["1"] == 0
    assert record["stopped_early"]["1"] == message


def test_cli_readme_example_with_an_impossible_threshold_exits_3(runs, tmp_path):
    from typer.testing import CliRunner

    from medisynth.cli import app
    from medisynth.sampling.config import SHORTFALL_EXIT_STATUS

    out = tmp_path / "s"
    # the README's example, with a threshold no toy image reaches
    result = CliRunner().invoke(app, ["sample", str(runs["cgan"]), "--out", str(out), "--per-class", "0=500,1=500",
                                      "--min-d-score", "1.0", "--max-similarity", "0.95", "--batch-size", "8",
                                      "--device", "cpu", "--no-progress"])
    assert result.exit_code == SHORTFALL_EXIT_STATUS == 3, result.output
    assert "stopped early" in result.output and "--min-d-score 1" in result.output
    record = json.loads((out / "sample.json").read_text())
    assert record["attempts"] == {"0": 256, "1": 256}  # bounded: not 20 x 500 per class
    assert record["written"] == {"0": 0, "1": 0} and record["shortfall"] == {"0": 500, "1": 500}


def test_cli_keeps_what_was_accepted_on_a_shortfall(runs, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from medisynth.cli import app

    class KeepOne:  # lets exactly one image through, ever
        calls = 0

        def __init__(self, reference, threshold):
            pass

        def keep(self, images):
            keep = np.zeros(len(images), dtype=bool)
            if KeepOne.calls == 0:
                keep[0] = True
            KeepOne.calls += 1
            return keep

    monkeypatch.setattr("medisynth.metrics.copy_detection.copy_detector", lambda *a, **k: KeepOne(None, None))
    out = tmp_path / "s"
    result = CliRunner().invoke(app, ["sample", str(runs["cgan"]), "--out", str(out), "--per-class", "0=3",
                                      "--max-similarity", "0.95", "--max-attempts", "2", "--device", "cpu",
                                      "--no-progress"])
    assert result.exit_code == 3, result.output
    assert len(list((out / "images").glob("*.png"))) == 1  # the accepted image is kept
    assert json.loads((out / "sample.json").read_text())["written"] == {"0": 1}
