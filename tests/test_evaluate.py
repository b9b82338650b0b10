"""End-to-end evaluate on a toy prepared set: metrics.json schema, report.html (and in Chromium), errors."""
from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medisynth.errors import MedisynthError
from medisynth.evaluation import SCHEMA, EvaluateConfig, evaluate
from medisynth.downstream.toy import toy_images, write_image_folder, write_prepared

SECTIONS = ("verdict", "overview", "distribution", "detectability", "per-class", "pixel", "memorization", "plots", "training")
CLASSES = ["healthy", "sick"]


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    labels = [0] * 30 + [1] * 30 + [0, 1] * 6
    splits = ["train"] * 60 + ["val"] * 6 + ["test"] * 6
    images = toy_images(labels, size=32, channels=3, seed=0)
    write_prepared(root / "real", images, labels, splits, CLASSES)
    fake_labels = [0] * 24 + [1] * 24
    fake = toy_images(fake_labels, size=32, channels=3, seed=1)
    fake[:3] = images[:3]  # three exact copies of training images (class 0)
    write_image_folder(root / "fake", fake, [CLASSES[k] for k in fake_labels])
    return root


def _config(toy, out, **kw):
    base = dict(real=toy / "real", fake=toy / "fake", out=out, feature_spaces=("inception", "domain", "pixels"),
                domain_epochs=1, ssl_steps=20, cache_dir=toy / "cache", min_class_samples=10, kid_subsets=5, kid_subset_size=50,
                diversity_pairs=20, progress=False, device="cpu")
    base.update(kw)
    return EvaluateConfig(**base)


@pytest.fixture(scope="module")
def report(toy):
    mp = pytest.MonkeyPatch()
    mp.delenv("MEDISYNTH_INCEPTION_WEIGHTS", raising=False)
    lines: list[str] = []
    metrics = evaluate(_config(toy, toy / "report"), log=lines.append)
    mp.undo()
    return toy / "report", metrics, lines


def _finite_numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _finite_numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _finite_numbers(v)
    elif isinstance(obj, float):
        yield obj


def test_metrics_json_follows_the_schema(report):
    out, metrics, _ = report
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["schema"] == SCHEMA == "medisynth.metrics/2"
    for key in ("inputs", "config", "feature_spaces", "distribution", "per_class", "cas", "detectability", "pixel", "diversity",
                "memorization", "training", "verdict", "warnings", "timings_s"):
        assert key in on_disk, key
    assert on_disk["inputs"]["n_fake"] == 48 and on_disk["inputs"]["n_train"] == 60 and on_disk["inputs"]["n_heldout"] == 12
    assert all(math.isfinite(x) for x in _finite_numbers(on_disk))  # never NaN / inf in the file


def test_inception_without_weights_is_skipped_and_recorded(report):
    _, metrics, lines = report
    spaces = metrics["feature_spaces"]
    assert spaces["inception"]["status"] == "skipped" and "--weights" in spaces["inception"]["reason"]
    assert spaces["domain"]["status"] == "ok" and spaces["pixels"]["status"] == "ok"
    assert "inception" not in metrics["distribution"]
    assert sum("inception skipped" in line for line in lines) == 1


def test_distribution_per_class_and_cas(report):
    _, metrics, _ = report
    for space in ("domain", "pixels"):
        d = metrics["distribution"][space]
        assert d["fid"] >= 0 and 0 <= d["precision"] <= 1 and 0 <= d["coverage"] <= 1
    assert metrics["distribution"]["domain"]["is_mean"] >= 1.0
    assert set(metrics["per_class"]) == set(CLASSES)
    assert metrics["per_class"]["sick"]["distribution"]["pixels"]["fid"] >= 0
    cas = metrics["cas"]
    assert cas["available"] and 0 <= cas["overall"] <= 1 and set(cas["per_class"]) == set(CLASSES)
    assert cas["real_heldout_accuracy"] is not None


def test_detectability_per_space_with_the_heldout_yardstick(report):
    _, metrics, _ = report
    found = metrics["detectability"]
    assert set(found) == set(metrics["distribution"]) >= {"domain", "pixels"}  # ssl joins when domain is at chance
    for space, d in found.items():
        synthetic, heldout = d["synthetic"], d["heldout"]
        assert synthetic["available"] and heldout["available"], space
        assert synthetic["n_per_set"] == 48 and heldout["n_per_set"] == 12  # the smaller set's size: 48 synthetic, 12 held-out
        for r in (synthetic, heldout):
            assert 0 <= r["detectability"] <= 1 and r["chance"]["chance"] == 0.5 and r["chance"]["n"] == 2 * r["n_per_set"]
    assert "detectability" in metrics["timings_s"]


