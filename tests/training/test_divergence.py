"""Divergence is caught in the step it happens: rollback once with halved learning rates, then stop;
metrics.jsonl stays strict JSON; no checkpoint ever holds non-finite weights; sample and balance
refuse one that does; degenerate samples are rejected and counted."""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from medisynth.errors import MedisynthError
from medisynth.models.base import register_model
from medisynth.training import toy
from medisynth.training.checkpoint import save_checkpoint
from medisynth.training.logging import MetricsLog
from medisynth.training.trainer import train

NAN_AT = 7  # the (1-based) step at which the model below reports a NaN loss, the first time only


@register_model("toy-nan-once")
class NanOnceGAN(toy.ToyGAN):
    """A toy GAN whose step NAN_AT reports Loss_D NaN the first time it runs (a transient blow-up)."""

    def training_step(self, batch, optimizers, step):
        figures = super().training_step(batch, optimizers, step)
        if step + 1 == NAN_AT and not getattr(NanOnceGAN, "fired", False):
            NanOnceGAN.fired = True
            figures["Loss_D"] = float("nan")
        return figures


@register_model("toy-flat")
class FlatGAN(toy.ToyGAN):
    """Generates constant (black) images: a broken generator."""

    @torch.no_grad()
    def generate(self, labels, generator=None, truncation=1.0, **options):
        return -torch.ones(len(labels), self.spec.channels, self.spec.image_size, self.spec.image_size)


def metrics_lines(run: Path) -> list[dict]:
    """Every line of metrics.jsonl through strict JSON (json.loads accepts NaN: forbid it)."""
    def no_constants(name):
        raise AssertionError(f"non-JSON constant {name} in metrics.jsonl")

    text = (run / "metrics.jsonl").read_text()
    return [json.loads(line, parse_constant=no_constants) for line in text.splitlines() if line.strip()]


def test_absurd_learning_rate_rolls_back_once_then_stops(toy_data, tmp_path, make_config, capsys):
    run = tmp_path / "run"
    with pytest.raises(MedisynthError, match=r"training diverged at step \d+ .*stopped") as err:
        train(make_config(toy_data, run, model="toy-gan", lr_g=1e12, lr_d=1e12, steps=20, log_every=1,
                          checkpoint_every=2))
    assert "\n" not in str(err.value)
    assert re.search(r"diverged at step \d+ .*rolled back to step 0 with the learning rates halved",
                     capsys.readouterr().err)
    metrics_lines(run)  # valid JSON, whatever was logged
    assert not list(run.glob("checkpoints/step-*"))  # it diverged before the first checkpoint


def test_absurd_learning_rate_from_the_cli(toy_data, tmp_path, medisynth_cli):
    run = tmp_path / "run"
    code, output = medisynth_cli("train", toy_data, "--model", "toy-gan", "--out", run, "--steps", "20",
                                 "--batch-size", "4", "--lr-g", "1e12", "--lr-d", "1e12", "--sample-every", "0",
                                 "--device", "cpu", "--log-every", "1")
    assert code == 2, output
    assert "Traceback" not in output
    lines = output.strip().splitlines()
    assert len(lines) == 2 and "rolled back" in lines[0] and "stopped" in lines[1], output
    metrics_lines(run)
    code, output = medisynth_cli("sample", run, "--out", tmp_path / "samples", "--n", "2")
    assert code == 2 and "no checkpoint" in output and "Traceback" not in output, output


@pytest.mark.parametrize("policy", ["rollback", "stop"])
def test_transient_nan_rolls_back_to_the_checkpoint_or_stops(toy_data, tmp_path, make_config, capsys, policy):
    NanOnceGAN.fired = False
    run = tmp_path / "run"
    config = make_config(toy_data, run, model="toy-nan-once", steps=10, log_every=1, checkpoint_every=5, on_nan=policy)
    if policy == "stop":
        with pytest.raises(MedisynthError, match=f"diverged at step {NAN_AT} \\(Loss_D nan\\); stopped"):
            train(config)
        assert (run / "checkpoints" / "LATEST").read_text().strip() == "step-000005"
        assert [r["step"] for r in metrics_lines(run)] == list(range(1, NAN_AT))
        return
    result = train(config)
    assert f"diverged at step {NAN_AT} (Loss_D nan); rolled back to step 5" in capsys.readouterr().err
    assert result.steps == 10
    assert [r["step"] for r in metrics_lines(run)] == list(range(1, 11))  # the rolled-back steps logged once
    state = json.loads((run / "checkpoints" / "step-000010" / "training.json").read_text())
    assert '"lr", 0.001' in json.dumps(state)  # toy lr 2e-3, halved, is what the run goes on with


def test_checkpoint_with_non_finite_weights_is_never_written(toy_data, tmp_path):
    model = toy.ToyGAN(_spec(), toy.ToyHyper())
    with torch.no_grad():
        next(model.parameters()).fill_(float("inf"))
    with pytest.raises(MedisynthError, match="refusing to checkpoint step 3: .* not finite"):
        save_checkpoint(tmp_path, 3, model, model.configure_optimizers(), {})
    assert not list((tmp_path / "checkpoints").glob("step-*"))


def _spec():
    from medisynth.models.base import DataSpec

    return DataSpec(image_size=16, channels=3, class_names=["0", "1"])


def test_metrics_log_writes_null_for_non_finite(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    log.write({"step": 1, "Loss_D": float("nan"), "Loss_G": float("inf"), "n": torch.tensor(2.5)})
    log.close()
    assert metrics_lines(tmp_path) == [{"step": 1, "Loss_D": None, "Loss_G": None, "n": 2.5}]


@pytest.fixture
def nan_run(toy_run, tmp_path) -> Path:
    """A copy of the toy run whose checkpoint holds NaN weights (as one saved before divergence was caught:
    no checksums in its state.json)."""
    run = tmp_path / "nan_run"
    shutil.copytree(toy_run, run)
    checkpoint = run / "checkpoints" / (run / "checkpoints" / "LATEST").read_text().strip()
    weights = load_file(checkpoint / "model.safetensors")
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = torch.full_like(weights[first], math.nan)
    save_file(weights, checkpoint / "model.safetensors")
    state = json.loads((checkpoint / "state.json").read_text())
    state.pop("checksums", None)
    (checkpoint / "state.json").write_text(json.dumps(state))
    return run


@pytest.mark.parametrize("command", ["sample {run} --out {out} --n 2", "balance {data} --run {run} --out {out}",
                                     "train --resume {run} --steps 12"])
def test_nan_checkpoint_is_refused(nan_run, toy_data, tmp_path, medisynth_cli, command):
    out = tmp_path / "out"
    code, output = medisynth_cli(*command.format(run=nan_run, out=out, data=toy_data).split())
    assert code == 2, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    assert "model.safetensors holds weights that are not finite" in output
    assert not out.exists()


def test_degenerate_samples_are_rejected_and_counted(toy_data, tmp_path, make_config, capsys):
    from medisynth.sampling import SampleConfig, sample

    run = tmp_path / "flat"
    train(make_config(toy_data, run, model="toy-flat", steps=2))
    result = sample(SampleConfig(run=run, out=tmp_path / "samples", n=4, max_attempts=2, device="cpu", progress=False))
    assert sum(result.written.values()) == 0
    report = json.loads((tmp_path / "samples" / "sample.json").read_text())
    assert sum(report["degenerate"].values()) == sum(result.attempts.values()) >= 8
    assert "degenerate image(s)" in capsys.readouterr().err
