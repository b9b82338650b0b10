"""The end-to-end demo (what `make demo` runs), at a toy size: every stage runs and leaves its report."""
from __future__ import annotations

import json

import pytest

from medisynth.demo import DemoConfig, run_demo, utility_verdict
from medisynth.errors import MedisynthError
from medisynth.report.format import format_interval
from medisynth.runs import require_run


def test_demo_runs_every_stage_and_writes_both_reports(tmp_path, capsys, monkeypatch):
    import medisynth.training.trainer

    out = tmp_path / "[demo] run"  # brackets: rich must not read the printed paths as markup
    # whatever the trainer's last check warned of is printed in its words (a toy run need not collapse: one is made up)
    monkeypatch.setattr(medisynth.training.trainer, "check_warnings", lambda checks: ["collapse: of a made-up grade"])
    run_demo(DemoConfig(out=out, n_images=60, size=32, train_minutes=0.05, samples_per_grade=6, utility_seeds=2,
                        utility_epochs=1, domain_epochs=1, ssl_steps=20, test_images=20, device="cpu"))
    summary = json.loads((out / "demo.json").read_text())
    # the utility classifiers are scored on the fresh held-out eyes alone, four per grade
    utility = json.loads((out / "utility" / "utility.json").read_text())
    assert utility["data"]["real"]["test"] == [4] * 5 and utility["config"]["test_data"] == str(out / "prepared-test")
    assert "on 20 real test images" in summary["verdict"]
    assert set(summary["timings_s"]) == {"phantom", "prepare", "train", "sample", "balance", "evaluate", "utility"}
    # a fixed training time: no budget to report; the steps and the whole wall time are
    assert summary["training_budget"] is None and summary["train_steps"] == json.loads(
        (out / "run" / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert summary["total_s"] >= sum(summary["timings_s"].values())
    assert (out / "report" / "report.html").is_file() and (out / "utility" / "utility.html").is_file()
    assert json.loads((out / "report" / "metrics.json").read_text())["schema"] == "medisynth.metrics/2"
    # every grade sampled: at least 6, the rarer ones as many as their top-up to the largest grade needs
    train_counts = json.loads((out / "prepared" / "manifest.json").read_text())["counts"]["train"]
    largest = max(train_counts.values())
    assert summary["sampled_per_grade"] == {c: max(6, largest - n) for c, n in train_counts.items()}
    # oversampling and the balanced mix; the top-up only when asked (`--top-up`, below)
    assert utility["config"]["protocols"] == ["real-balanced", "real-balanced+synthetic"]
    assert utility["verdict"]["protocol"] == "real-balanced+synthetic"  # the report judges what the line says
    assert "top-up" not in summary["verdict"]
    assert summary["verdict"].startswith(tuple(f"real + synthetic beat oversampling: {answer} ("
                                               for answer in ("YES", "NO", "NO CLEAR DIFFERENCE", "CANNOT TELL")))
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
    assert summary["ada_ceiling_warning"] is [c for c in checks if "ada_ceiling_warning" in c][-1]["ada_ceiling_warning"]
    # the run points at the prepared data where it now lives, so it can be sampled again after the demo
    require_run(out / "run")
    assert json.loads((out / "run" / "config.json").read_text())["data"] == str(out / "prepared")
    printed = "".join(capsys.readouterr().out.split())  # rich wraps long lines
    for path in (out / "report" / "report.html", out / "utility" / "utility.html"):
        assert "".join(str(path).split()) in printed
    assert "".join(f"warning when training stopped ({out / 'run'}): collapse: of a made-up grade".split()) in printed


@pytest.mark.parametrize("flags, protocols", [
    ([], ("real-balanced", "real-balanced+synthetic")),
    (["--top-up"], ("real-balanced", "real+synthetic", "real-balanced+synthetic")),
])
def test_the_cli_adds_the_top_up_only_when_asked(flags, protocols, monkeypatch, tmp_path):
    import medisynth.demo
    from typer.testing import CliRunner

    from medisynth.cli import app

    asked = []
    monkeypatch.setattr(medisynth.demo, "run_demo", asked.append)
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), *flags])
    assert result.exit_code == 0, result.output
    assert asked[0].utility_protocols == protocols