def test_heldout_images_unlike_the_training_ones_are_warned_about(report, tmp_path):
    _, metrics, _ = report
    assert not any("held-out REAL images from the training images" in w for w in metrics["warnings"])
    # the same toy set, but its val and test images come from elsewhere (inverted intensities: another "scanner")
    labels = [0] * 30 + [1] * 30 + [0, 1] * 6
    splits = ["train"] * 60 + ["val"] * 6 + ["test"] * 6
    images = toy_images(labels, size=32, channels=3, seed=0)
    images[60:] = 255 - images[60:]
    write_prepared(tmp_path / "real", images, labels, splits, CLASSES)
    shifted = evaluate(_config(tmp_path, tmp_path / "r", real=tmp_path / "real", fake=report[0].parent / "fake",
                               feature_spaces=("pixels",)), log=lambda _: None)
    heldout = shifted["detectability"]["pixels"]["heldout"]
    assert heldout["detectability"] >= 0.9 and heldout["chance"]["better_than_chance"]
    assert sum("pixels: a classifier tells the held-out REAL images from the training images" in w
               for w in shifted["warnings"]) == 1
    # images from elsewhere would make a large yardstick that flatters the synthetic figures: halves instead
    assert shifted["distribution"]["pixels"]["yardstick"]["method"] == "halves"
    assert shifted["pixel"]["yardstick"]["method"] == "halves"
    for yardstick in (shifted["distribution"]["pixels"]["yardstick"], shifted["pixel"]["yardstick"]):
        assert yardstick["description"].endswith("not the held-out images: a classifier tells them from the training "
                                                 "images in the pixels space (see warnings)")
    assert "not the held-out images" in (tmp_path / "r" / "report.html").read_text()  # the report's yardstick note
    faithful = {a["question"]: a for a in shifted["verdict"]["answers"]}["faithful"]
    assert faithful["yardstick_label"].endswith("images a set, real halves")  # on the verdict card, the first screen
    assert metrics["distribution"]["pixels"]["yardstick"]["method"] == "heldout"  # the toy set's own held-out images
    assert metrics["pixel"]["yardstick"]["method"] == "heldout"
    from medisynth.evaluation import summary_lines

    terminal = summary_lines(shifted)  # what the CLI prints
    assert any(line.startswith("  pixels: synthetic vs real-vs-real (halves of the reference images) at ") for line in terminal)
    assert sum(line.startswith("warning: pixels: a classifier tells the held-out REAL images") for line in terminal) == 1


def test_detectability_is_unavailable_with_a_reason_when_a_set_is_tiny(toy, tmp_path):
    metrics = evaluate(_config(toy, tmp_path / "r", feature_spaces=("pixels",), real_split="test"),
                       log=lambda _: None)
    found = metrics["detectability"]["pixels"]
    assert found["synthetic"] == {"available": False, "reason": found["synthetic"]["reason"]}
    assert "at least 10 vectors" in found["synthetic"]["reason"] and "heldout" not in found  # the test split is the reference


def test_pixel_diversity_and_memorization(report):
    _, metrics, _ = report
    assert 0 < metrics["pixel"]["ssim_nearest_mean"] <= 1 and metrics["pixel"]["mean_image_mse"] >= 0
    assert metrics["diversity"]["fake"]["scales"] == 2  # 32 px: 2 MS-SSIM scales
    mem = metrics["memorization"]
    assert mem["pixel"]["num_flagged"] >= 3
    flagged_pairs = {(f["fake"], f["train"]) for f in mem["flagged"]}
    assert {("syn00000", "img00000"), ("syn00001", "img00001"), ("syn00002", "img00002")} <= flagged_pairs
    assert mem["feature"]["space"] == "domain" and mem["pixel"]["heldout_fraction_flagged"] is not None
    # near_copies.csv: every synthetic image, its nearest training image and unit, similarity, alignment, flag
    out = report[0]
    table = pd.read_csv(out / "near_copies.csv")
    assert sorted(table["image"]) == sorted(f"syn{i:05d}" for i in range(48))
    assert set(table.columns) >= {"image", "nearest_train", "train_unit", "similarity", "transform", "flagged"}
    rows = table.set_index("image")
    assert rows.loc["syn00000", "nearest_train"] == "img00000" and rows.loc["syn00000", "transform"] == "identity"
    assert rows["flagged"].sum() == mem["pixel"]["num_flagged"]


