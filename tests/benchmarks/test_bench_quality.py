"""benchmarks/bench_quality.py: the smoke run end to end, and the table built from a results file."""
from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch

from medisynth.errors import MedisynthError

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_quality.py"
MEASURES = ("kid", "precision", "recall", "cas_accuracy", "cas_balanced_accuracy", "near_copy_share", "detectability",
            "oversampled_balanced_accuracy", "real_synthetic_balanced_accuracy", "balanced_accuracy_difference",
            "balanced_mix_balanced_accuracy")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.mark.slow
def test_smoke_run_writes_every_measure_finite(bench, tmp_path, capsys):
    assert bench.main(["--smoke", "--work", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    records = results["records"]
    assert sorted((r["model"], r["seed"]) for r in records) == [("cgan", 0), ("cgan", 1), ("dcgan", 0), ("dcgan", 1)]
    for r in records:
        assert r["budget_minutes"] == 0.05 and r["device_kind"] == "cpu" and r["device"].startswith("CPU")
        for key in MEASURES:
            assert math.isfinite(r["measures"][key]), (r["model"], key)
        assert r["train"]["steps"] >= 1 and (tmp_path / r["grid"]).is_file()
    assert {r["per_class"] for r in records if r["model"] == "dcgan"} == {True}
    assert {r["train"]["class_draws"] for r in records} == {"uniform"}  # what the run folder's config.json says
    reference = results["references"]["phantom-smoke"]["measures"]
    assert all(math.isfinite(reference[k]) for k in ("kid", "precision", "recall", "cas_accuracy", "near_copy_share",
                                                     "detectability"))
    assert all(0 <= r["measures"]["detectability"] <= 1 for r in records)

    table = (tmp_path / "results.md").read_text()
    assert table in capsys.readouterr().out
    for header, _, _ in bench.COLUMNS:
        assert header in table
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines() if line.startswith("| ")}
    for model in ("cgan", "dcgan"):
        cells = rows[model].strip("| ").split(" | ")
        assert cells[1] == "2"  # seeds
        numbers = [float(c.split(" ± ")[0]) for c in cells[3:3 + len(bench.COLUMNS)]]
        assert all(math.isfinite(x) for x in numbers)
        assert "[" in cells[-3] and "[" in cells[-2] and "grids/" in cells[-1]  # top-up's and mix's CIs, the grid link

    # the table alone lists every benchmark model: those not run (or not in this checkout) say so
    assert bench.main(["--table", "--results", str(tmp_path / "results.json")]) == 0
    table = (tmp_path / "results.md").read_text()
    for key in bench.MODELS:
        assert f"| {key} |" in table
    assert "| fastgan | 0 |" in table and "not run:" in table.split("| fastgan |")[1].splitlines()[0]

    # --rescore judges the saved samples again without training: a measure made before it existed is filled in,
    # a changed one restored, the utility figures kept as they were, but one whose classifier early stopping ended
    # at chance (before CLASSIFIER_VERSION 4) trained again
    path = tmp_path / "results.json"
    before = json.loads(path.read_text())
    tampered = json.loads(path.read_text())
    target = next(r for r in tampered["records"] if (r["model"], r["seed"]) == ("cgan", 0))
    del target["measures"]["detectability"]
    target["measures"]["kid"] = 999.0
    target["utility"]["oversampled"]["metrics"]["balanced_accuracy"] = 0.123  # a utility figure: must survive untouched
    at_chance = next(r for r in tampered["records"] if (r["model"], r["seed"]) == ("dcgan", 0))["utility"]
    at_chance["real_synthetic"].update(stopped="patience", best_val_balanced_accuracy=0.2)  # 5 grades: at chance
    at_chance["real_synthetic"]["metrics"]["balanced_accuracy"] = 0.777
    untrained = next(r for r in tampered["records"] if (r["model"], r["seed"]) == ("dcgan", 1))
    del untrained["measures"]["balanced_mix_balanced_accuracy"]  # a record made before the mix: trained now
    del untrained["utility"]["balanced_mix"]
    path.write_text(json.dumps(tampered))
    assert "| cgan | 2 |" in bench.make_table(tampered, ["cgan"], {})  # an old record without the measure still tabulates
    assert bench.main(["--smoke", "--rescore", "--work", str(tmp_path)]) == 0
    after = {(r["model"], r["seed"]): r for r in json.loads(path.read_text())["records"]}
    original = {(r["model"], r["seed"]): r for r in before["records"]}
    assert set(after) == set(original)
    for key, r in after.items():
        assert "rescored" in r and r["train"] == original[key]["train"]  # not trained again
        for measure in ("kid", "precision", "recall", "cas_accuracy", "near_copy_share", "detectability"):
            assert r["measures"][measure] == pytest.approx(original[key]["measures"][measure], abs=1e-9), (key, measure)
    assert after[("cgan", 0)]["measures"]["oversampled_balanced_accuracy"] == 0.123
    # trained again: the seed fixes it, so it is the figure the record's run trained (which had not stopped at chance)
    retrained, first = after[("dcgan", 0)]["utility"]["real_synthetic"], original[("dcgan", 0)]["utility"]["real_synthetic"]
    assert (retrained["metrics"], retrained["best_epoch"]) == (first["metrics"], first["best_epoch"])
    assert after[("dcgan", 0)]["measures"]["real_synthetic_balanced_accuracy"] == \
        original[("dcgan", 0)]["measures"]["real_synthetic_balanced_accuracy"] != 0.777
    assert after[("dcgan", 1)]["measures"]["real_synthetic_balanced_accuracy"] == \
        original[("dcgan", 1)]["measures"]["real_synthetic_balanced_accuracy"]
    # the mix classifier trained by --rescore is the one the record's run trained: the seed fixes it
    assert after[("dcgan", 1)]["measures"]["balanced_mix_balanced_accuracy"] == \
        original[("dcgan", 1)]["measures"]["balanced_mix_balanced_accuracy"]
    assert after[("dcgan", 1)]["utility"]["balanced_mix"]["protocol"] == "real-balanced+synthetic"

    # a record whose sampling would take longer than --max-sampling-minutes is saved as not judged: why, the
    # estimate from its first batch, a grid of that batch, no measures; the table says so and --rescore leaves it
    assert bench.main(["--smoke", "--rerun", "--max-sampling-minutes", "1e-9", "--work", str(tmp_path)]) == 0
    records = json.loads(path.read_text())["records"]
    assert len(records) == 4
    for r in records:
        assert "measures" not in r and "--max-sampling-minutes" in r["not_judged"]
        # a smoke sample takes seconds: the reason gives them, not "about 0 min"
        assert re.search(r"would take about \d+ s \(the first \d+ took \d+ s\)", r["not_judged"]), r["not_judged"]
        first = r["sample"]["first_batch"]
        assert first["total_images"] > first["images"] >= 2 and first["estimated_seconds"] > 0
        assert (tmp_path / r["grid"]).is_file() and r["train"]["steps"] >= 1
    table = (tmp_path / "results.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| cgan |"))
    assert row.startswith("| cgan | 0 |") and "not judged (seed 0, 1): sampling" in row and "[first batch](" in row
    assert bench.main(["--smoke", "--rescore", "--work", str(tmp_path)]) == 0
    assert json.loads(path.read_text())["records"] == records

    # a step budget (--steps): records of their own beside the wall-clock ones, every run trained that many steps
    # (per-class runs share them), and a table of their own
    assert bench.main(["--smoke", "--steps", "10", "--max-sampling-minutes", "1e-9", "--work", str(tmp_path)]) == 0
    by_budget = {}
    for r in json.loads(path.read_text())["records"]:
        by_budget.setdefault(bench.record_budget(r), []).append(r)
    assert sorted(by_budget) == [("minutes", 0.05), ("steps", 10.0)] and len(by_budget[("steps", 10.0)]) == 4
    for r in by_budget[("steps", 10.0)]:
        assert r["budget_minutes"] is None and r["budget_steps"] == 10
        assert "10steps" in r["grid"] and (tmp_path / r["grid"]).is_file()
        if r["model"] == "cgan":
            assert r["train"]["steps"] == 10
    table = (tmp_path / "results.md").read_text()
    assert "### phantom-smoke: 10 steps of training per model" in table and "### phantom-smoke: 0.05 min" in table


