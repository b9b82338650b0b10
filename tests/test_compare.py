"""medisynth runs compare: two runs side by side in the terminal and in an HTML page."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from medisynth.cli import app
from medisynth.compare import compare_runs, html_page, table_rows
from medisynth.errors import MedisynthError
from medisynth.training import toy
from medisynth.training.config import TrainConfig
from medisynth.training.trainer import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    data = toy.write_toy_dataset(root / "data")
    for name, model, steps in (("cgan", "toy-cgan", 4), ("gan", "toy-gan", 2)):
        train(TrainConfig(data=data, model=model, out=root / name, steps=steps, batch_size=4, log_every=1,
                          sample_every=2, device="cpu", progress=False))
    return root


def _metrics(fake, created, fid):
    return {"schema": "medisynth.metrics/1", "created": created, "inputs": {"fake": str(fake)},
            "distribution": {"pixels": {"fid": fid, "kid_mean": 0.01, "precision": 0.5, "recall": 0.25}},
            "cas": {"overall": 0.75}, "memorization": {"pixel": {"fraction_flagged": 0.0}}}


def test_compare_collects_budgets_figures_evaluations_and_grids(runs, tmp_path):
    # an older evaluation inside the run folder and a newer one elsewhere, named with --report
    (runs / "cgan" / "eval").mkdir(exist_ok=True)
    (runs / "cgan" / "eval" / "metrics.json").write_text(json.dumps(_metrics(runs / "cgan", "2026-01-01T00:00:00", 50.0)))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_text(json.dumps(_metrics(runs / "cgan", "2026-06-01T00:00:00", 12.5)))
    cgan, gan = compare_runs([runs / "cgan", runs / "gan"], reports=[tmp_path / "r"])
    assert (cgan.model, gan.model) == ("toy-cgan", "toy-gan")
    assert (cgan.step, gan.step) == (4, 2) and cgan.budget == "steps 4" and cgan.classes == ["0", "1"]
    assert set(cgan.final) >= {"Loss_D", "Loss_G"}
    last = [json.loads(line) for line in (runs / "cgan" / "metrics.jsonl").read_text().splitlines()][-1]
    assert cgan.final["Loss_D"] == pytest.approx(last["Loss_D"])
    assert cgan.evaluation["FID"] == 12.5 and cgan.evaluation["report"] == str(tmp_path / "r")  # the newest
    assert gan.evaluation is None
    assert cgan.grid.name == "step-000004.png" and gan.grid.name == "step-000002.png"
    page = html_page([cgan, gan])
    assert page.count("data:image/png;base64,") == 2 and "12.5" in page and "toy-gan" in page


def test_compare_shows_the_warnings_of_the_last_record(runs, tmp_path):
    import shutil

    warned = shutil.copytree(runs / "cgan", tmp_path / "warned")
    with open(warned / "metrics.jsonl", "a") as f:  # as the trainer writes them for a watched GAN
        f.write(json.dumps({"step": 5, "Loss_D": 1.0, "collapse_warning": ["1"], "ada_ceiling_warning": True}) + "\n")
    quiet = shutil.copytree(runs / "cgan", tmp_path / "quiet")
    with open(quiet / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 5, "Loss_D": 1.0, "collapse_warning": [], "ada_ceiling_warning": False}) + "\n")
    summaries = compare_runs([warned, quiet, runs / "gan"])
    assert [s.warnings for s in summaries] == [["collapse of 1", "ADA at its ceiling"], [], None]  # toy-gan: not watched
    assert dict(table_rows(summaries))["warnings at the last check"] == [
        "collapse of 1; ADA at its ceiling", "none", "\u2013"]


@pytest.mark.parametrize("ada_target, expected", [(0.6, ["ADA at its ceiling"]), (None, None)])
def test_a_run_from_before_the_ceiling_check_is_checked_from_its_logged_p(runs, tmp_path, ada_target, expected):
    import shutil

    old = shutil.copytree(runs / "cgan", tmp_path / "old")
    info = json.loads((old / "model.json").read_text())
    info["hyper"] = {**info.get("hyper", {}), "diffaugment": "translation", "ada_target": ada_target}
    (old / "model.json").write_text(json.dumps(info))
    with open(old / "metrics.jsonl", "a") as f:  # p logged, no ada_ceiling_warning field (trained before session 29)
        f.write(json.dumps({"step": 5, "Loss_D": 1.0, "ada_p": 1.0}) + "\n")
    # with ada_target null p is 1 by choice: nothing to check (and no collapse field: not watched)
    assert compare_runs([old, runs / "gan"])[0].warnings == expected


def test_compare_reads_per_class_runs(tmp_path):
    # their spec and records are in the classes' sub-runs (this crashed on the image size before session 29)
    data = toy.write_toy_dataset(tmp_path / "data", size=32)
    for name in ("a", "b"):
        train(TrainConfig(data=data, model="dcgan", out=tmp_path / name, steps=2, batch_size=4, log_every=1,
                          sample_every=0, device="cpu", progress=False, per_class=True,
                          hyper={"width": 4, "latent_dim": 8}))
    summaries = compare_runs([tmp_path / "a", tmp_path / "b"])
    assert [s.model for s in summaries] == ["dcgan (per class)"] * 2 and summaries[0].image_size == 32
    # every class's last record is read; each monitor names its own class
    collapsed = [json.loads(line) for line in (tmp_path / "a" / "class-1" / "metrics.jsonl").read_text().splitlines()]
    assert summaries[0].warnings is not None
    assert ("collapse of 1" in summaries[0].warnings) is bool(collapsed[-1]["collapse_warning"])
    result = CliRunner().invoke(app, ["runs", "compare", str(tmp_path / "a"), str(tmp_path / "b")],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output


def test_cli_runs_compare_prints_a_table_and_writes_the_page(runs, tmp_path):
    result = CliRunner().invoke(app, ["runs", "compare", str(runs / "cgan"), str(runs / "gan"),
                                      "--html", str(tmp_path / "compare.html")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "toy-cgan" in result.output and "toy-gan" in result.output and "budget" in result.output
    assert "<img" in (tmp_path / "compare.html").read_text()


@pytest.mark.parametrize("args, message", [
    (["one"], "two or more run folders"),
    (["cgan", "nothere"], "no such run folder"),
])
def test_compare_errors(runs, args, message):
    with pytest.raises(MedisynthError, match=message):
        compare_runs([runs / a for a in args])


def test_a_report_on_a_sample_folder_counts_for_the_run_it_was_sampled_from(runs, tmp_path):
    """`medisynth evaluate DATA --fake SAMPLES` (as the demo does): the sample folder's sample.json names the run."""
    samples = tmp_path / "samples"
    samples.mkdir()
    (samples / "sample.json").write_text(json.dumps({"run": str(runs / "gan")}))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_text(json.dumps(_metrics(samples, "2026-06-01T00:00:00", 7.5)))
    cgan, gan = compare_runs([runs / "cgan", runs / "gan"], reports=[tmp_path / "r"])
    assert gan.evaluation["FID"] == 7.5 and gan.evaluation["report"] == str(tmp_path / "r")
    assert cgan.evaluation is None or cgan.evaluation["report"] != str(tmp_path / "r")


@pytest.mark.parametrize("evaluated", ["elsewhere", "samples-of-another-run"])
def test_a_report_of_none_of_the_runs_is_refused_not_left_out(runs, tmp_path, evaluated):
    fake = tmp_path / evaluated
    fake.mkdir()
    if evaluated == "samples-of-another-run":
        (fake / "sample.json").write_text(json.dumps({"run": str(tmp_path / "another-run")}))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "metrics.json").write_text(json.dumps(_metrics(fake, "2026-06-01T00:00:00", 7.5)))
    with pytest.raises(MedisynthError, match=f"it evaluated {fake}, which is none of the runs compared"):
        compare_runs([runs / "cgan", runs / "gan"], reports=[tmp_path / "r"])
    result = CliRunner().invoke(app, ["runs", "compare", str(runs / "cgan"), str(runs / "gan"), "--report", str(tmp_path / "r")])
    # the CLI's entry point prints a MedisynthError as one line and exits with 2 (tests/test_bad_input.py)
    assert isinstance(result.exception, MedisynthError) and "none of the runs compared" in str(result.exception)
