"""``run_utility`` end to end on toy data (tiny network, one or two epochs) and the CLI."""
from __future__ import annotations

import json

import pytest

from medisynth.errors import MedisynthError
from medisynth.downstream import UtilityConfig, run_utility
from medisynth.downstream.toy import toy_images, write_image_folder, write_toy_prepared


@pytest.fixture()
def folders(tmp_path):
    write_toy_prepared(tmp_path / "real", {"train": [8, 4, 2], "val": [2, 2, 2], "test": [3, 3, 0]})
    labels = [0] * 4 + [1] * 6 + [2] * 6
    write_image_folder(tmp_path / "syn", toy_images(labels, 16, 3, seed=5), [str(k) for k in labels])
    return tmp_path


def _config(folders, **kw):
    defaults = dict(real=folders / "real", synthetic=folders / "syn", out=folders / "report", seeds=2, epochs=2,
                    batch_size=4, width=4, device="cpu", progress=False, bootstrap=50)
    return UtilityConfig(**{**defaults, **kw})


def test_run_utility_writes_report(folders):
    results = run_utility(_config(folders, protocols=("real", "real-aug", "real+synthetic", "synthetic")))
    assert len(results["runs"]) == 8
    assert {r["protocol"] for r in results["runs"]} == {"real", "real-aug", "real+synthetic", "synthetic"}
    for r in results["runs"]:
        expected_synthetic = {"real": 0, "real-aug": 0, "real+synthetic": 10, "synthetic": 16}[r["protocol"]]
        assert r["train_synthetic"] == expected_synthetic
        assert r["metrics"]["n"] == 6 and r["metrics"]["classes_absent_from_test"] == [2]
    summary = results["summary"]["real+synthetic"]["balanced_accuracy"]
    assert len(summary["values"]) == 2 and summary["std"] is not None
    comparison = results["comparisons"]["real+synthetic vs real"]
    assert comparison["balanced_accuracy"]["n_pairs"] == 2
    assert "seed0_bootstrap_balanced_accuracy" in comparison and "seed0_mcnemar" in comparison
    assert any("low statistical power" in n for n in results["notes"])
    report = folders / "report"
    assert sorted(p.name for p in report.iterdir()) == [".medisynth.json", "utility.html", "utility.json", "utility.md", "utility.png"]
    assert json.loads((report / "utility.json").read_text())["config"]["seeds"] == 2
    assert "data:image/png;base64," in (report / "utility.html").read_text()
    assert "| real+synthetic |" in (report / "utility.md").read_text()
    assert "scored on the real test split" in (report / "utility.html").read_text()


def test_every_protocol_trains_the_same_steps_whatever_its_set_size(folders):
    # 14 real training images, 24 in real + synthetic, 16 synthetic, 30 in the balanced mix: each epoch
    # draws 14 (3 batches of 4)
    results = run_utility(_config(folders, protocols=("real", "real-balanced", "real+synthetic", "synthetic",
                                                      "real-balanced+synthetic")))
    assert {r["train_images"] for r in results["runs"]} == {14, 24, 16, 30}
    assert {r["steps"] for r in results["runs"]} == {2 * 3}
    # chance is judged on the figure the verdict compares: balanced accuracy against 1/K (3 classes, 2 in test)
    assert {(r["chance"]["metric"], r["chance"]["chance"]) for r in results["runs"]} == {("balanced", 0.5)}


def test_config_errors(folders):
    with pytest.raises(MedisynthError, match="unknown"):
        run_utility(_config(folders, protocols=("real", "gan-only")))
    with pytest.raises(MedisynthError, match="need --synthetic"):
        run_utility(_config(folders, synthetic=None, protocols=("real", "synthetic")))
    (folders / "report").mkdir()
    with pytest.raises(MedisynthError, match="already exists"):
        run_utility(_config(folders, protocols=("real",)))