def _record(model: str, seed: int, base: float, topped: float) -> dict:
    measures = {key: 0.5 for key in MEASURES}
    measures.update(oversampled_balanced_accuracy=base, real_synthetic_balanced_accuracy=topped,
                    balanced_accuracy_difference=topped - base)
    return {"model": model, "data": "ct", "budget_minutes": 2.0, "seed": seed, "device_kind": "cpu",
            "device": "CPU (x, 2 cores)", "machine": "m", "feature_space_id": "abc", "train": {"steps": 10},
            "settings": {"domain_epochs": 30, "clf_epochs": 30, "clf_minutes": None, "classifier_width": 32},
            "measures": measures, "grid": f"grids/ct_{model}_s{seed}.png"}


def test_table_pairs_seeds_and_gives_the_t_interval(bench):
    from scipy import stats

    base, topped = [0.70, 0.74, 0.72], [0.75, 0.76, 0.78]
    results = {"records": [_record("cgan", s, b, t) for s, (b, t) in enumerate(zip(base, topped))], "references": {}}
    table = bench.make_table(results, ["cgan", "fastgan"], {"fastgan": "model 'fastgan' is not registered"})
    diff = [t - b for b, t in zip(base, topped)]
    low, high = stats.t.interval(0.95, 2, loc=sum(diff) / 3, scale=stats.sem(diff))
    assert f"+{sum(diff) / 3:.3f} [{low:+.3f}, {high:+.3f}]" in table
    assert "| cgan | 3 |" in table
    assert "judge 30 epochs, utility 30 epochs, w 32" in table
    assert "not run: model 'fastgan' is not registered" in table


