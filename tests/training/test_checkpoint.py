"""Checkpoints: round trip, atomic writes that survive interruption, clear errors for bad runs/files."""
from __future__ import annotations

import errno
import json
import random

import numpy as np
import pytest
import torch
from safetensors import SafetensorError

from medisynth.errors import MedisynthError
from medisynth.models.base import DataSpec, build_model
from medisynth.training import checkpoint as ckpt
from medisynth.runs import latest_checkpoint
from medisynth.training.checkpoint import (
    flatten_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)
from medisynth.training import toy  # noqa: F401  (registers toy-cgan)

SPEC = DataSpec(image_size=16, channels=3, class_names=["0", "1"])


def trained_model(steps: int = 3, seed: int = 0, **hyper):
    torch.manual_seed(seed)
    model = build_model("toy-cgan", SPEC, hyper)
    optimizers = model.configure_optimizers()
    for step in range(steps):
        batch = {"image": torch.rand(4, 3, 16, 16) * 2 - 1, "label": torch.tensor([0, 1, 0, 1])}
        model.training_step(batch, optimizers, step)
        model.update_ema(0.5)
    return model, optimizers


def fresh_model(**hyper):
    torch.manual_seed(123)  # a different init, so equality after loading means something
    model = build_model("toy-cgan", SPEC, hyper)
    return model, model.configure_optimizers()


def make_run(tmp_path, name="run"):
    run = tmp_path / name
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "model.json").write_text("{}")
    return run


def test_flatten_round_trip_keeps_types():
    tree = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}}, "groups": [{"params": [0, 1], "betas": (0.5, 0.9)}],
            "py": random.getstate(), "np": np.random.get_state()}
    tensors: dict = {}
    encoded = json.loads(json.dumps(flatten_state(tree, tensors)))
    back = unflatten_state(encoded, tensors)
    assert list(back["state"]) == [0]  # int keys stay ints
    assert torch.equal(back["state"][0]["exp_avg"], torch.ones(2))
    assert back["groups"][0]["betas"] == (0.5, 0.9)
    random.setstate((back["py"][0], tuple(back["py"][1]), back["py"][2]))
    np.random.set_state(back["np"])
    assert np.array_equal(back["np"][1], tree["np"][1])


def test_round_trip_weights_optimisers_ema_and_rng(tmp_path):
    run = make_run(tmp_path)
    model, optimizers = trained_model()
    torch.manual_seed(77)
    rng_before = torch.get_rng_state()
    path = save_checkpoint(run, 3, model, optimizers, {"epoch": 1.0, "elapsed": 2.5})
    expected_next = torch.rand(5)

    loaded, loaded_opts = fresh_model()
    state = load_checkpoint(path, loaded, loaded_opts, rng=True)
    assert state["step"] == 3 and state["elapsed"] == 2.5
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert torch.equal(torch.rand(5), expected_next)
    for k, v in model.state_dict().items():  # includes ema_generator.*
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert any(k.startswith("ema_generator.") for k in model.state_dict())
    for name in optimizers:
        a, b = optimizers[name].state_dict(), loaded_opts[name].state_dict()
        assert a["param_groups"] == b["param_groups"]
        for pid, slots in a["state"].items():
            for slot, value in slots.items():
                assert torch.equal(value, b["state"][pid][slot]), (name, pid, slot)


def test_only_the_latest_checkpoint_is_kept(tmp_path):
    run = make_run(tmp_path)
    model, optimizers = trained_model(1)
    save_checkpoint(run, 1, model, optimizers, {})
    save_checkpoint(run, 2, model, optimizers, {})
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["LATEST", "step-000002"]
    assert latest_checkpoint(run).name == "step-000002"