def test_report_html_is_self_contained(report):
    out, _, _ = report
    page = (out / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing fetched from the network
    assert "<script" not in page
    assert page.count("data:image/png;base64,") >= 6
    assert (out / "plots" / "grid_fake.png").is_file() and (out / "plots" / "pca-domain.png").is_file()


def test_report_renders_in_headless_chromium(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    out, _, _ = report
    args = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", (out / "report.html").resolve().as_uri()]
    dom = subprocess.run(args, capture_output=True, text=True, timeout=120).stdout
    for section in SECTIONS:
        assert f'id="{section}"' in dom
    assert "Distribution metrics" in dom


@pytest.mark.parametrize("layout", ["no labels.csv", "labels 'unlabelled'"])
def test_unlabelled_folder_gives_no_per_class(toy, tmp_path, layout):
    folder = tmp_path / "unlabelled"
    shutil.copytree(toy / "fake" / "images", folder / "images")
    if layout != "no labels.csv":
        ids = sorted(p.stem for p in (folder / "images").iterdir())
        (folder / "labels.csv").write_text("image,label\n" + "".join(f"{i},unlabelled\n" for i in ids))
    metrics = evaluate(_config(toy, tmp_path / "r", fake=folder, feature_spaces=("pixels",)), log=lambda s: None)
    assert metrics["per_class"] is None and metrics["cas"]["available"] is False
    assert metrics["inputs"]["n_fake"] == 48


@pytest.mark.parametrize("problem,match", [
    ("unknown_label", "not a class of the real data set"),
    ("missing_image", "does not exist"),
    ("missing_column", "missing column"),
    ("no_fake", "not found"),
])
def test_bad_fake_folder_is_one_clear_error(toy, tmp_path, problem, match):
    folder = tmp_path / "fake"
    if problem != "no_fake":
        shutil.copytree(toy / "fake", folder)
        table = (folder / "labels.csv").read_text().splitlines()
        if problem == "unknown_label":
            table[1] = table[1].replace("healthy", "Cyst")
        elif problem == "missing_image":
            (folder / "images" / "syn00005.png").unlink()
        else:
            table = [line.split(",")[0] for line in table]
        (folder / "labels.csv").write_text("\n".join(table) + "\n")
    with pytest.raises(MedisynthError, match=match):
        evaluate(_config(toy, tmp_path / "r", fake=folder, feature_spaces=("pixels",)), log=lambda s: None)
    assert not (tmp_path / "r").exists()


def test_existing_output_needs_overwrite(report, toy):
    out, _, _ = report
    with pytest.raises(MedisynthError, match="--overwrite"):
        evaluate(_config(toy, out, feature_spaces=("pixels",)), log=lambda s: None)


def test_cli_evaluate(toy, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from medisynth.cli import app

    monkeypatch.delenv("MEDISYNTH_INCEPTION_WEIGHTS", raising=False)
    out = tmp_path / "cli-report"
    result = CliRunner().invoke(app, ["evaluate", str(toy / "real"), "--synthetic", str(toy / "fake"), "--out", str(out),
                                      "--features", "inception,pixels", "--kid-subsets", "3", "--min-class-samples", "10"])
    assert result.exit_code == 0, result.output
    assert "Verdict (feature space: pixels):" in result.output and "Faithful" in result.output
    assert "inception skipped" in result.output and "pixels: synthetic vs real-vs-real (held-out images) at 12 images: fid" in result.output
    assert re.search(r"real or synthetic\? pixels: told apart [0-9.]+ of the time \(0\.5 = indistinguishable, p=[^)]+\); "
                     r"held-out real vs training: [0-9.]+", result.output)
    assert json.loads((out / "metrics.json").read_text())["feature_spaces"]["inception"]["status"] == "skipped"


def test_fake_given_as_a_run_is_sampled_and_its_curves_shown(tmp_path):
    from medisynth.training import toy as toy_training
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    data = toy_training.write_toy_dataset(tmp_path / "data")
    run = tmp_path / "run"
    train(TrainConfig(data=data, model="toy-cgan", out=run, steps=6, batch_size=4, log_every=2, sample_every=0,
                      checkpoint_every=1000, device="cpu", progress=False))
    out = tmp_path / "report"
    metrics = evaluate(EvaluateConfig(real=data, fake=run, out=out, feature_spaces=("pixels",), num_per_class=8,
                                      min_class_samples=6, kid_subsets=3, diversity_pairs=10, progress=False, device="cpu"),
                       log=lambda s: None)
    assert metrics["inputs"]["fake_kind"] == "run"
    assert sum(metrics["inputs"]["fake_class_counts"].values()) == 8 * len(metrics["inputs"]["class_names"])
    assert metrics["training"]["run"] == str(run) and metrics["training"]["logged_keys"]
    assert (out / "plots" / "loss_curves.png").is_file()
    assert "Logged training curves" in (out / "report.html").read_text()


def test_the_domain_classifier_recipe_is_the_users_and_recorded(toy, tmp_path):
    metrics = evaluate(_config(toy, tmp_path / "r", feature_spaces=("domain", "pixels"), domain_width=8,
                               domain_augment="none", cache_dir=tmp_path / "cache"))
    space = metrics["feature_spaces"]["domain"]
    assert (space["classifier_epochs"], space["classifier_width"], space["classifier_augment"]) == (1, 8, "none")
    assert [p.name for p in (tmp_path / "cache" / "classifiers").glob("*.json")][0].endswith("-e1-w8-b64-none.json")
    assert metrics["cas"]["domain_chance"]["metric"] == "balanced"