def test_step_and_minute_budgets_are_separate_records_and_tables(bench):
    minutes = _record("cgan", 0, 0.70, 0.75)
    steps = {**_record("cgan", 0, 0.70, 0.60), "budget_minutes": None, "budget_steps": 3000}
    assert bench.record_key(minutes) != bench.record_key(steps)
    assert bench.record_budget(minutes) == ("minutes", 2.0) and bench.record_budget(steps) == ("steps", 3000.0)
    assert bench.settings_budget(bench.Settings(minutes=2.0)) == ("minutes", 2.0)
    assert bench.settings_budget(bench.Settings(steps=3000)) == ("steps", 3000.0)
    table = bench.make_table({"records": [minutes, steps], "references": {}}, ["cgan"], {})
    sections = table.split("### ")[1:]
    assert [s.splitlines()[0].split(" per model")[0] for s in sections] == [
        "ct: 2 min of training", "ct: 3,000 steps of training"]
    assert all(s.count("| cgan | 1 |") == 1 for s in sections)


def test_table_gives_one_row_per_judge_when_records_were_judged_in_several_feature_spaces(bench):
    records = [_record("cgan", s, 0.70, 0.60) for s in range(3)]
    records[2]["feature_space_id"] = "def"  # a judge retrained on another machine
    for r, kid in zip(records, [0.1, 0.3, 5.0]):
        r["measures"]["kid"] = kid
    lines = bench.make_table({"records": records, "references": {}}, ["cgan"], {}).splitlines()
    rows = [line for line in lines if line.startswith("| cgan")]
    assert [row.split(" | ")[:2] for row in rows] == [["| cgan · judge abc", "2"], ["| cgan · judge def", "1"]]
    assert "0.2000 ± 0.1414" in rows[0] and "5.0000" in rows[1]  # never a mean over both judges
    assert any("2 different feature spaces (abc, def)" in line for line in lines)
    one_judge = bench.make_table({"records": records[:2], "references": {}}, ["cgan"], {})
    assert "| cgan | 2 |" in one_judge and "judge abc" not in one_judge