@pytest.mark.parametrize("fail_at", ["weights", "training", "pointer"])
def test_interrupted_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch, fail_at):
    run = make_run(tmp_path)
    model, optimizers = trained_model(1)
    save_checkpoint(run, 1, model, optimizers, {})
    good = {k: v.clone() for k, v in model.state_dict().items()}
    model2, optimizers2 = trained_model(2, seed=5)

    real_save = ckpt.save_file
    calls = {"n": 0}

    def failing_save(tensors, filename, metadata=None):
        calls["n"] += 1
        if (fail_at == "weights" and calls["n"] == 1) or (fail_at == "training" and calls["n"] == 2):
            with open(filename, "wb") as f:  # half a file, then the "power cut"
                f.write(b"\x00" * 10)
            raise KeyboardInterrupt
        return real_save(tensors, filename, metadata=metadata)

    def failing_pointer(path, text):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "save_file", failing_save)
    if fail_at == "pointer":
        monkeypatch.setattr(ckpt, "atomic_write_text", failing_pointer)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(run, 2, model2, optimizers2, {})

    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp left
    assert latest_checkpoint(run).name == "step-000001"
    restored, _ = fresh_model()
    load_checkpoint(latest_checkpoint(run), restored)
    for k, v in good.items():
        assert torch.equal(restored.state_dict()[k], v)


@pytest.mark.parametrize("failure", [
    SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),  # safetensors' own
    OSError(errno.ENOSPC, "No space left on device"),
])
def test_full_disk_is_one_error_naming_the_checkpoint_and_the_resume(tmp_path, monkeypatch, failure):
    run = make_run(tmp_path)
    model, optimizers = trained_model(1)
    save_checkpoint(run, 1, model, optimizers, {})

    def full_disk(tensors, filename, metadata=None):
        with open(filename, "wb") as f:  # a few bytes got out before the disk filled
            f.write(b"\x00" * 10)
        raise failure

    monkeypatch.setattr(ckpt, "save_file", full_disk)
    with pytest.raises(MedisynthError) as info:
        save_checkpoint(run, 2, *trained_model(2, seed=5), {})
    message = str(info.value)
    assert str(run / "checkpoints" / "step-000002") in message and "No space left on device" in message
    assert f"step-000001 is intact" in message and f"--resume {run}" in message
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp left
    assert latest_checkpoint(run).name == "step-000001"

    # the first checkpoint of a run: nothing to resume from (train --resume would refuse), so train again
    first = make_run(tmp_path, "first")
    with pytest.raises(MedisynthError, match=f"has no checkpoint yet: .* again with --out {first} --overwrite"):
        save_checkpoint(first, 1, *trained_model(1), {})
    assert not list((first / "checkpoints").iterdir())


def test_lost_pointer_falls_back_to_the_newest_step(tmp_path):
    run = make_run(tmp_path)
    model, optimizers = trained_model(1)
    save_checkpoint(run, 4, model, optimizers, {})
    (run / "checkpoints" / "LATEST").unlink()
    assert latest_checkpoint(run).name == "step-000004"


@pytest.mark.parametrize("layout, message", [
    ("missing", "no such run folder"),
    ("empty", "not a medisynth run"),
    ("config-only", "not a medisynth run"),
    ("no-checkpoint", "no checkpoint yet"),
])
def test_bad_run_folders(tmp_path, layout, message):
    run = tmp_path / "run"
    if layout != "missing":
        run.mkdir()
    if layout == "config-only":
        (run / "config.json").write_text("{}")
    if layout == "no-checkpoint":
        run = make_run(tmp_path, "run2")
    with pytest.raises(MedisynthError, match=message):
        latest_checkpoint(run)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "delete"])
def test_damaged_weights_file_is_explained(tmp_path, damage):
    run = make_run(tmp_path)
    model, optimizers = trained_model(1)
    path = save_checkpoint(run, 1, model, optimizers, {}) / "model.safetensors"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a safetensors file at all")
    else:
        path.unlink()
    with pytest.raises(MedisynthError, match="damaged|missing") as info:
        load_checkpoint(path.parent, fresh_model()[0])
    assert "model.safetensors" in str(info.value)


def test_checkpoint_of_another_model_is_explained(tmp_path):
    run = make_run(tmp_path)
    model, optimizers = trained_model(1)
    path = save_checkpoint(run, 1, model, optimizers, {})
    wider, _ = fresh_model(width=16)
    with pytest.raises(MedisynthError, match="does not fit.*shape mismatch"):
        load_checkpoint(path, wider)
    other = build_model("toy-gan", DataSpec(16, 3, ["0", "1"]))
    with pytest.raises(MedisynthError, match="does not fit"):
        load_checkpoint(path, other)


