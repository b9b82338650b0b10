"""``medisynth balance``: every train class reaches its target, real images untouched, synthetic only in train."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import medisynth.sampling
from medisynth.balancing import BalanceConfig, balance, class_targets
from medisynth.data.dataset import PreparedDataset
from medisynth.errors import MedisynthError
from medisynth.io import write_json
from medisynth.downstream.toy import toy_images, write_image_folder, write_toy_prepared

TRAIN = [12, 5, 2]


def fake_sample(config):
    """Stands in for medisynth.sampling.sample: the same output layout, made of toy images."""
    labels = [name for name, n in config.per_class.items() for _ in range(n)]
    indices = [int(name) for name in labels]
    write_image_folder(config.out, toy_images(indices, 16, 3, seed=config.seed + 7), labels, prefix="syn_",
                       extra={"class_index": indices, "synthetic": 1})
    write_json(Path(config.out) / "sample.json", {"requested": config.per_class})
    fake_sample.calls.append(config)
    return SimpleNamespace(shortfall={})


@pytest.fixture()
def data(tmp_path, monkeypatch):
    write_toy_prepared(tmp_path / "data", {"train": TRAIN, "val": [2, 2, 2], "test": [3, 3, 3]})
    (tmp_path / "run").mkdir()
    write_json(tmp_path / "run" / "model.json", {"model": "fake", "spec": {"class_names": ["0", "1", "2"]}})
    fake_sample.calls = []
    monkeypatch.setattr(medisynth.sampling, "sample", fake_sample)
    return tmp_path


@pytest.mark.parametrize("target,ratio,expected", [
    (None, None, [12, 12, 12]), (8, None, [12, 8, 8]), (None, 0.5, [12, 6, 6]), (None, 1.5, [18, 18, 18]),
])
def test_class_targets(target, ratio, expected):
    assert class_targets(TRAIN, target, ratio) == expected


@pytest.mark.parametrize("kwargs,goal", [({}, [12, 12, 12]), ({"target": 8}, [12, 8, 8]), ({"ratio": 0.5}, [12, 6, 6])])
def test_balance_tops_up_train_only(data, kwargs, goal):
    out = data / "balanced"
    result = balance(BalanceConfig(data=data / "data", run=data / "run", out=out, progress=False, **kwargs))
    assert result.total == goal and result.added == [g - r for g, r in zip(goal, TRAIN)]
    table = pd.read_csv(out / "labels.csv", dtype={"image": str, "label": str})
    train = table[table["split"] == "train"]
    assert train.groupby("label").size().to_dict() == {str(k): g for k, g in enumerate(goal)}
    assert set(table.loc[table["synthetic"] == 1, "split"]) == {"train"}
    for split, counts in (("val", [2, 2, 2]), ("test", [3, 3, 3])):
        part = table[table["split"] == split]
        assert (part["synthetic"] == 0).all() and part.groupby("label").size().tolist() == counts
    summary = json.loads((out / "balance.json").read_text())
    assert [row["total"] for row in summary["per_class"]] == goal
    assert sorted(p.stem for p in (out / "images").iterdir()) == sorted(table["image"])


def test_real_images_are_untouched(data):
    out = data / "balanced"
    balance(BalanceConfig(data=data / "data", run=data / "run", out=out, progress=False))
    real = PreparedDataset(data / "data", split=None)
    for i, image_id in enumerate(real.index["id"]):
        written = np.asarray(Image.open(out / "images" / f"{image_id}.png"))
        assert np.array_equal(written, real.image_uint8(i))
    assert not (data / "data" / ".medisynth-cache").exists()  # the input folder gains nothing


def test_sampler_is_asked_for_the_missing_counts_by_class_name(data):
    balance(BalanceConfig(data=data / "data", run=data / "run", out=data / "b", min_d_score=0.5, seed=3, progress=False))
    (config,) = fake_sample.calls
    assert config.per_class == {"1": 7, "2": 10}
    assert (config.min_d_score, config.seed) == (0.5, 3)


def test_nothing_to_add_skips_the_sampler(data):
    result = balance(BalanceConfig(data=data / "data", run=data / "run", out=data / "b", target=1, progress=False))
    assert result.added == [0, 0, 0] and fake_sample.calls == []


def test_errors(data):
    cfg = dict(data=data / "data", run=data / "run", progress=False)
    with pytest.raises(MedisynthError, match="not both"):
        balance(BalanceConfig(out=data / "b", target=5, ratio=1.0, **cfg))
    with pytest.raises(MedisynthError, match="--ratio must be positive"):
        balance(BalanceConfig(out=data / "b", ratio=0, **cfg))
    write_json(data / "run" / "model.json", {"spec": {"class_names": ["a", "b", "c"]}})
    with pytest.raises(MedisynthError, match="trained on classes"):
        balance(BalanceConfig(out=data / "b", **cfg))
    assert not (data / "b").exists()  # nothing half-written


def test_output_is_readable_by_the_utility_loader(data):
    from medisynth.downstream.data import load_synthetic

    balance(BalanceConfig(data=data / "data", run=data / "run", out=data / "b", progress=False))
    synthetic = load_synthetic(data / "b", ["0", "1", "2"], 16, 3)
    assert np.bincount(synthetic.labels).tolist() == [0, 7, 10]


def test_utility_tops_up_by_what_balance_recorded(data):
    from medisynth.downstream.data import load_synthetic, load_real, protocol_data, recorded_top_up

    result = balance(BalanceConfig(data=data / "data", run=data / "run", out=data / "b", target=8, progress=False))
    real = load_real(data / "data")
    synthetic = load_synthetic(data / "b", ["0", "1", "2"], 16, 3)
    top_up = recorded_top_up(data / "b", real)
    assert [a.tolist() for a in top_up] == [result.added, result.shortfall] == [[0, 3, 6], [0, 0, 0]]
    made = protocol_data("real+synthetic", real, synthetic, top_up=top_up)
    assert made.added_per_class == [0, 3, 6] and np.bincount(made.train.labels).tolist() == [12, 8, 8]
    # without the record, the majority rule would ask for 7 and 10 and find too few
    assert protocol_data("real+synthetic", real, synthetic).shortfall_per_class == [0, 4, 4]
    assert recorded_top_up(data / "data", real) is None  # not a balanced folder


def test_recorded_top_up_refuses_another_real_set(data, tmp_path):
    from medisynth.downstream.data import load_real, recorded_top_up

    balance(BalanceConfig(data=data / "data", run=data / "run", out=data / "b", progress=False))
    write_toy_prepared(tmp_path / "other", {"train": [3, 3, 3], "val": [2, 2, 2], "test": [3, 3, 3]})
    with pytest.raises(MedisynthError, match="balanced for a train split of \\[12, 5, 2\\].*--real"):
        recorded_top_up(data / "b", load_real(tmp_path / "other"))


def test_cli_balance(data):
    from typer.testing import CliRunner

    from medisynth.cli import app

    result = CliRunner().invoke(app, ["balance", str(data / "data"), "--run", str(data / "run"), "--out",
                                      str(data / "b"), "--target-count", "6", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "added" in result.output and (data / "b" / "balance.json").is_file()


# -- end to end with the real sampler and a tiny trained conditional GAN --------------------------
@pytest.fixture()
def tiny_run(tmp_path):
    from medisynth.training import toy  # noqa: F401  (registers toy-cgan)
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    write_toy_prepared(tmp_path / "data", {"train": TRAIN, "val": [2, 2, 2], "test": [3, 3, 3]})
    train(TrainConfig(data=tmp_path / "data", model="toy-cgan", out=tmp_path / "run", steps=3, batch_size=4,
                      sample_every=0, device="cpu", progress=False))
    return tmp_path


def test_balance_end_to_end_with_a_trained_run(tiny_run):
    out = tiny_run / "balanced"
    result = balance(BalanceConfig(data=tiny_run / "data", run=tiny_run / "run", out=out, ratio=0.75,
                                   min_d_score=0.0, device="cpu", progress=False))
    assert result.total == [12, 9, 9] and result.shortfall == [0, 0, 0]
    table = pd.read_csv(out / "labels.csv", dtype={"label": str})
    synthetic = table[table["synthetic"] == 1]
    assert len(synthetic) == 11 and set(synthetic["split"]) == {"train"} and synthetic["d_score"].notna().all()
    assert json.loads((out / "balance.json").read_text())["sampler"]["written"] == {"1": 4, "2": 7}

    # the balanced folder feeds the utility protocols directly (its synthetic rows only)
    from medisynth.downstream import UtilityConfig, run_utility

    results = run_utility(UtilityConfig(real=tiny_run / "data", synthetic=out, out=tiny_run / "report",
                                        protocols=("real", "real+synthetic"), seeds=1, epochs=1, batch_size=4,
                                        width=4, device="cpu", progress=False, bootstrap=0))
    assert results["data"]["synthetic"] == [0, 4, 7]
    assert [r["train_synthetic"] for r in results["runs"]] == [0, 11]


def test_prepare_reads_a_balanced_folder_back_with_its_splits(data):
    from medisynth.data.prepare import PrepareConfig, prepare

    balance(BalanceConfig(data=data / "data", run=data / "run", out=data / "b", progress=False))
    prepare(PrepareConfig(source=data / "b", out=data / "again", size=16, workers=1), progress=False)
    index = pd.read_csv(data / "again" / "index.csv", dtype={"id": str})
    labels = pd.read_csv(data / "b" / "labels.csv", dtype={"image": str})
    merged = index.merge(labels, left_on="id", right_on="image", suffixes=("", "_balanced"))
    assert len(merged) == len(labels)
    assert (merged["split"] == merged["split_balanced"]).all()
    assert (merged.loc[merged["synthetic"] == 1, "split"] == "train").all()