def test_table_gives_the_balanced_mix_difference_over_the_records_that_have_it(bench):
    records = [_record("cgan", s, b, 0.1) for s, b in enumerate([0.70, 0.74, 0.72])]
    del records[2]["measures"]["balanced_mix_balanced_accuracy"]  # a record made before the mix
    records[0]["measures"]["balanced_mix_balanced_accuracy"] = 0.75
    records[1]["measures"]["balanced_mix_balanced_accuracy"] = 0.70
    row = [line for line in bench.make_table({"records": records, "references": {}}, ["cgan"], {}).splitlines()
           if line.startswith("| cgan |")][0]
    cells = row.strip("| ").split(" | ")
    assert cells[-2] == "+0.005 [-0.567, +0.577]"  # (+0.05, -0.04) over the two seeds that have it
    assert cells[3 + [key for _, key, _ in bench.COLUMNS].index("balanced_mix_balanced_accuracy")] == "0.725 ± 0.035"


def test_table_counts_classifiers_above_chance_and_cannot_tell_when_none_is(bench):
    records = [_record("cgan", s, 0.25, 0.24) for s in range(2)]
    for r, (over, topped) in zip(records, [(False, False), (False, False)]):
        r["utility"] = {"oversampled": {"chance": {"metric": "balanced", "better_than_chance": over}},
                        "real_synthetic": {"chance": {"metric": "balanced", "better_than_chance": topped}}}
    row = [line for line in bench.make_table({"records": records, "references": {}}, ["cgan"], {}).splitlines()
           if line.startswith("| cgan |")][0]
    assert "| 0/2 · 0/2 |" in row and "cannot tell: both at chance" in row
    records[1]["utility"]["oversampled"]["chance"]["better_than_chance"] = True
    row = [line for line in bench.make_table({"records": records, "references": {}}, ["cgan"], {}).splitlines()
           if line.startswith("| cgan |")][0]
    assert "| 1/2 · 0/2 |" in row and "cannot tell" not in row
    # the balanced mix's difference follows the same rule
    for r, mixed in zip(records, (False, True)):
        r["utility"]["balanced_mix"] = {"chance": {"metric": "balanced", "better_than_chance": mixed}}
    records[1]["utility"]["oversampled"]["chance"]["better_than_chance"] = False
    cells = [line for line in bench.make_table({"records": records, "references": {}}, ["cgan"], {}).splitlines()
             if line.startswith("| cgan |")][0].strip("| ").split(" | ")
    assert cells[-3].endswith("cannot tell: both at chance") and "cannot tell" not in cells[-2]
    records[1]["utility"]["balanced_mix"]["chance"]["better_than_chance"] = False
    row = [line for line in bench.make_table({"records": records, "references": {}}, ["cgan"], {}).splitlines()
           if line.startswith("| cgan |")][0]
    assert row.split(" | ")[-2].endswith("cannot tell: both at chance")
    records[1]["utility"]["oversampled"]["chance"]["better_than_chance"] = True
    records[0]["utility"]["oversampled"]["chance"]["metric"] = "accuracy"  # a record of the earlier test: not counted
    row = [line for line in bench.make_table({"records": records, "references": {}}, ["cgan"], {}).splitlines()
           if line.startswith("| cgan |")][0]
    assert "| - · 0/2 |" in row


@pytest.mark.parametrize("seconds, text", [(0.4, "0 s"), (42.4, "42 s"), (59.4, "59 s"), (60, "1 min"),
                                           (6120, "102 min")])
def test_duration_gives_seconds_under_a_minute(bench, seconds, text):
    assert bench.duration(seconds) == text