def test_optimiser_state_of_another_model_is_explained(tmp_path):
    run = make_run(tmp_path)
    model, optimizers = trained_model(1)
    path = save_checkpoint(run, 1, model, {"g": optimizers["g"]}, {})
    fresh, fresh_opts = fresh_model()
    with pytest.raises(MedisynthError, match="optimisers"):
        load_checkpoint(path, fresh, fresh_opts)


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_checkpoint_files_and_folders_follow_the_umask(tmp_path, umask):
    """A run on a shared server is as readable as the user's other files (mkdtemp alone makes 0700)."""
    import os
    import stat

    run = make_run(tmp_path)
    model, optimizers = trained_model(1)
    old = os.umask(umask)
    try:
        folder = save_checkpoint(run, 1, model, optimizers, {})
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    for path in [*folder.iterdir(), run / "checkpoints" / "LATEST"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path.name


# -- damage that used to pass silently or end in a traceback ---------------------------------
def flip_a_tensor_byte(path) -> None:
    """Change one byte inside the tensor data, leaving the safetensors header intact."""
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header + (len(data) - header) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name", ["model.safetensors", "training.safetensors"])
def test_flipped_bytes_fail_the_checksum(tmp_path, name):
    run = make_run(tmp_path)
    model, optimizers = trained_model(1)
    path = save_checkpoint(run, 1, model, optimizers, {})
    flip_a_tensor_byte(path / name)
    with pytest.raises(MedisynthError, match=f"{name} is damaged: its tensors do not match the checksum"):
        load_checkpoint(path, *fresh_model(), rng=True)


@pytest.mark.parametrize("content", [b"\xff\xfe\x00binary\x00", b"../../../other_run/checkpoints/step-000001\n",
                                     b"/etc\n", b"step-1/../../x\n"])
def test_latest_may_only_name_a_step_of_its_own_run(tmp_path, content):
    run = make_run(tmp_path)
    model, optimizers = trained_model(1)
    save_checkpoint(run, 1, model, optimizers, {})
    (run / "checkpoints" / "LATEST").write_bytes(content)
    with pytest.raises(MedisynthError, match="LATEST is damaged: it must name a checkpoint of this run"):
        latest_checkpoint(run)


@pytest.mark.parametrize("file, content, message", [
    ("state.json", {"step": "ten"}, "state.json is damaged: it must hold a mapping with a non-negative integer 'step'"),
    ("state.json", [1, 2], "state.json is damaged"),
    ("training.json", {"rng": {}}, "training.json is damaged: no 'optimizers' mapping"),
    ("training.json", {"optimizers": {"__tensor__": "nope"}, "rng": {}}, "training.json is damaged"),
])
def test_damaged_json_of_a_checkpoint_is_one_error(tmp_path, file, content, message):
    run = make_run(tmp_path)
    model, optimizers = trained_model(1)
    path = save_checkpoint(run, 1, model, optimizers, {})
    (path / file).write_text(json.dumps(content))
    with pytest.raises(MedisynthError, match=message):
        load_checkpoint(path, *fresh_model(), rng=True)


def test_kill_inside_a_checkpoint_write_is_cleaned_up_at_the_next_start(toy_data, tmp_path):
    """A real kill -9 while the second checkpoint's files are written; the resume removes the temp folder."""
    import os
    import signal
    import subprocess
    import sys

    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    run = tmp_path / "run"
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "import medisynth.training.checkpoint as ckpt\n"
        "from medisynth.training import toy\n"
        "from medisynth.training.config import TrainConfig\n"
        "from medisynth.training.trainer import train\n"
        "real = ckpt._fsync_dir_files\n"
        "def killing(folder):\n"
        "    if '000004' in folder.name: os.kill(os.getpid(), signal.SIGKILL)\n"
        "    real(folder)\n"
        "ckpt._fsync_dir_files = killing\n"
        f"train(TrainConfig(data=Path({str(toy_data)!r}), model='toy-gan', out=Path({str(run)!r}), steps=6,\n"
        "    batch_size=4, sample_every=0, checkpoint_every=2, device='cpu', progress=False))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, done.stderr
    stale = list((run / "checkpoints").glob(".step-000004.tmp-*"))
    assert stale and (stale[0] / "model.safetensors").exists()  # the kill came inside the write
    assert latest_checkpoint(run).name == "step-000002"  # never mistaken for a checkpoint
    result = train(TrainConfig(resume=run, steps=6, progress=False))
    assert result.steps == 6
    assert not [p.name for p in (run / "checkpoints").iterdir() if p.name.startswith(".step-")]
