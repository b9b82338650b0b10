"""medisynth.runs: the run folder layout, loading a run for generation, clear errors on bad folders."""
from __future__ import annotations

import json

import pytest
import torch

import medisynth as ms
from medisynth.errors import MedisynthError
from medisynth.runs import Run, load_run, read_metrics
from medisynth.training import toy  # noqa: F401  (registers toy-cgan)
from medisynth.training.config import TrainConfig
from medisynth.training.trainer import train


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    data = toy.write_toy_dataset(tmp_path_factory.mktemp("toy") / "data")
    out = tmp_path_factory.mktemp("runs") / "cgan"
    train(TrainConfig(data=data, model="toy-cgan", out=out, steps=4, batch_size=4, log_every=2,
                      sample_every=0, checkpoint_every=1000, device="cpu", progress=False))
    return out


def test_run_reads_layout_and_files(toy_run):
    run = Run.open(toy_run)
    assert run.model_json == toy_run / "model.json" and run.config_json == toy_run / "config.json"
    assert run.model_name == "toy-cgan" and run.conditional is True and not run.per_class
    assert run.class_names == ["0", "1"]
    assert run.latest_checkpoint().name == "step-000004"
    assert (run.data / "manifest.json").is_file()  # the prepared set the run was trained on
    assert [r["step"] for r in read_metrics(toy_run)] == [2, 4]


def test_load_run_generates_reproducibly(toy_run):
    loaded = ms.load_run(toy_run, device="cpu")
    assert loaded.step == 4 and loaded.class_names == ["0", "1"] and not loaded.model.training
    a = loaded.generate([0, 1, 1], seed=3)
    b = loaded.generate(torch.tensor([0, 1, 1]), seed=3)
    assert a.shape == (3, 3, 16, 16) and torch.equal(a, b)
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    assert not torch.equal(a, loaded.generate([0, 1, 1], seed=4))


def test_metrics_reader_skips_damaged_lines(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "lo\n[1, 2]\n{"step": 3}\n')
    assert read_metrics(tmp_path) == [{"step": 1, "loss": 0.5}, {"step": 3}]


@pytest.mark.parametrize("layout, message", [
    ("missing", "no such run folder"),
    ("model-only", "not a medisynth run"),
    ("per-class", "one model per class"),
    ("damaged", "is damaged"),
])
def test_load_run_errors_name_the_fix(tmp_path, layout, message):
    run = tmp_path / "run"
    if layout != "missing":
        run.mkdir()
        (run / "model.json").write_text(json.dumps({"per_class": layout == "per-class", "model": "toy-cgan"}))
    if layout in ("per-class", "damaged"):
        (run / "config.json").write_text("{}")
    with pytest.raises(MedisynthError, match=message):
        load_run(run)
    with pytest.raises(MedisynthError, match="^--vessel-run "):
        load_run(run, flag="--vessel-run")


def test_dir_lists_lazy_names():
    assert {"load_run", "train", "sample", "evaluate", "balance", "build_model"} <= set(dir(ms))


def test_a_relative_data_path_still_resolves_from_another_folder(tmp_path, monkeypatch):
    """config.json keeps the data path as given and absolute; Run.data uses the absolute one when needed."""
    monkeypatch.chdir(tmp_path)
    toy.write_toy_dataset(tmp_path / "data")
    train(TrainConfig(data="data", model="toy-cgan", out="run", steps=1, batch_size=4, sample_every=0,
                      device="cpu", progress=False))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"] == "data" and config["data_absolute"] == str((tmp_path / "data").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert Run.open(tmp_path / "run").data == (tmp_path / "data").resolve()
    monkeypatch.chdir(tmp_path)
    assert Run.open("run").data == ms.runs.Path("data")  # the path as given while it resolves
    # a resume reads the saved config back (the extra key is not a setting)
    train(TrainConfig(resume="run", steps=2, device="cpu", progress=False))
