"""benchmarks/bench_heldout_utility.py: bench_quality's smoke records scored again on a fresh held-out phantom set."""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_heldout_utility.py"


@pytest.fixture(scope="module")
def heldout():
    spec = importlib.util.spec_from_file_location("bench_heldout_utility", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)  # loads bench_quality into sys.modules beside it
        yield module
    finally:
        sys.modules.pop("bench_quality", None)


@pytest.fixture(scope="module")
def smoke_work(heldout, tmp_path_factory):
    """bench_quality --smoke's work folder: cgan and dcgan records on the tiny phantom set, seeds 0 and 1."""
    work = tmp_path_factory.mktemp("bq")
    assert heldout.bench.main(["--smoke", "--work", str(work)]) == 0
    return work


def smoke_args(work: Path, results: Path, *extra: str) -> list[str]:
    return ["--smoke", "--data", "phantom-smoke", "--work", str(work), "--bench-results", str(work / "results.json"),
            "--results", str(results), "--per-class", "4", *extra]


@pytest.mark.slow
def test_records_are_scored_on_the_held_out_set_with_their_own_samples(heldout, smoke_work, tmp_path, capsys):
    results_path = tmp_path / "heldout.json"
    assert heldout.main(smoke_args(smoke_work, results_path, "--models", "cgan", "--seeds", "0,1")) == 0
    results = json.loads(results_path.read_text())
    assert sorted((r["model"], r["seed"]) for r in results["records"]) == [("cgan", 0), ("cgan", 1)]
    assert len(results["baselines"]) == 2  # one oversampling classifier per seed, shared by the models
    source = {r["seed"]: r for r in json.loads((smoke_work / "results.json").read_text())["records"]
              if r["model"] == "cgan"}
    for r in results["records"]:
        assert r["test_counts"] == [4] * 5 and r["steps"] == source[r["seed"]]["train"]["steps"]
        for key in ("oversampled", "real_synthetic", "balanced_mix"):
            assert math.isfinite(r["measures"][f"{key}_balanced_accuracy"])
            assert r["utility"][key]["chance"]["n"] == 20  # scored on the 4 x 5 held-out images
        assert r["utility"]["real_synthetic"]["train_synthetic"] > 0 and r["utility"]["oversampled"]["train_synthetic"] == 0
    table = capsys.readouterr().out
    assert "| phantom-smoke | 0.05 | cgan | 0, 1 | 4 / 4 / 4 / 4 / 4 |" in table


@pytest.mark.slow
def test_rescore_trains_again_only_the_classifiers_that_stopped_at_chance(heldout, smoke_work, tmp_path, capsys):
    results_path = tmp_path / "heldout.json"
    args = smoke_args(smoke_work, results_path, "--models", "cgan", "--seeds", "0,")
    assert heldout.main(args) == 0
    original = json.loads(results_path.read_text())["records"][0]
    tampered = json.loads(results_path.read_text())
    utility = tampered["records"][0]["utility"]
    utility["real_synthetic"]["metrics"]["balanced_accuracy"] = 0.555  # a figure that learned: kept as it is
    utility["balanced_mix"].update(stopped="patience", best_val_balanced_accuracy=0.2)  # 5 grades: at chance
    utility["balanced_mix"]["metrics"]["balanced_accuracy"] = 0.777
    results_path.write_text(json.dumps(tampered))
    assert heldout.main([*args, "--rescore"]) == 0
    after = json.loads(results_path.read_text())["records"]
    assert len(after) == 1
    assert after[0]["measures"]["real_synthetic_balanced_accuracy"] == 0.555
    # trained again with its seed: the figure the first run trained, which had not stopped at chance
    assert after[0]["utility"]["balanced_mix"]["metrics"] == original["utility"]["balanced_mix"]["metrics"]
    assert after[0]["utility"]["oversampled"] == original["utility"]["oversampled"]
    capsys.readouterr()
    assert heldout.main([*args, "--rescore"]) == 0  # nothing at chance any more: nothing trains
    assert "no classifier of its held-out record stopped at chance; kept" in capsys.readouterr().err


@pytest.mark.slow
def test_held_out_eyes_are_new_images_prepared_like_the_training_set(heldout, smoke_work):
    import medisynth as ms

    training = smoke_work / "data" / "phantom-p8-4-2-2-2-n100-32px"
    held = heldout.prepare_heldout(smoke_work, training, per_class=4, size=32)
    a, b = ms.Manifest.load(training), ms.Manifest.load(held)
    assert (a.class_names, a.image_size, a.channels) == (b.class_names, b.image_size, b.channels)
    train_images = ms.PreparedDataset(training, split=None).images_uint8().reshape(-1, 32 * 32 * 3)
    held_images = ms.PreparedDataset(held, split=None).images_uint8().reshape(-1, 32 * 32 * 3)
    assert len(held_images) == 20
    assert not (held_images[:, None, :] == train_images[None, :, :]).all(axis=2).any()  # no image of the training set
    assert len(np.unique(held_images, axis=0)) == 20


@pytest.mark.slow
def test_a_run_folder_holding_another_run_is_skipped(heldout, smoke_work, tmp_path, capsys):
    bench_results = json.loads((smoke_work / "results.json").read_text())
    for r in bench_results["records"]:
        r["train"]["steps"] += 1  # as if the folder had been trained again since
    changed = tmp_path / "bench.json"
    changed.write_text(json.dumps(bench_results))
    args = smoke_args(smoke_work, tmp_path / "heldout.json", "--models", "cgan", "--seeds", "0,")
    args[args.index("--bench-results") + 1] = str(changed)
    assert heldout.main(args) == 0
    assert "holds a run of" in capsys.readouterr().err
    assert not (tmp_path / "heldout.json").exists()  # nothing trained, nothing recorded


@pytest.mark.parametrize("flags, message", [(["--per-class", "0"], "--per-class 0"),
                                            (["--models", "dcgan"], "one generator per class")])
def test_bad_flags_are_one_line_errors(heldout, tmp_path, capsys, flags, message):
    assert heldout.main(["--work", str(tmp_path), "--results", str(tmp_path / "h.json"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