def test_a_demo_with_the_top_up_puts_it_on_the_line(tmp_path):
    """The top-up's classifiers are trained on the real images plus the rarer grades' synthetic images, and the
    line reports them beside the mix."""
    from medisynth.demo import WITH_TOP_UP

    out = tmp_path / "demo"
    run_demo(DemoConfig(out=out, n_images=60, size=32, train_minutes=0.02, samples_per_grade=6, utility_seeds=2,
                        utility_epochs=1, domain_epochs=1, ssl_steps=20, test_images=20, device="cpu",
                        utility_protocols=WITH_TOP_UP))
    utility = json.loads((out / "utility" / "utility.json").read_text())
    train_counts = json.loads((out / "prepared" / "manifest.json").read_text())["counts"]["train"]
    topped = next(r for r in utility["runs"] if r["protocol"] == "real+synthetic")
    assert topped["added_per_class"] == [max(train_counts.values()) - train_counts[c] for c in sorted(train_counts)]
    assert "; top-up of the rarer grades" in json.loads((out / "demo.json").read_text())["verdict"]


def test_demo_replaces_only_an_earlier_demo(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "patients.csv").write_text("id\n1\n")
    with pytest.raises(MedisynthError, match="not written by medisynth"):
        run_demo(DemoConfig(out=precious, overwrite=True))
    assert (precious / "patients.csv").exists()


def _utility(triples, above_chance=True):
    """A utility study's runs, per seed (oversampling, top-up, balanced mix) balanced accuracies, with the study's
    own verdict on the mix, as the demo runs it."""
    from medisynth.downstream.verdict import utility_verdict as study_verdict

    protocols = ("real-balanced", "real+synthetic", "real-balanced+synthetic")
    runs = [{"protocol": protocol, "seed": seed, "metrics": {"balanced_accuracy": value},
             "chance": {"better_than_chance": above_chance, "chance": 0.2}}
            for seed, values in enumerate(triples) for protocol, value in zip(protocols, values) if value is not None]
    present = [p for p in protocols if any(r["protocol"] == p for r in runs)]
    return {"runs": runs, "data": {"real": {"test": [100, 100, 100, 100, 100]}},
            "verdict": study_verdict(runs, present, "real-balanced+synthetic")}


@pytest.mark.parametrize("triples, answer, wins", [
    # the mix below oversampling in every seed, by about the same: the interval lies below 0
    ([(0.48, 0.28, 0.38), (0.50, 0.30, 0.41), (0.46, 0.37, 0.37)], "NO", "0 of 3"),
    ([(0.30, 0.20, 0.40), (0.32, 0.25, 0.43), (0.35, 0.20, 0.44)], "YES", "3 of 3"),
    # above in 2 of 3 but the interval holds 0: not a YES
    ([(0.41, 0.39, 0.54), (0.58, 0.26, 0.32), (0.39, 0.20, 0.52)], "NO CLEAR DIFFERENCE", "2 of 3"),
])
def test_the_verdict_line_says_whether_the_balanced_mix_beat_oversampling(triples, answer, wins):
    utility = _utility(triples)
    line = utility_verdict(utility)
    assert line.startswith(f"real + synthetic beat oversampling: {answer} (balanced mix")
    assert f"better in {wins} seeds" in line and "on 500 real test images" in line and "\n" not in line
    verdict = utility["verdict"]  # the study's interval, not one of the demo's own
    assert f"95% CI {format_interval(verdict['ci_low'], verdict['ci_high'], kind='fraction')}" in line
    assert "; top-up of the rarer grades" in line


