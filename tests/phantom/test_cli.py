"""``medisynth phantom fundus|ct`` through the typer app."""
from __future__ import annotations

import csv

import pytest
from typer.testing import CliRunner

from medisynth.cli import app
from medisynth.errors import MedisynthError

runner = CliRunner()


def test_fundus_command(tmp_path):
    out = tmp_path / "f"
    result = runner.invoke(app, ["phantom", "fundus", "--out", str(out), "--n", "10", "--size", "32", "--seed", "2",
                                 "--proportions", "1,1,1,1,1"])
    assert result.exit_code == 0, result.output
    assert "wrote 10 fundus" in result.output
    rows = list(csv.DictReader((out / "labels.csv").open()))
    assert sorted(r["label"] for r in rows) == ["0", "0", "1", "1", "2", "2", "3", "3", "4", "4"]


def test_ct_command(tmp_path):
    out = tmp_path / "c"
    result = runner.invoke(app, ["phantom", "ct", "--out", str(out), "--n", "8", "--size", "32"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == [".medisynth.json", "Cyst", "Normal", "README.txt", "Stone", "Tumor", "phantom.json"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["fundus", "--n", "3"], "--n"),
        (["fundus", "--proportions", "1,2"], "--proportions"),
        (["ct", "--size", "2000"], "--size"),
    ],
)
def test_bad_flags_raise_one_medisynth_error(tmp_path, args, message):
    result = runner.invoke(app, ["phantom", args[0], "--out", str(tmp_path / "x"), *args[1:]])
    assert isinstance(result.exception, MedisynthError)
    assert message in str(result.exception)
