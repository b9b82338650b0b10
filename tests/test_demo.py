"""The end-to-end demo (what `make demo` runs), at a toy size: every stage runs and leaves its report."""
from __future__ import annotations

import json

import pytest

from medisynth.demo import DemoConfig, run_demo, utility_verdict
from medisynth.errors import MedisynthError
from medisynth.runs import require_run


def test_demo_runs_every_stage_and_writes_both_reports(tmp_path, capsys):
    out = tmp_path / "[demo] run"  # brackets: rich must not read the printed paths as markup
    run_demo(DemoConfig(out=out, n_images=60, size=32, train_minutes=0.05, minority_samples=6, utility_seeds=2,
                        utility_epochs=1, domain_epochs=1, ssl_steps=20, test_images=20, device="cpu"))
    summary = json.loads((out / "demo.json").read_text())
    # the utility classifiers are scored on the fresh held-out eyes alone, four per grade
    utility = json.loads((out / "utility" / "utility.json").read_text())
    assert utility["data"]["real"]["test"] == [4] * 5 and utility["config"]["test_data"] == str(out / "prepared-test")
    assert "on 20 real test images" in summary["verdict"]
    assert set(summary["timings_s"]) == {"phantom", "prepare", "train", "sample", "balance", "evaluate", "utility"}
    assert (out / "report" / "report.html").is_file() and (out / "utility" / "utility.html").is_file()
    assert json.loads((out / "report" / "metrics.json").read_text())["schema"] == "medisynth.metrics/2"
    assert sorted(summary["minority_classes"]) == ["3", "4"]  # the two rarest EyePACS grades were sampled
    assert summary["verdict"].startswith(tuple(f"real + synthetic beat oversampling: {answer}"
                                               for answer in ("YES", "NO", "CANNOT TELL")))
    assert json.loads((out / "run" / "model.json").read_text())["model"] == "fastgan"
    trained = json.loads((out / "run" / "config.json").read_text())  # fastgan's defaults, as the benchmark's
    assert trained["batch_size"] == 8 and trained["hyper"] == {}
    # beside the verdict: how easily the synthetic images are told from real ones, in the verdict's feature space
    spotted = summary["detectability"]
    assert spotted["space"] == json.loads((out / "report" / "metrics.json").read_text())["verdict"]["primary_space"]
    assert 0 <= spotted["synthetic"]["detectability"] <= 1 and spotted["synthetic"]["chance"]["chance"] == 0.5
    # the trainer's last collapse check is in the summary (a list of grades, empty when none collapsed)
    checks = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert summary["collapse_warning"] == [c for c in checks if "collapse_warning" in c][-1]["collapse_warning"]
    # the run points at the prepared data where it now lives, so it can be sampled again after the demo
    require_run(out / "run")
    assert json.loads((out / "run" / "config.json").read_text())["data"] == str(out / "prepared")
    printed = "".join(capsys.readouterr().out.split())  # rich wraps long lines
    for path in (out / "report" / "report.html", out / "utility" / "utility.html"):
        assert "".join(str(path).split()) in printed


def test_demo_replaces_only_an_earlier_demo(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "patients.csv").write_text("id\n1\n")
    with pytest.raises(MedisynthError, match="not written by medisynth"):
        run_demo(DemoConfig(out=precious, overwrite=True))
    assert (precious / "patients.csv").exists()


def _utility(pairs):
    runs = []
    for seed, (over, synth) in enumerate(pairs):
        runs.append({"protocol": "real-balanced", "seed": seed, "metrics": {"balanced_accuracy": over}})
        runs.append({"protocol": "real+synthetic", "seed": seed, "metrics": {"balanced_accuracy": synth}})
    return {"runs": runs, "data": {"real": {"test": [100, 100, 100, 100, 100]}}}


@pytest.mark.parametrize("pairs, answer, wins", [([(0.38, 0.28), (0.40, 0.30), (0.36, 0.37)], "NO", "1 of 3"),
                                                 ([(0.30, 0.40), (0.32, 0.35)], "YES", "2 of 2")])
def test_the_verdict_line_says_whether_synthetic_beat_oversampling(pairs, answer, wins):
    line = utility_verdict(_utility(pairs))
    assert f"oversampling: {answer}" in line and f"better in {wins} seeds" in line and "on 500 real test images" in line
    assert "\n" not in line


def test_the_verdict_line_cannot_tell_when_every_classifier_is_at_chance():
    utility = _utility([(0.28, 0.20), (0.29, 0.15), (0.28, 0.25)])
    utility["verdict"] = {"chance": {"real-balanced": {"above_chance": False}, "real+synthetic": {"above_chance": False}}}
    line = utility_verdict(utility)
    assert line.startswith("real + synthetic beat oversampling: CANNOT TELL") and "0.200 vs 0.283" in line
    utility["verdict"]["chance"]["real-balanced"]["above_chance"] = True
    assert utility_verdict(utility).startswith("real + synthetic beat oversampling: NO")