def test_the_verdict_line_cannot_tell_at_chance_or_from_one_seed():
    line = utility_verdict(_utility([(0.28, 0.20, 0.21), (0.29, 0.15, 0.22), (0.28, 0.25, 0.19)], above_chance=False))
    assert line.startswith("real + synthetic beat oversampling: CANNOT TELL (every protocol's test balanced accuracy "
                           "is at chance") and "0.207 vs 0.283" in line
    assert "an interval needs at least 2" in utility_verdict(_utility([(0.3, 0.2, 0.4)]))


def test_the_verdict_line_names_a_missing_protocol():
    line = utility_verdict(_utility([(0.3, 0.2, None), (0.3, 0.2, None)]))
    assert line.startswith("real + synthetic beat oversampling: NOT COMPARED")


@pytest.fixture
def toy_data(tmp_path):
    from medisynth.training.toy import write_toy_dataset

    return write_toy_dataset(tmp_path / "data", size=32)


def test_the_gan_trains_for_what_the_budget_leaves(toy_data, tmp_path, monkeypatch):
    """Without --train-minutes a first short call measures the step time, the later stages are projected from it,
    and the run resumes until the whole training time is spent."""
    import time

    import medisynth.demo as demo

    monkeypatch.setattr(demo, "CALIBRATION_MINUTES", 0.01)
    monkeypatch.setattr(demo, "TRAINING_OVERHEAD_S", 0.0)
    # later stages of a toy's size: 2 steps' time for the two protocols, 1 for the rest
    monkeypatch.setattr(demo, "LATER_STAGES_FIXED", 1.0)
    monkeypatch.setattr(demo, "LATER_STAGES_PER_PROTOCOL", 1.0)
    started = time.perf_counter()
    run, budget = demo.train_within_budget(DemoConfig(budget_minutes=0.2, device="cpu"), toy_data,
                                           tmp_path / "run", started)
    first_steps = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])["step"]
    assert budget["projected_later_s"] == pytest.approx(3 * budget["seconds_per_step"])
    # what was left of 12 s after the first call and the projection
    assert 0.01 < budget["train_minutes"] < 0.2
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["seconds"] >= budget["train_minutes"] * 60 and run.steps > first_steps
    # the run records the whole training time (what `runs compare` and `export` show), not the first call's
    assert json.loads((tmp_path / "run" / "config.json").read_text())["minutes"] == pytest.approx(budget["train_minutes"])


def test_a_budget_the_cpu_cannot_keep_stops_after_the_first_call_and_says_so(toy_data, tmp_path, monkeypatch, capsys):
    import time

    import medisynth.demo as demo

    monkeypatch.setattr(demo, "CALIBRATION_MINUTES", 0.01)
    run, budget = demo.train_within_budget(DemoConfig(budget_minutes=0.01, device="cpu"), toy_data,
                                           tmp_path / "run", time.perf_counter())
    assert budget["train_minutes"] == 0.01
    assert json.loads((tmp_path / "run" / "config.json").read_text())["minutes"] == 0.01
    printed = " ".join(capsys.readouterr().out.split())
    assert "warning: this CPU cannot keep the demo within 0.01 minutes" in printed


def test_a_fixed_training_time_is_one_call_without_a_budget(toy_data, tmp_path):
    import time

    import medisynth.demo as demo

    run, budget = demo.train_within_budget(DemoConfig(train_minutes=0.01, device="cpu"), toy_data, tmp_path / "run",
                                           time.perf_counter())
    assert budget is None and json.loads((tmp_path / "run" / "config.json").read_text())["minutes"] == 0.01


@pytest.mark.parametrize("flags, message", [
    (["--budget-minutes", "0"], "--budget-minutes 0: the demo's wall time must be above 0"),
    (["--train-minutes", "-1"], "--train-minutes -1: must be above 0"),
])
def test_a_budget_or_training_time_below_zero_is_one_line_before_any_stage(flags, message, medisynth_cli, tmp_path):
    code, output = medisynth_cli("demo", "--out", tmp_path / "d", *flags)
    line = output.strip()
    assert code == 2 and line.startswith("error: ") and "\n" not in line and message in line  # one line, no traceback
    assert not (tmp_path / "d").exists()
