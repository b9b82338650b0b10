"""The one trainer: config sources, budgets, run outputs, exact resume, per-class runs, bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

from medisynth.cli import app
from medisynth.errors import MedisynthError
from medisynth.training import toy
from medisynth.runs import latest_checkpoint
from medisynth.training.config import TrainConfig, parse_hp
from medisynth.training.trainer import class_draw_counts, epoch_order, train, training_autocast


def weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run) / "model.safetensors"))


def training_tensors(run) -> dict[str, torch.Tensor]:
    return load_file(str(latest_checkpoint(run) / "training.safetensors"))


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# -- configuration --------------------------------------------------------------
@pytest.mark.parametrize("text, value", [("1e-4", 1e-4), ("0.5", 0.5), ("64", 64), ("true", True),
                                         ("adam", "adam"), ("[1, 2]", [1, 2]), ("null", None)])
def test_hp_values_are_parsed_as_scalars(text, value):
    assert parse_hp([f"some-key={text}"]) == {"some_key": value}


def test_hp_without_equals_is_an_error():
    with pytest.raises(MedisynthError, match="key=value"):
        parse_hp(["lr_g"])


def test_cli_config_file_with_flags_overriding_it(toy_data, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": "toy-cgan", "steps": 50, "batch_size": 3, "log_every": 1,
                                      "sample_every": 0, "device": "cpu", "hyper": {"width": 4}}))
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(toy_data), "--out", str(out), "--config", str(config),
                                      "--steps", "3", "--hp", "lr_g=1e-3", "--ema-decay", "0"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["steps"] == 3  # flag beats file
    assert saved["batch_size"] == 3  # from the file
    assert saved["hyper"] == {"width": 4, "lr_g": 1e-3}
    assert saved["ema_decay"] == 0
    assert json.loads((out / "model.json").read_text())["hyper"]["width"] == 4
    assert "trained 3 steps" in result.output


def test_unknown_config_key_is_an_error(tmp_path):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"stepz": 3}))
    result = CliRunner().invoke(app, ["train", "x", "--out", str(tmp_path / "r"), "--config", str(config)])
    assert isinstance(result.exception, MedisynthError) and "stepz" in str(result.exception)


def test_unknown_hyper_parameter_names_the_known_ones(toy_data, tmp_path, make_config):
    with pytest.raises(MedisynthError, match="latent_dim"):
        train(make_config(toy_data, tmp_path / "r", hyper={"depth": 3}))


# -- budgets -----------------------------------------------------------------------
# 18 train images, batch 4 -> 4 batches per epoch (the ragged batch is dropped)
@pytest.mark.parametrize("budget, steps", [({"steps": 7}, 7), ({"epochs": 2, "steps": None}, 8),
                                           ({"epochs": 3, "steps": 5}, 5)])
def test_budget_in_steps_or_epochs(toy_data, tmp_path, make_config, budget, steps):
    result = train(make_config(toy_data, tmp_path / "r", **budget))
    assert result.steps == steps
    assert json.loads((latest_checkpoint(tmp_path / "r") / "state.json").read_text())["step"] == steps


def test_budget_in_minutes_stops_on_the_clock(toy_data, tmp_path, make_config):
    result = train(make_config(toy_data, tmp_path / "r", steps=None, minutes=1e-4))  # 6 ms
    assert 1 <= result.steps < 10_000


def test_no_budget_is_an_error(toy_data, tmp_path, make_config):
    with pytest.raises(MedisynthError, match="budget"):
        train(make_config(toy_data, tmp_path / "r", steps=None))


# -- what a run leaves -----------------------------------------------------------------
def test_run_writes_metrics_loss_plot_and_grids(toy_data, tmp_path, make_config):
    run = tmp_path / "r"
    train(make_config(toy_data, run, steps=6, log_every=2, sample_every=3))
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [2, 4, 6]
    for key in ("epoch", "seconds", "images_per_second", "Loss_D", "Loss_G", "D(x)", "D(G(z))"):
        assert key in lines[-1]
    assert Image.open(run / "loss.png").format == "PNG"
    grids = sorted(p.name for p in (run / "samples").iterdir())
    assert grids == ["step-000003.png", "step-000006.png"]
    grid = np.asarray(Image.open(run / "samples" / "step-000006.png"))
    # conditional: one row per class, 8 columns, plus a white margin on the left with the class names
    margin = grid.shape[1] - (2 + 8 * 18)
    assert grid.shape[0] == 2 + 2 * 18 and margin > 4
    assert (grid[:, :margin] < 128).any()  # text drawn in the margin


def test_out_exists_is_an_error_unless_overwrite(toy_data, tmp_path, make_config):
    run = tmp_path / "r"
    train(make_config(toy_data, run, steps=1))
    with pytest.raises(MedisynthError, match="already exists"):
        train(make_config(toy_data, run, steps=1))
    assert train(make_config(toy_data, run, steps=2, overwrite=True)).steps == 2


def test_resolution_the_architecture_cannot_make(tmp_path, make_config):
    data = toy.write_toy_dataset(tmp_path / "odd", size=18)
    with pytest.raises(MedisynthError, match="18"):
        train(make_config(data, tmp_path / "r"))


def test_target_masks_trains_one_channel_images(toy_data, tmp_path, make_config):
    run = tmp_path / "r"
    train(make_config(toy_data, run, model="toy-gan", target="masks", steps=2))
    assert json.loads((run / "model.json").read_text())["spec"]["channels"] == 1
    assert weights(run)["generator.5.weight"].shape[0] == 1


# -- the batch order ---------------------------------------------------------------
@pytest.mark.parametrize("counts, class_draws, expected", [
    ([519, 46, 101, 16, 18], "uniform", [519, 46, 101, 16, 18]),
    ([519, 46, 101, 16, 18], "sqrt", [333, 99, 147, 59, 62]),  # shares 22.8 : 6.8 : 10.0 : 4.0 : 4.2
    ([519, 46, 101, 16, 18], "balanced", [140, 140, 140, 140, 140]),
    ([7, 0, 3], "balanced", [5, 0, 5]),  # a class without training images gets no draws
    ([5, 1, 1], "balanced", [3, 2, 2]),  # largest remainders, ties to the first class
])
def test_class_draw_counts(counts, class_draws, expected):
    assert class_draw_counts(np.array(counts), class_draws).tolist() == expected


@pytest.mark.parametrize("class_draws", ["uniform", "sqrt", "balanced"])
def test_epoch_order_is_fixed_by_seed_and_epoch_and_repeats_small_classes_evenly(class_draws):
    counts = np.array([40, 7, 3])
    labels = torch.from_numpy(np.repeat(np.arange(3), counts))
    order = epoch_order(5, 2, labels, class_draws, torch.device("cpu"))
    assert torch.equal(order, epoch_order(5, 2, labels, class_draws, torch.device("cpu")))
    assert not torch.equal(order, epoch_order(5, 3, labels, class_draws, torch.device("cpu")))
    assert len(order) == counts.sum()
    drawn = np.bincount(labels[order].numpy(), minlength=3)
    assert drawn.tolist() == class_draw_counts(counts, class_draws).tolist()
    for c in range(3):
        times = np.bincount(order.numpy(), minlength=counts.sum())[labels.numpy() == c]
        assert times.max() - times.min() <= 1  # every image of the class drawn as often as the others, +-1


def test_an_unknown_class_draws_is_one_line_naming_the_choices(toy_data, tmp_path, monkeypatch, capsys):
    from medisynth.cli import main

    monkeypatch.setattr("sys.argv", ["medisynth", "train", str(toy_data), "--out", str(tmp_path / "r"), "--steps",
                                     "1", "--model", "toy-cgan", "--class-draws", "even"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--class-draws 'even': choose one of uniform, sqrt, balanced" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()


# -- exact resume ------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["toy-cgan", "toy-gan"])
def test_resume_continues_exactly(toy_data, tmp_path, make_config, model):
    """2N steps in one go == N steps, stop, resume, N more (weights, EMA, optimiser states)."""
    n = 5  # crosses an epoch boundary (4 batches per epoch)
    train(make_config(toy_data, tmp_path / "straight", model=model, steps=2 * n))
    train(make_config(toy_data, tmp_path / "split", model=model, steps=n))
    result = train(TrainConfig(resume=tmp_path / "split", steps=2 * n, progress=False))
    assert result.steps == 2 * n
    assert_same_tensors(weights(tmp_path / "straight"), weights(tmp_path / "split"))
    assert_same_tensors(training_tensors(tmp_path / "straight"), training_tensors(tmp_path / "split"))
    # the EMA copy moved away from the live generator (so it was compared for real)
    w = weights(tmp_path / "split")
    assert not torch.equal(w["generator.0.weight"], w["ema_generator.0.weight"])
    steps = [json.loads(x)["step"] for x in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))  # no duplicated log lines after the resume


@pytest.mark.parametrize("class_draws", ["sqrt", "balanced"])
def test_resume_is_exact_with_class_weighted_draws(toy_data, tmp_path, make_config, class_draws):
    train(make_config(toy_data, tmp_path / "straight", steps=10, class_draws=class_draws))
    train(make_config(toy_data, tmp_path / "split", steps=5, class_draws=class_draws))
    train(TrainConfig(resume=tmp_path / "split", steps=10, progress=False))
    assert_same_tensors(weights(tmp_path / "straight"), weights(tmp_path / "split"))
    assert json.loads((tmp_path / "split" / "config.json").read_text())["class_draws"] == class_draws
    train(make_config(toy_data, tmp_path / "uniform", steps=10))
    assert not torch.equal(weights(tmp_path / "uniform")["generator.0.weight"],
                           weights(tmp_path / "straight")["generator.0.weight"])  # the draws changed training


def test_sample_grids_do_not_change_training(toy_data, tmp_path, make_config):
    train(make_config(toy_data, tmp_path / "a", steps=6, sample_every=2))
    train(make_config(toy_data, tmp_path / "b", steps=6, sample_every=0))
    assert_same_tensors(weights(tmp_path / "a"), weights(tmp_path / "b"))


def test_a_saved_ema_generator_keeps_batchnorm_statistics_of_its_own_weights(toy_data_32, tmp_path, make_config):
    """update_ema copies the live generator's BatchNorm statistics; the trainer recomputes them for the
    averaged weights before it saves (medisynth.models.gan.GANModel.refresh_ema_statistics)."""
    train(make_config(toy_data_32, tmp_path / "run", model="dcgan", steps=4, hyper={"width": 4, "latent_dim": 8}))
    w = weights(tmp_path / "run")
    stats = [k for k in w if k.startswith("generator.") and k.endswith(("running_mean", "running_var"))]
    assert stats, "the generator has no BatchNorm: the test checks nothing"
    assert all(not torch.equal(w[k], w["ema_" + k]) for k in stats)


def test_resume_cannot_change_the_model(toy_data, tmp_path, make_config):
    train(make_config(toy_data, tmp_path / "r", steps=2))
    with pytest.raises(MedisynthError, match="model"):
        train(TrainConfig(resume=tmp_path / "r", model="toy-gan", steps=4))


def test_resume_of_a_folder_that_is_not_a_run(tmp_path):
    with pytest.raises(MedisynthError, match="not a medisynth run"):
        train(TrainConfig(resume=tmp_path, steps=4))


@pytest.mark.parametrize("default, recorded", [(4, 4), (64, 18)])  # 64: more than the 18 training images
def test_no_batch_size_means_the_models_default_recorded_in_the_run(toy_data, tmp_path, make_config, monkeypatch,
                                                                    capsys, default, recorded):
    monkeypatch.setattr(toy.ToyCGAN, "default_batch_size", default)
    run = tmp_path / "r"
    train(make_config(toy_data, run, batch_size=None, steps=2))
    assert json.loads((run / "config.json").read_text())["batch_size"] == recorded
    assert "--batch-size" not in capsys.readouterr().err  # the user asked for none: no warning that it was cut
    train(TrainConfig(resume=run, steps=3, progress=False))  # the resumed run keeps the recorded batch size
    assert json.loads((latest_checkpoint(run) / "state.json").read_text())["step"] == 3


# -- per class -------------------------------------------------------------------------------
def test_per_class_trains_one_model_per_class(toy_data, tmp_path, make_config):
    run = tmp_path / "r"
    result = train(make_config(toy_data, run, model="toy-gan", per_class=True, steps=3))
    assert set(result.classes) == {"0", "1"}
    info = json.loads((run / "model.json").read_text())
    assert info["per_class"] and info["classes"] == {"0": "class-0", "1": "class-1"}
    for index in (0, 1):
        sub = json.loads((run / f"class-{index}" / "model.json").read_text())
        assert sub["class_index"] == index
        assert json.loads((latest_checkpoint(run / f"class-{index}") / "state.json").read_text())["step"] == 3
    # resuming a per-class run extends every class model
    train(TrainConfig(resume=run, steps=5, progress=False))
    assert json.loads((latest_checkpoint(run / "class-1") / "state.json").read_text())["step"] == 5


def test_per_class_with_a_conditional_model_is_an_error(toy_data, tmp_path, make_config):
    with pytest.raises(MedisynthError, match="conditional"):
        train(make_config(toy_data, tmp_path / "r", model="toy-cgan", per_class=True))


# -- the real models ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_data_32(tmp_path_factory):
    """The real GANs make 32 px and up."""
    return toy.write_toy_dataset(tmp_path_factory.mktemp("toy32") / "data", size=32)


# fast ADA (interval 2, p moves by 0.4 per adjustment at batch 4; a target below any r_t of a
# 3-step D, so p rises): the checkpoint at step 3 falls between adjustments with p > 0, so p and
# the half-filled r_t accumulator must both be restored
FAST_ADA = {"ada_speed_kimg": 0.02, "ada_interval": 2, "ada_target": -0.99}


def test_fastgan_defaults_are_the_few_minute_recipe(toy_data_32, tmp_path, make_config):
    run = tmp_path / "r"
    train(make_config(toy_data_32, run, model="fastgan", batch_size=None, steps=1, hyper={"latent_dim": 8}))
    assert json.loads((run / "config.json").read_text())["batch_size"] == 8  # the paper's batch size
    hyper = json.loads((run / "model.json").read_text())["hyper"]
    assert (hyper["width"], hyper["lr_g"], hyper["lr_d"]) == (8, 4e-4, 1.6e-3)


@pytest.mark.parametrize("model, extra", [("dcgan", {}), ("cgan", {}), ("fastgan", {}), ("dcgan", FAST_ADA),
                                          ("fastgan", FAST_ADA), ("fastgan", {"condition_ramp": [2, 5]}),
                                          ("fastgan", {"noise": True}), ("fastgan", {"lecam": 0.3})])
def test_resume_is_exact_for_real_models(toy_data_32, tmp_path, make_config, model, extra):
    small = {"width": 4, "latent_dim": 8, **extra}
    train(make_config(toy_data_32, tmp_path / "straight", model=model, steps=6, hyper=small))
    train(make_config(toy_data_32, tmp_path / "split", model=model, steps=3, hyper=small))
    train(TrainConfig(resume=tmp_path / "split", steps=6, progress=False))
    assert_same_tensors(weights(tmp_path / "straight"), weights(tmp_path / "split"))
    assert_same_tensors(training_tensors(tmp_path / "straight"), training_tensors(tmp_path / "split"))
    if "ada_target" in extra:
        assert float(weights(tmp_path / "split")["augment.p"]) > 0, "ADA never moved p: the test checks nothing"


def test_cli_user_error_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    from medisynth.cli import main

    monkeypatch.setattr("sys.argv", ["medisynth", "train", str(tmp_path), "--model", "dcgan",
                                     "--out", str(tmp_path / "r"), "--steps", "1"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "not a prepared data set" in err and "Traceback" not in err


def test_cli_error_keeps_bracketed_text(toy_data_32, tmp_path, monkeypatch, capsys):
    # rich would read "[start, end]" as markup and drop it from the one line the user gets
    from medisynth.cli import main

    monkeypatch.setattr("sys.argv", ["medisynth", "train", str(toy_data_32), "--model", "fastgan", "--out",
                                     str(tmp_path / "r"), "--steps", "1", "--hp", "condition_ramp=[30,10]"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "condition_ramp=[30, 10]; give [start, end] steps" in " ".join(err.split())


def test_a_budget_given_on_resume_replaces_the_runs_budget(tmp_path, capsys):
    from medisynth.training import toy
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    data = toy.write_toy_dataset(tmp_path / "data")
    common = dict(batch_size=4, log_every=1, sample_every=0, device="cpu", progress=False)
    train(TrainConfig(data=data, model="toy-gan", out=tmp_path / "run", steps=2, **common))
    # the run was trained with --steps 2; an epoch budget on resume must not keep that step limit
    before = json.loads((tmp_path / "run" / "config.json").read_text())
    result = train(TrainConfig(resume=tmp_path / "run", epochs=2, **{k: v for k, v in common.items() if k != "batch_size"}))
    assert result.steps == 2 * result.steps / result.epochs > 2
    # config.json records the budget the run now trains to, and nothing else changed
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {**before, "steps": None, "epochs": 2}
    again = train(TrainConfig(resume=tmp_path / "run", progress=False))  # a plain resume: the budget of the last one
    assert again.steps == result.steps
    assert "already reached its budget" in capsys.readouterr().err


def test_a_per_class_run_records_the_budget_given_on_resume_in_every_config(tmp_path):
    from medisynth.training import toy
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    data = toy.write_toy_dataset(tmp_path / "data")
    common = dict(sample_every=0, device="cpu", progress=False)
    train(TrainConfig(data=data, model="toy-gan", per_class=True, out=tmp_path / "run", steps=1, batch_size=4, **common))
    result = train(TrainConfig(resume=tmp_path / "run", steps=3, **common))
    assert [r.steps for r in result.classes.values()] == [3, 3]
    for config in [tmp_path / "run" / "config.json", *sorted((tmp_path / "run").glob("class-*/config.json"))]:
        assert json.loads(config.read_text())["steps"] == 3, config


def test_a_run_saved_before_a_hyper_parameter_existed_resumes_and_loads_as_it_was_trained(toy_data_32, tmp_path, make_config):
    # fastgan's class_loss came with a default of 1 (an auxiliary classifier head in D); a run saved before it
    # has no such field and no such head: it must go on training, and load, without one
    from medisynth.io import read_json, write_json
    from medisynth.runs import Run

    small = {"width": 4, "latent_dim": 8, "class_loss": 0.0}
    train(make_config(toy_data_32, tmp_path / "straight", model="fastgan", steps=6, hyper=small))
    train(make_config(toy_data_32, tmp_path / "old", model="fastgan", steps=3, hyper=small))
    for name in ("model.json", "config.json"):
        record = read_json(tmp_path / "old" / name)
        assert record["hyper"].pop("class_loss") == 0.0
        write_json(tmp_path / "old" / name, record)
    train(TrainConfig(resume=tmp_path / "old", steps=6, progress=False))
    assert_same_tensors(weights(tmp_path / "straight"), weights(tmp_path / "old"))
    assert Run(tmp_path / "old").load().model.discriminator.classifier is None


def test_cpu_amp_is_bf16_autocast_on_the_cpu_only_when_asked_for():
    cpu = torch.device("cpu")
    context = training_autocast(TrainConfig(cpu_amp=True), cpu)
    assert isinstance(context, torch.autocast) and (context.device, context.fast_dtype) == ("cpu", torch.bfloat16)
    assert not isinstance(training_autocast(TrainConfig(), cpu), torch.autocast)  # fp32 by default
    assert not isinstance(training_autocast(TrainConfig(amp=True), cpu), torch.autocast)  # amp alone is CUDA's


@pytest.mark.parametrize("native", [True, False])
def test_cpu_amp_warns_once_on_a_cpu_without_native_bf16(toy_data, tmp_path, make_config, monkeypatch, capsys, native):
    from medisynth.training import trainer

    monkeypatch.setattr(trainer, "cpu_has_native_bf16", lambda: native)
    train(make_config(toy_data, tmp_path / "r", model="toy-gan", per_class=True, steps=1, cpu_amp=True))  # two classes
    err = capsys.readouterr().err
    assert err.count("without native bf16") == (0 if native else 1) and ("train without --cpu-amp" in err) != native, err


def test_a_cpu_amp_run_trains_in_bf16_and_resumes_exactly(toy_data_32, tmp_path, make_config):
    small = {"width": 4, "latent_dim": 8}
    train(make_config(toy_data_32, tmp_path / "fp32", model="fastgan", steps=4, hyper=small))
    train(make_config(toy_data_32, tmp_path / "bf16", model="fastgan", steps=4, hyper=small, cpu_amp=True))
    fp32, bf16 = weights(tmp_path / "fp32"), weights(tmp_path / "bf16")
    assert fp32.keys() == bf16.keys() and all(torch.isfinite(v).all() for v in bf16.values() if v.is_floating_point())
    assert any(not torch.equal(fp32[k], bf16[k]) for k in fp32), "the same weights: autocast never took effect"
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["cpu_amp"] is True
    train(make_config(toy_data_32, tmp_path / "split", model="fastgan", steps=2, hyper=small, cpu_amp=True))
    train(TrainConfig(resume=tmp_path / "split", steps=4, progress=False))  # the run's cpu_amp, from its config.json
    assert_same_tensors(bf16, weights(tmp_path / "split"))


@pytest.mark.parametrize("conditional, class_names, class_index, expected", [
    (True, ["a", "b"], None, ["a", "b"]),  # one row per class
    (False, ["a", "b"], 1, ["b"] * 4),  # a per-class run's model: its class on every row
    (False, ["a"], None, ["a"] * 4),  # the one class of its data
    (False, ["a", "b"], None, None),  # one model of every class at once: its rows are of no one class
])
def test_grid_rows_are_named_by_the_class_they_show(conditional, class_names, class_index, expected):
    from medisynth.models.base import DataSpec
    from medisynth.training.trainer import _grid_row_names

    model_cls = type("Model", (), {"conditional": conditional})
    assert _grid_row_names(model_cls, DataSpec(16, 3, class_names), class_index, rows=4) == expected