def test_table_rows_have_a_cell_per_column_and_name_seeds_not_judged(bench):
    judged = _record("cgan", 0, 0.70, 0.75)
    unjudged = {key: value for key, value in _record("cgan", 1, 0.70, 0.75).items() if key != "measures"}
    unjudged["not_judged"] = "sampling 900 images would take about 102 min (the first 64 took 436 s), over 60"
    only_unjudged = {**unjudged, "model": "conv-cvae", "grid": "grids/ct_conv-cvae_s1.png"}
    table = bench.make_table({"records": [judged, unjudged, only_unjudged], "references": {}},
                             ["cgan", "conv-cvae", "fastgan"], {})
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    width = lines[0].count(" | ") + 1
    rows = {line.split(" | ")[0].lstrip("| "): line for line in lines[1:]}
    assert all(line.count(" | ") + 1 == width for line in lines), table  # the not-run row was one cell short once
    assert rows["cgan"].startswith("| cgan | 1 |")  # the judged seed alone is aggregated
    assert rows["cgan"].endswith("; seed 1 not judged: " + unjudged["not_judged"] + " |")
    assert rows["conv-cvae"].startswith("| conv-cvae | 0 | 10 |")
    assert "not judged (seed 1): " + unjudged["not_judged"] in rows["conv-cvae"]
    assert rows["conv-cvae"].endswith("[first batch](grids/ct_conv-cvae_s1.png) |")
    assert rows["fastgan"].endswith("| not run: not run yet |")


