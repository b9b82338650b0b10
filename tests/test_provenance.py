"""Provenance: sampled PNGs say they are synthetic; prepare reads that back and keeps them out of val/test."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import medisynth
from medisynth.data.prepare import PrepareConfig, prepare
from medisynth.errors import MedisynthError
from medisynth.io import read_image
from medisynth.provenance import CSV_FIELDS, is_marked_synthetic, read_provenance
from medisynth.runs import Run
from medisynth.sampling import SampleConfig, sample
from medisynth.training import toy
from medisynth.training.config import TrainConfig
from medisynth.training.trainer import train


@pytest.fixture(scope="module")
def sampled(tmp_path_factory):
    """A sampled folder of a tiny conditional run (4 images of each of two classes)."""
    root = tmp_path_factory.mktemp("prov")
    data = toy.write_toy_dataset(root / "data")
    run = root / "run"
    train(TrainConfig(data=data, model="toy-cgan", out=run, steps=3, batch_size=4, log_every=1, sample_every=0,
                      device="cpu", progress=False))
    out = root / "synthetic"
    sample(SampleConfig(run=run, out=out, n=8, seed=5, device="cpu", progress=False))
    return run, out


def test_png_carries_the_provenance_record(sampled):
    run, out = sampled
    table = pd.read_csv(out / "labels.csv", dtype=str)
    assert len(table) == 8
    for row in table.itertuples():
        record = read_provenance(out / "images" / f"{row.image}.png")
        assert record == {
            "synthetic": "true", "medisynth_version": medisynth.__version__, "model": "toy-cgan", "run": str(run),
            "run_id": Run(run).id, "checkpoint_step": "3", "seed": "5", "class": row.label,
        }
        # labels.csv repeats the same fields
        assert [getattr(row, k) for k in CSV_FIELDS] == [record[k] for k in CSV_FIELDS]
    assert set(table["label"]) == {"0", "1"}
    meta = json.loads((out / "sample.json").read_text())
    assert meta["provenance"] == {"synthetic": "true", "medisynth_version": medisynth.__version__,
                                  "model": "toy-cgan", "run": str(run), "run_id": Run(run).id, "seed": "5"}
    assert meta["checkpoint_steps"] == {"0": 3, "1": 3}


def test_a_renamed_copy_keeps_its_mark_and_plain_images_have_none(sampled, tmp_path):
    _, out = sampled
    first = sorted((out / "images").iterdir())[0]
    renamed = tmp_path / "patient_0042.png"
    shutil.copy(first, renamed)
    assert is_marked_synthetic(renamed)
    plain = tmp_path / "plain.png"
    Image.fromarray(read_image(renamed)[..., 0]).save(plain)  # the same pixels, re-saved without metadata
    assert not is_marked_synthetic(plain)
    assert read_provenance(plain) is None and not is_marked_synthetic(tmp_path / "missing.png")


def test_run_id_is_shared_by_a_copy_of_the_run(sampled, tmp_path):
    run, _ = sampled
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    assert Run(copy).id == Run(run).id and len(Run(run).id) == 12


def _real_and_synthetic_folders(sampled, root, synthetic_into: dict[str, int]):
    """A class-folder source: 12 real noise images per class plus renamed synthetic PNGs."""
    _, out = sampled
    table = pd.read_csv(out / "labels.csv", dtype=str)
    rng = np.random.default_rng(0)
    for name in ("0", "1"):
        (root / name).mkdir(parents=True)
        for j in range(12):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(root / name / f"real_{j}.png")
        rows = table[table["label"] == name].head(synthetic_into.get(name, 0))
        for k, image in enumerate(rows["image"]):
            shutil.copy(out / "images" / f"{image}.png", root / name / f"scan_{k}.png")  # renamed: nothing says syn_
    return root


def test_prepare_puts_marked_files_in_train_whatever_folder_they_sit_in(sampled, tmp_path):
    source = _real_and_synthetic_folders(sampled, tmp_path / "source", {"0": 4, "1": 4})
    result = prepare(PrepareConfig(source=source, out=tmp_path / "prepared", size=16, workers=1,
                                   near_duplicate_threshold=0), progress=False)
    index = pd.read_csv(result.out / "index.csv")
    synthetic = index[index["synthetic"] == 1]
    assert sorted(synthetic["id"]) == sorted(f"{name}/scan_{k}" for k in range(4) for name in ("0", "1"))
    assert set(synthetic["split"]) == {"train"}
    real = index[index["synthetic"] != 1]
    assert {"val", "test"} <= set(real["split"])  # the real images are still split as before


def test_prepare_refuses_a_synthetic_file_the_source_puts_in_test(sampled, tmp_path):
    _, out = sampled
    source = tmp_path / "source"
    shutil.copytree(out / "images", source / "images")
    table = pd.read_csv(out / "labels.csv", dtype=str)[["image", "label"]]
    table["split"] = ["train"] * 6 + ["test"] * 2
    table.to_csv(source / "labels.csv", index=False)
    bad = table["image"].iloc[6]
    with pytest.raises(MedisynthError, match=rf"{bad}\.png.*synthetic image.*test split"):
        prepare(PrepareConfig(source=source, out=tmp_path / "prepared", size=16, workers=1), progress=False)
    assert not (tmp_path / "prepared").exists()


def test_a_sampled_folder_prepares_into_train_only(sampled, tmp_path):
    """The sampler's own folder (labels.csv says synthetic) round-trips through prepare: same pixels, labels."""
    _, out = sampled
    result = prepare(PrepareConfig(source=out, out=tmp_path / "prepared", size=16, workers=1), progress=False)
    index = pd.read_csv(result.out / "index.csv", dtype={"class_name": str})
    assert set(index["split"]) == {"train"} and (index["synthetic"] == 1).all()
    table = pd.read_csv(out / "labels.csv", dtype=str).set_index("image")
    assert list(index["class_name"]) == list(table.loc[index["id"], "label"])
    images = np.load(result.out / "images-00000.npy")
    for row in index.itertuples():
        assert np.array_equal(images[row.row], read_image(out / "images" / f"{row.id}.png"))
