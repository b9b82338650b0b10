"""`medisynth pipeline vessels`: end to end on tiny runs, the DRIVE output layout, bad runs."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from medisynth.cli import app
from medisynth.errors import MedisynthError
from medisynth.io import read_image
from medisynth.models import DataSpec, build_model
from medisynth.pipelines.fov import circle_fov
from medisynth.pipelines.vessels import VesselPipelineConfig, check_models, drive_names, run_pipeline


def config(root, out="pairs", **kw) -> VesselPipelineConfig:
    settings = {"n": 3, "device": "cpu", "batch_size": 2, **kw}
    return VesselPipelineConfig(vessel_run=root / "vessels", translate_run=root / "p2p", out=root / out, **settings)


def read_layout(folder, n):
    images, vessels, fovs = [], [], []
    for i in range(1, n + 1):
        a, b, c = drive_names(i, 2)
        images.append(read_image(folder / "training" / "images" / a))
        vessels.append(read_image(folder / "training" / "1st_manual" / b)[..., 0])
        fovs.append(read_image(folder / "training" / "mask" / c)[..., 0])
    return np.stack(images), np.stack(vessels), np.stack(fovs)


def test_pipeline_writes_drive_layout_pairs(tiny_runs):
    result = run_pipeline(config(tiny_runs))
    out = tiny_runs / "pairs"
    assert result.n == 3 and result.image_size == 32
    names = sorted(p.name for p in (out / "training" / "images").iterdir())
    assert names == ["01_training.png", "02_training.png", "03_training.png"]
    images, vessels, fovs = read_layout(out, 3)
    assert images.shape == (3, 32, 32, 3)
    assert set(np.unique(vessels)) <= {0, 255} and set(np.unique(fovs)) <= {0, 255}
    assert not (vessels[fovs == 0]).any()  # vessels only inside the field of view
    assert np.array_equal(fovs[0] > 0, circle_fov(32))
    report = json.loads((out / "pipeline.json").read_text())
    assert report["n"] == 3 and len(report["images"]) == 3 and report["runs"]["sr"] is None
    assert not [p for p in tiny_runs.iterdir() if p.name.startswith(".pairs")]  # no temporary left behind
    # the synthetic photographs and vessel maps say so (the FOV masks are plain geometry)
    from medisynth.provenance import read_provenance
    from medisynth.runs import Run

    record = read_provenance(out / "training" / "images" / "01_training.png")
    assert record["synthetic"] == "true" and record["run_id"] == Run(tiny_runs / "p2p").id
    assert record["model"].endswith("->pix2pix") and record["seed"] == "0"
    assert read_provenance(out / "training" / "1st_manual" / "01_manual1.png") == record
    assert read_provenance(out / "training" / "mask" / "01_training_mask.png") is None


def test_pipeline_is_reproducible_by_seed(tiny_runs):
    run_pipeline(config(tiny_runs, "a", seed=1))
    run_pipeline(config(tiny_runs, "b", seed=1))
    run_pipeline(config(tiny_runs, "c", seed=2))
    a, b, c = (read_layout(tiny_runs / x, 3) for x in "abc")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_sr_run_doubles_the_size_and_masks_stay_aligned(tiny_runs):
    base = run_pipeline(config(tiny_runs, "base", seed=4))
    up = run_pipeline(config(tiny_runs, "up", seed=4, sr_run=tiny_runs / "sr"))
    assert (base.image_size, up.image_size) == (32, 64)
    _, small, _ = read_layout(tiny_runs / "base", 3)
    images, vessels, fovs = read_layout(tiny_runs / "up", 3)
    assert images.shape == (3, 64, 64, 3) and fovs.shape == (3, 64, 64)
    # nearest-neighbour upsampling of the same trees (then clipped to the finer FOV circle)
    expected = small.repeat(2, 1).repeat(2, 2) & (fovs > 0) * 255
    assert np.array_equal(vessels, expected)


def test_output_reads_back_as_pairs(tiny_runs):
    from medisynth.data.dataset import PreparedDataset
    from medisynth.data.prepare import PrepareConfig, prepare

    run_pipeline(config(tiny_runs))
    prepared = prepare(PrepareConfig(source=tiny_runs / "pairs", out=tiny_runs / "prepared", source_kind="pairs",
                                     size=32, val_fraction=0.0, test_fraction=0.0, workers=1))
    assert prepared.manifest.num_images == 3 and prepared.manifest.has_masks
    ds = PreparedDataset(tiny_runs / "prepared", split=None, with_masks=True)
    assert ds.masks_uint8().shape == (3, 32, 32)


def test_existing_output_needs_overwrite(tiny_runs):
    run_pipeline(config(tiny_runs))
    with pytest.raises(MedisynthError, match="--overwrite"):
        run_pipeline(config(tiny_runs))
    run_pipeline(config(tiny_runs, overwrite=True))


def test_vessel_run_trained_on_images_is_refused(run_factory, tiny_runs):
    run_factory("rgb-vessels", "resvae", 32, 3, {"width": 8, "latent_dim": 8, "blocks": 1}, target="images")
    cfg = config(tiny_runs)
    cfg.vessel_run = tiny_runs / "rgb-vessels"
    with pytest.raises(MedisynthError, match="--vessel-run.*--target masks"):
        run_pipeline(cfg)


def test_translate_run_that_is_not_pix2pix_is_refused(run_factory, tiny_runs):
    cfg = config(tiny_runs)
    cfg.translate_run = tiny_runs / "sr"
    with pytest.raises(MedisynthError, match="--translate-run.*pix2pix"):
        run_pipeline(cfg)


def test_sr_run_with_other_channels_is_refused(run_factory, tiny_runs):
    run_factory("sr-gray", "edsr", 32, 1, {"n_resblocks": 1, "n_feats": 4})
    with pytest.raises(MedisynthError, match="--sr-run.*1-channel"):
        run_pipeline(config(tiny_runs, sr_run=tiny_runs / "sr-gray"))


def test_missing_run_folder_names_the_flag(tiny_runs):
    cfg = config(tiny_runs)
    cfg.translate_run = tiny_runs / "nope"
    with pytest.raises(MedisynthError, match="--translate-run .*nope"):
        run_pipeline(cfg)
    assert not (tiny_runs / "pairs").exists()


def test_check_models_rejects_a_colour_vessel_model():
    vessel = build_model("resvae", DataSpec(32, 3), {"width": 8, "latent_dim": 8, "blocks": 1})
    translator = build_model("pix2pix", DataSpec(32, 3), {"ngf": 4, "ndf": 4})
    with pytest.raises(MedisynthError, match="1-channel vessel maps"):
        check_models(vessel, translator, None)


@pytest.mark.parametrize("cfg_change,match", [({"n": 0}, "--n"), ({"fov": "square"}, "--fov")])
def test_bad_settings(tiny_runs, cfg_change, match):
    cfg = config(tiny_runs, **cfg_change)
    with pytest.raises(MedisynthError, match=match):
        run_pipeline(cfg)


def test_cli_vessels_and_eval(tiny_runs):
    runner = CliRunner()
    res = runner.invoke(app, ["pipeline", "vessels", "--vessel-run", str(tiny_runs / "vessels"), "--translate-run",
                              str(tiny_runs / "p2p"), "--n", "2", "--out", str(tiny_runs / "cli"), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "wrote 2 image + vessel-mask pairs" in res.output
    res = runner.invoke(app, ["pipeline", "vessels-eval", str(tiny_runs / "cli"), "--synthetic", str(tiny_runs / "cli"),
                              "--size", "32", "--out", str(tiny_runs / "eval.json")])
    assert res.exit_code == 0, res.output
    assert json.loads((tiny_runs / "eval.json").read_text())["n_synthetic"] == 2


def test_round_trip_through_prepare_and_the_trainer(tiny_runs):
    """Pipeline output -> prepare (pairs) -> `train --model pix2pix` -> that run translates in the pipeline."""
    from medisynth.data.prepare import PrepareConfig, prepare
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    run_pipeline(config(tiny_runs, n=4))
    prepare(PrepareConfig(source=tiny_runs / "pairs", out=tiny_runs / "prepared", source_kind="pairs", size=32,
                          val_fraction=0.0, test_fraction=0.0, workers=1))
    train(TrainConfig(data=tiny_runs / "prepared", model="pix2pix", out=tiny_runs / "trained", steps=2, batch_size=2,
                      hyper={"ngf": 4, "ndf": 4}, device="cpu", progress=False, sample_every=0))
    cfg = config(tiny_runs, "again")
    cfg.translate_run = tiny_runs / "trained"
    assert run_pipeline(cfg).n == 3