def test_bad_flags_are_one_line_errors(bench, tmp_path, capsys):
    assert bench.main(["--models", "nope", "--work", str(tmp_path)]) == 2
    assert bench.main(["--seeds", "two", "--work", str(tmp_path)]) == 2
    assert bench.main(["--data", "mri", "--work", str(tmp_path)]) == 2
    assert bench.main(["--max-sampling-minutes", "-1", "--work", str(tmp_path)]) == 2
    assert bench.main(["--minutes", "1", "--steps", "100", "--work", str(tmp_path)]) == 2  # one budget, not both
    assert bench.main(["--steps", "0", "--work", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 6 and all(line.startswith("error: --") for line in err)
    with pytest.raises(MedisynthError):
        bench.parse_seeds("-1,2")
    # a count of none most likely meant seed 0: the error says how to write one seed
    with pytest.raises(MedisynthError, match="for seed 0 alone write '0,'"):
        bench.parse_seeds("0")
    assert bench.parse_seeds("0,") == [0] and bench.parse_seeds("1") == [0] and bench.parse_seeds("1,") == [1]


def test_every_model_trains_with_its_own_defaults_as_a_user_would(bench):
    """fastgan's defaults are the demo's few-minute recipe: the benchmark judges what `medisynth train` gives."""
    assert all(m.batch_size is None for m in bench.MODELS.values())
    assert bench.MODELS["fastgan"].hyper_dict() == {}
    assert {key: m.class_draws for key, m in bench.MODELS.items() if m.class_draws != "uniform"} == {
        "fastgan-sqrt": "sqrt", "fastgan-balanced": "balanced"}


def test_table_goes_between_the_readme_markers_with_grid_links_relative_to_it(bench, tmp_path, capsys):
    results_dir = tmp_path / "benchmarks" / "results"
    results_dir.mkdir(parents=True)
    results = results_dir / "bench_quality.json"
    results.write_text(json.dumps({"schema": bench.SCHEMA,
                                   "records": [_record("cgan", 0, 0.7, 0.75)], "references": {}}))
    readme = tmp_path / "README.md"
    prose = [f"# Title\n\nThe table lies after `{bench.README_TABLE_BEGIN}`.\n",  # named in prose: not a marker
             f"\nAfter, written by hand, naming `{bench.README_TABLE_END}`.\n"]
    readme.write_text(prose[0] + bench.README_TABLE_BEGIN + "\nan old table\n" + bench.README_TABLE_END + prose[1])

    assert bench.main(["--table", "--results", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith(prose[0] + bench.README_TABLE_BEGIN + "\n<!--")
    assert text.endswith("\n" + bench.README_TABLE_END + prose[1])
    assert "an old table" not in text and "| cgan | 1 |" in text
    assert "](benchmarks/results/grids/ct_cgan_s0.png)" in text and "](grids/" not in text
    assert "](grids/ct_cgan_s0.png)" in (results_dir / "bench_quality.md").read_text()  # beside the results: as it was
    assert bench.main(["--table", "--results", str(results), "--readme", str(readme)]) == 0
    assert readme.read_text() == text  # written again: the same file

    capsys.readouterr()
    readme.write_text("# no markers\n")
    assert bench.main(["--table", "--results", str(results), "--readme", str(readme)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --readme {readme}: needs one line {bench.README_TABLE_BEGIN}")
    assert readme.read_text() == "# no markers\n"


def test_processes_side_by_side_keep_every_record_in_one_results_file(bench, tmp_path):
    import subprocess

    results = tmp_path / "results.json"
    adder = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('bench_quality', {str(SCRIPT)!r})\n"
        "bench = importlib.util.module_from_spec(spec); sys.modules[spec.name] = bench; spec.loader.exec_module(bench)\n"
        "for seed in range(int(sys.argv[2]), int(sys.argv[2]) + 25):\n"
        "    bench.save_record(bench.Path(sys.argv[1]), {'model': 'cgan', 'data': 'ct', 'budget_minutes': 1.0,\n"
        "                                             'seed': seed, 'device_kind': 'cpu', 'padding': 'x' * 200_000})\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", adder, str(results), str(first)]) for first in (0, 100)]
    assert [w.wait(timeout=300) for w in writers] == [0, 0]
    seeds = sorted(r["seed"] for r in json.loads(results.read_text())["records"])
    assert seeds == list(range(25)) + list(range(100, 125))  # without the lock the later writer drops records


def test_records_name_the_commit_the_process_started_with(bench, monkeypatch):
    import subprocess

    class Done:
        def __init__(self, stdout):
            self.stdout = stdout

    bench.git_commit.cache_clear()
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Done("aaaaaaa\n"))
    assert bench.git_commit() == "aaaaaaa"
    # a commit made while the records train does not change what they say trained them
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Done("bbbbbbb\n"))
    assert bench.git_commit() == "aaaaaaa"
    bench.git_commit.cache_clear()


def _medmnist_npz(path: Path, per_split: dict[str, tuple[int, int]]) -> Path:
    """A PneumoniaMNIST-layout folder: labels 0 (normal) and 1 (pneumonia), (normal, pneumonia) per split."""
    from medisynth.training.toy import write_toy_medmnist

    path.mkdir(parents=True)
    write_toy_medmnist(path / "pneumoniamnist.npz", {split: [0] * normal + [1] * pneumonia
                                                     for split, (normal, pneumonia) in per_split.items()})
    return path


@pytest.mark.parametrize("normal_train", [40, 12])
def test_pneumonia_set_cuts_only_the_training_split_and_names_the_classes(bench, tmp_path, normal_train):
    import medisynth as ms

    source = _medmnist_npz(tmp_path / "PneumoniaMNIST", {"train": (normal_train, 320), "val": (5, 7), "test": (9, 11)})
    root = bench.prepare_data("pneumonia", tmp_path / "work", bench.Settings(size=32), {"pneumonia": source})
    manifest = ms.Manifest.load(root)
    assert manifest.class_names == ["normal", "pneumonia"] and manifest.image_size == 32 and manifest.channels == 1
    keep = dict(bench.REAL_SETS["pneumonia"].keep)
    assert manifest.counts["train"] == {"normal": min(normal_train, keep["normal"]), "pneumonia": keep["pneumonia"]}
    assert manifest.counts["val"] == {"normal": 5, "pneumonia": 7} and manifest.counts["test"] == {"normal": 9, "pneumonia": 11}
    # made once, then reused
    assert bench.prepare_data("pneumonia", tmp_path / "work", bench.Settings(size=32), {"pneumonia": source}) == root


def test_a_missing_real_set_names_its_flag(bench, tmp_path, capsys):
    assert bench.main(["--data", "pneumonia", "--models", "cgan", "--work", str(tmp_path / "work"),
                       "--results", str(tmp_path / "r.json"), "--pneumonia-source", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--pneumonia-source" in err[0] and "PneumoniaMNIST" in err[0]


def _fake_judge(labels: list[int], size: int = 16, channels: int = 3):
    import numpy as np
    import torch
    from types import SimpleNamespace

    from medisynth.data.image_folder import ImageSet

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (len(labels), channels, size, size), generator=generator, dtype=torch.uint8)
    train = ImageSet(images, np.array(labels), [f"r{i}" for i in range(len(labels))])
    return SimpleNamespace(real=SimpleNamespace(train=train, class_names=["a", "b", "c"], image_size=size,
                                                channels=channels))


@pytest.mark.parametrize("channels", [1, 3])
def test_the_control_row_augments_each_real_image_of_the_class_before_any_twice(bench, tmp_path, channels,
                                                                                 monkeypatch):
    import numpy as np

    import medisynth.classifier
    from medisynth.downstream.data import load_synthetic

    judge = _fake_judge([0] * 5 + [1] * 2, channels=channels)  # class c has no training image
    counts = {"a": 5, "b": 7, "c": 3}
    bench.write_augmented_real(judge, tmp_path / "s", counts, seed=4)
    made = load_synthetic(tmp_path / "s", ["a", "b", "c"], 16, channels)
    assert np.bincount(made.labels, minlength=3).tolist() == [5, 7, 0]  # nothing to augment for c: none made
    real = judge.real.train.images
    assert not any(bool((x == real).all(dim=(1, 2, 3)).any()) for x in made.images)  # augmented, not copied
    # which real images were drawn: with the augmentation left out, each made image is one of them
    monkeypatch.setattr(medisynth.classifier, "classic_augment", lambda x, generator: x)
    bench.write_augmented_real(judge, tmp_path / "drawn", counts, seed=4)
    drawn = load_synthetic(tmp_path / "drawn", ["a", "b", "c"], 16, channels)
    for c, n in ((0, 5), (1, 7)):
        pool = real[torch.from_numpy(judge.real.train.labels == c)]
        source = [int((x == pool).all(dim=(1, 2, 3)).nonzero()[0]) for x in drawn.images[drawn.labels == c]]
        per_image = np.bincount(source, minlength=len(pool))
        assert per_image.max() - per_image.min() <= 1 and per_image.sum() == n  # every image once, then again
    monkeypatch.undo()
    # the seed fixes the draw; another seed draws others
    bench.write_augmented_real(judge, tmp_path / "again", counts, seed=4)
    bench.write_augmented_real(judge, tmp_path / "other", counts, seed=5)
    again = load_synthetic(tmp_path / "again", ["a", "b", "c"], 16, channels)
    other = load_synthetic(tmp_path / "other", ["a", "b", "c"], 16, channels)
    assert bool((again.images == made.images).all()) and not bool((other.images == made.images).all())


@pytest.mark.slow
def test_the_control_row_is_judged_like_a_generator_without_training(bench, tmp_path):
    assert bench.main(["--smoke", "--models", bench.AUGMENTED_REAL, "--work", str(tmp_path)]) == 0
    records = json.loads((tmp_path / "results.json").read_text())["records"]
    assert sorted((r["model"], r["seed"]) for r in records) == [(bench.AUGMENTED_REAL, 0), (bench.AUGMENTED_REAL, 1)]
    for r in records:
        assert r["generator"] is None and r["train"]["steps"] == 0 and (tmp_path / r["grid"]).is_file()
        assert r["sample"]["images"] == sum(r["sample"]["per_class"].values())
        for key in MEASURES:
            assert math.isfinite(r["measures"][key]), key
    table = (tmp_path / "results.md").read_text()
    assert f"| {bench.AUGMENTED_REAL} | 2 | 0 ± 0 |" in table and "the control row" in table