def test_cli_utility(folders):
    from typer.testing import CliRunner

    from medisynth.cli import app

    result = CliRunner().invoke(app, [
        "utility", str(folders / "real"), "--synthetic", str(folders / "syn"), "--out",
        str(folders / "cli"), "--protocols", "real,real+synthetic", "--seeds", "1", "--epochs", "1",
        "--batch-size", "4", "--width", "4", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "real+synthetic" in result.output and (folders / "cli" / "utility.json").is_file()


def test_cli_utility_balanced_mix(folders, medisynth_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # a narrow terminal: the summary table must not cut the protocol's name
    args = ["utility", folders / "real", "--synthetic", folders / "syn", "--protocols",
            "real-balanced,real-balanced+synthetic", "--seeds", "2", "--epochs", "1", "--batch-size", "4",
            "--width", "4", "--device", "cpu", "--no-progress"]
    code, output = medisynth_cli(*args, "--out", folders / "mix")
    assert code == 0, output
    assert "│ real-balanced+synthetic │" in output
    runs = json.loads((folders / "mix" / "utility.json").read_text())["runs"]
    assert {(r["protocol"], r["train_synthetic"]) for r in runs} == {("real-balanced", 0), ("real-balanced+synthetic", 16)}
    assert len(runs) == 4
    # a synthetic folder without class 0 (as `medisynth balance` writes for the majority class): one error line
    write_image_folder(folders / "no0", toy_images([1, 2], 16, 3, seed=6), ["1", "2"])
    code, output = medisynth_cli(*args[:3], folders / "no0", *args[4:], "--out", folders / "bad")
    lines = output.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), output
    assert "has none of 0" in lines[0] and "--per-class" in lines[0]
    assert not (folders / "bad").exists()


def test_a_synthetic_set_the_balanced_mix_cannot_use_is_refused_before_any_classifier_trains(folders, monkeypatch):
    import medisynth.downstream.run as run

    write_image_folder(folders / "no0", toy_images([1, 2], 16, 3, seed=6), ["1", "2"])
    monkeypatch.setattr(run, "fit_protocol", lambda *a, **k: pytest.fail("a classifier trained before the check"))
    with pytest.raises(MedisynthError, match="has none of 0"):
        run_utility(_config(folders, synthetic=folders / "no0", protocols=("real-balanced", "real-balanced+synthetic")))
    assert not (folders / "report").exists()


def test_random_weight_resnet18_is_named_in_the_report(folders):
    """resnet18 without --weights trains from random weights: the report says so (it used to be silent)."""
    run_utility(_config(folders, model="resnet18", protocols=("real",), seeds=1, epochs=1))
    report = folders / "report"
    assert "start from random weights" in (report / "utility.md").read_text()
    assert any("random weights" in n for n in json.loads((report / "utility.json").read_text())["notes"])


def test_an_external_test_set_replaces_the_test_split(folders):
    # every image of a second prepared set, whatever its own splits, is the test set
    write_toy_prepared(folders / "external", {"train": [2, 2, 2], "val": [1, 1, 1], "test": [1, 1, 2]}, seed=7)
    results = run_utility(_config(folders, protocols=("real", "real+synthetic"), test_data=folders / "external"))
    assert {r["metrics"]["n"] for r in results["runs"]} == {13}
    assert {tuple(r["metrics"]["classes_absent_from_test"]) for r in results["runs"]} == {()}
    assert results["data"]["real"]["test"] == [4, 4, 5] and results["data"]["real"]["train"] == [8, 4, 2]
    assert any("an external test set" in n for n in results["notes"])
    assert json.loads((folders / "report" / "utility.json").read_text())["config"]["test_data"].endswith("external")
    # the report says where it scored in its opening lines, not only in the notes at the end
    external = f"scored on every image of {folders / 'external'} (an external test set)"
    assert external in (folders / "report" / "utility.md").read_text()
    assert external in (folders / "report" / "utility.html").read_text()


def test_an_external_test_set_must_match_the_classes_and_hold_no_training_image(folders):
    write_toy_prepared(folders / "two", {"train": [2, 2], "val": [1, 1], "test": [1, 1]}, seed=7)
    with pytest.raises(MedisynthError, match=r"--test-data .*two: classes \['0', '1'\].*--classes 0,1,2"):
        run_utility(_config(folders, protocols=("real",), test_data=folders / "two"))
    with pytest.raises(MedisynthError, match="14 of its 26 images are pixel-identical to training images"):
        run_utility(_config(folders, protocols=("real",), test_data=folders / "real"))
    with pytest.raises(MedisynthError, match="not a prepared data set"):
        run_utility(_config(folders, protocols=("real",), test_data=folders / "syn"))
    assert not (folders / "report").exists()  # refused before any classifier trained or anything was written


def test_cli_utility_with_an_external_test_set(folders):
    from typer.testing import CliRunner

    from medisynth.cli import app

    write_toy_prepared(folders / "external", {"train": [3, 3, 3]}, seed=7)
    result = CliRunner().invoke(app, [
        "utility", str(folders / "real"), "--test-data", str(folders / "external"), "--out", str(folders / "cli"),
        "--protocols", "real", "--seeds", "1", "--epochs", "1", "--batch-size", "4", "--width", "4", "--device", "cpu",
        "--no-progress"])
    assert result.exit_code == 0, result.output
    run = json.loads((folders / "cli" / "utility.json").read_text())["runs"][0]
    assert run["metrics"]["n"] == 9


def test_cli_utility_oversampling_with_augmentation_is_a_baseline_the_verdict_weighs(folders, medisynth_cli):
    import numpy as np

    code, output = medisynth_cli(
        "utility", folders / "real", "--synthetic", folders / "syn", "--protocols",
        "real-balanced,real-balanced-aug,real-balanced+synthetic", "--verdict-protocol", "real-balanced+synthetic",
        "--seeds", "2", "--epochs", "1", "--batch-size", "4", "--width", "4", "--device", "cpu", "--no-progress",
        "--out", folders / "aug")
    assert code == 0, output
    results = json.loads((folders / "aug" / "utility.json").read_text())
    runs = results["runs"]
    assert {(r["protocol"], r["train_synthetic"]) for r in runs} >= {("real-balanced-aug", 0)}
    means = {p: np.mean([r["metrics"]["balanced_accuracy"] for r in runs if r["protocol"] == p])
             for p in ("real-balanced", "real-balanced-aug")}
    verdict = results["verdict"]
    if verdict.get("baseline"):  # None only when the verdict cannot compare (chance): then it says why
        assert means[verdict["baseline"]] == max(means.values())
    else:
        assert verdict["answer"] == "cannot tell", verdict
