"""The utility verdict: chance first, then real + synthetic against the BEST baseline, paired over seeds."""
from __future__ import annotations

import json

import numpy as np
import pytest

from medisynth.downstream import UtilityConfig, run_utility
from medisynth.downstream.report import plot_figure
from medisynth.downstream.toy import toy_images, write_image_folder, write_prepared
from medisynth.downstream.verdict import utility_verdict


def _runs(values: dict[str, list[float]], above_chance: bool = True) -> list[dict]:
    return [{"protocol": p, "seed": s, "metrics": {"balanced_accuracy": v},
             "chance": {"better_than_chance": above_chance, "chance": 0.2}}
            for p, seeds in values.items() for s, v in enumerate(seeds)]


@pytest.mark.parametrize("synthetic, answer", [
    ([0.80, 0.82, 0.81], "good"),     # above the best baseline (real-balanced) in every seed
    ([0.60, 0.61, 0.59], "poor"),
    ([0.72, 0.68, 0.71], "doubtful"),  # around the best baseline
])
def test_verdict_compares_with_the_best_baseline(synthetic, answer):
    protocols = ["real", "real-balanced", "real+synthetic"]
    v = utility_verdict(_runs({"real": [0.5, 0.52, 0.51], "real-balanced": [0.70, 0.71, 0.69],
                               "real+synthetic": synthetic}), protocols)
    assert v["answer"] == answer and v["baseline"] == "real-balanced" and v["n_pairs"] == 3
    assert v["ci_low"] <= v["difference"] <= v["ci_high"]
    assert v["difference"] == pytest.approx(np.mean(synthetic) - 0.70)


def test_verdict_at_chance_cannot_tell():
    v = utility_verdict(_runs({"real": [0.2, 0.21], "real+synthetic": [0.9, 0.9]}, above_chance=False),
                        ["real", "real+synthetic"])
    assert v["answer"] == "cannot tell" and "at chance" in v["sentence"] and v["difference"] is None


@pytest.mark.parametrize("values, protocols, reason", [
    ({"real": [0.5, 0.6]}, ["real"], "run both"),
    ({"real": [0.5], "real+synthetic": [0.6]}, ["real", "real+synthetic"], "at least 2"),
])
def test_verdict_cannot_tell_without_a_comparison(values, protocols, reason):
    v = utility_verdict(_runs(values), protocols)
    assert v["answer"] == "cannot tell" and reason in v["sentence"]


def test_legend_fits_inside_the_figure():
    from medisynth.downstream.metrics import SCALAR_METRICS

    # two metrics with a value (no QWK/AUROC): the narrowest figure, where a legend beside the axes was cut off
    summary = {p: {m: {"mean": 0.5 if m in ("accuracy", "balanced_accuracy") else None, "std": 0.1, "values": [0.5]}
                   for m in SCALAR_METRICS}
               for p in ("real", "real-balanced", "real-weighted", "real+synthetic", "synthetic")}
    fig = plot_figure({"summary": summary, "config": {"seeds": 3}})
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    box = fig.bbox
    assert box.x0 <= legend.x0 and legend.x1 <= box.x1 and box.y0 <= legend.y0 and legend.y1 <= box.y1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == list(summary)  # whole names, not "rea"


def test_study_where_every_protocol_is_at_chance_says_so(tmp_path):
    """Noise images with arbitrary labels: nothing to learn, so the verdict must be "cannot tell"."""
    from typer.testing import CliRunner

    from medisynth.cli import app

    rng = np.random.default_rng(0)
    counts = {"train": 40, "val": 10, "test": 25}
    labels = np.concatenate([np.arange(n) % 5 for n in counts.values()])
    images = rng.integers(0, 256, size=(len(labels), 16, 16, 3), dtype=np.uint8)
    splits = [s for s, n in counts.items() for _ in range(n)]
    write_prepared(tmp_path / "real", images, labels, splits, [f"c{k}" for k in range(5)])
    syn_labels = [k % 5 for k in range(20)]
    write_image_folder(tmp_path / "syn", rng.integers(0, 256, size=(20, 16, 16, 3), dtype=np.uint8),
                       [f"c{k}" for k in syn_labels])
    result = CliRunner().invoke(app, [
        "utility", str(tmp_path / "real"), "--synthetic", str(tmp_path / "syn"), "--out", str(tmp_path / "out"),
        "--seeds", "2", "--epochs", "1", "--batch-size", "8", "--width", "4", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "out" / "utility.json").read_text())
    assert [r["protocol"] for r in results["runs"][::2]] == ["real", "real-balanced", "real-weighted",
                                                             "real+synthetic", "synthetic"]
    assert results["verdict"]["answer"] == "cannot tell"
    assert not any(c["above_chance"] for c in results["verdict"]["chance"].values())
    assert "Verdict: cannot tell" in result.output and "at chance" in result.output
    assert "report:" in result.output and "| protocol |" not in result.output  # a table, not the markdown
    html = (tmp_path / "out" / "utility.html").read_text()
    assert html.index("Verdict: cannot tell") < html.index("<img")  # the verdict comes first
    assert "(at chance)" in (tmp_path / "out" / "utility.md").read_text()


def test_default_protocols_without_synthetic_images(tmp_path):
    from medisynth.downstream.toy import write_toy_prepared

    write_toy_prepared(tmp_path / "real", {"train": [6, 6], "val": [2, 2], "test": [4, 4]})
    results = run_utility(UtilityConfig(real=tmp_path / "real", out=tmp_path / "out", seeds=1, epochs=1, batch_size=4,
                                        width=4, device="cpu", progress=False, bootstrap=0))
    assert results["config"]["protocols"] == ["real", "real-balanced", "real-weighted"]
    assert any("no --synthetic folder" in n for n in results["notes"])
    assert results["verdict"]["answer"] == "cannot tell"


def test_the_verdict_judges_the_protocol_the_study_names():
    values = {"real-balanced": [0.70, 0.71, 0.69], "real+synthetic": [0.60, 0.61, 0.59],
              "real-balanced+synthetic": [0.80, 0.82, 0.81]}
    protocols = list(values)
    assert utility_verdict(_runs(values), protocols)["answer"] == "poor"  # the top-up, by default
    without_top_up = utility_verdict(_runs(values), ["real-balanced", "real-balanced+synthetic"])
    assert without_top_up["answer"] == "cannot tell" and "--verdict-protocol" in without_top_up["sentence"]
    mix = utility_verdict(_runs(values), protocols, "real-balanced+synthetic")
    assert (mix["answer"], mix["protocol"], mix["baseline"]) == ("good", "real-balanced+synthetic", "real-balanced")
    assert mix["sentence"].startswith("synthetic images help: real-balanced+synthetic minus real-balanced")


@pytest.mark.parametrize("protocol", ["real-balanced", "nope"])
def test_a_verdict_protocol_without_synthetic_images_is_refused_in_one_line(tmp_path, medisynth_cli, protocol):
    from medisynth.downstream.toy import write_toy_prepared

    write_toy_prepared(tmp_path / "real", {"train": [6, 6], "val": [2, 2], "test": [4, 4]})
    code, output = medisynth_cli("utility", tmp_path / "real", "--out", tmp_path / "out", "--verdict-protocol", protocol,
                                 "--no-progress")
    assert code == 2 and "Traceback" not in output and len(output.strip().splitlines()) == 1
    assert f"--verdict-protocol {protocol!r}: the verdict judges a protocol with synthetic images" in output
    assert not (tmp_path / "out").exists()
