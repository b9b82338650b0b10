"""`medisynth pipeline sr-eval`: an EDSR run against bicubic upsampling on a prepared set."""
from __future__ import annotations

import json

import pytest

from medisynth.errors import MedisynthError
from medisynth.pipelines.sr_eval import evaluate_sr_run
from medisynth.pipelines.vessels import VesselPipelineConfig, run_pipeline


@pytest.fixture
def prepared(tiny_runs):
    from medisynth.data.prepare import PrepareConfig, prepare

    run_pipeline(VesselPipelineConfig(tiny_runs / "vessels", tiny_runs / "p2p", tiny_runs / "pairs", n=4, device="cpu"))
    # the pipeline's photographs stand in for real ones here; they are marked synthetic, so prepare puts them all
    # in train (medisynth.provenance), and that is the split evaluated below
    prepare(PrepareConfig(source=tiny_runs / "pairs", out=tiny_runs / "prepared", source_kind="pairs", size=32,
                          val_fraction=0.0, test_fraction=0.5, workers=1))
    return tiny_runs / "prepared"


def test_sr_eval_reports_edsr_and_bicubic(tiny_runs, prepared):
    report = evaluate_sr_run(tiny_runs / "sr", prepared, "train", "cpu", tiny_runs / "sr.json")
    assert json.loads((tiny_runs / "sr.json").read_text()) == report
    assert report["n"] == 4 and report["scale"] == 2
    assert report["psnr_bicubic"] > report["psnr_edsr"]  # an untrained EDSR loses to bicubic


def test_sr_eval_refuses_a_run_that_does_not_upscale(tiny_runs, prepared):
    with pytest.raises(MedisynthError, match="--sr-run .*not a super-resolution model"):
        evaluate_sr_run(tiny_runs / "p2p", prepared, "train", "cpu")
