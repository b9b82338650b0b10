"""Every registered generative model trains, resumes and samples through the real ``medisynth`` CLI.

Issue 3's "Done when": for each model in ``MODEL_REGISTRY``, ``medisynth train DATA --model NAME``
on a prepared phantom set, ``medisynth train --resume RUN`` to a later step, and ``medisynth sample``
into an image folder that ``medisynth prepare`` can read back (pix2pix / edsr: a clear error that
points at ``medisynth pipeline``). The same on the real sets in ../shared/data (skipped where absent).

Networks are tiny (``--hp width=8`` and the like) and runs are 2 + 2 steps: this checks the wiring
(data -> trainer -> checkpoint -> sampler -> files), not image quality.
"""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from medisynth.cli import app
from medisynth.errors import MedisynthError
from medisynth.models import MODEL_REGISTRY

runner = CliRunner()
TRAIN_STEPS, RESUME_STEPS, N_SAMPLES = 2, 4, 3


# -- helpers ----------------------------------------------------------------------
def cli(*args: str | Path, ok: bool = True):
    """Invoke ``medisynth ARGS`` in-process; with ``ok`` fail with the output and traceback if it did not exit 0."""
    result = runner.invoke(app, [str(a) for a in args])
    if ok and result.exit_code != 0:
        import traceback

        tb = "".join(traceback.format_exception(*result.exc_info)) if result.exc_info else ""
        pytest.fail(f"medisynth {' '.join(map(str, args))} exited {result.exit_code}\n{result.output}\n{tb}")
    return result


def checkpoint_step(run: Path) -> int:
    """The step of the run's newest checkpoint, from its state.json."""
    folder = run / "checkpoints"
    latest = folder / (folder / "LATEST").read_text().strip()
    return int(json.loads((latest / "state.json").read_text())["step"])


def model_folders(run: Path) -> list[Path]:
    """The run folder itself, or its class-<i>/ folders for a --per-class run."""
    info = json.loads((run / "model.json").read_text())
    return [run / sub for sub in info["classes"].values()] if info.get("per_class") else [run]


def assert_finite_metrics(run: Path) -> None:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert lines, f"{run}/metrics.jsonl is empty"
    for record in lines:
        for key, value in record.items():
            if isinstance(value, float):
                assert math.isfinite(value), f"{run}/metrics.jsonl step {record['step']}: {key} = {value}"


def minority_class(data: Path) -> str:
    """The class with the fewest train images (what a user would sample to rebalance)."""
    manifest = json.loads((data / "manifest.json").read_text())
    train = manifest["counts"]["train"]
    return min(manifest["class_names"], key=lambda c: (train[c], c))


def check_image_folder(folder: Path, labels: dict[str, int], size: int, mode: str) -> None:
    """labels.csv has the expected number of rows per class label; every PNG is size x size in ``mode``."""
    with open(folder / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["label"]] = counts.get(row["label"], 0) + 1
        with Image.open(folder / "images" / f"{row['image']}.png") as image:
            assert (image.size, image.mode) == ((size, size), mode), f"{row['image']}.png"
    assert counts == labels
    assert len(list((folder / "images").glob("*.png"))) == len(rows)


def train_resume_sample(data: Path, model: str, run: Path, train_args: list[str], sample_args: list[str] | None,
                        tmp: Path):
    """train 2 steps -> resume to 4 -> sample; returns the sample folder (None when sampling must fail)."""
    cli("train", data, "--model", model, "--out", run, "--steps", TRAIN_STEPS, "--batch-size", 4,
        "--device", "cpu", "--sample-every", 0, "--log-every", 1, *train_args)
    for folder in model_folders(run):
        assert checkpoint_step(folder) == TRAIN_STEPS, folder
    cli("train", "--resume", run, "--steps", RESUME_STEPS)
    for folder in model_folders(run):
        assert checkpoint_step(folder) == RESUME_STEPS, folder
        assert_finite_metrics(folder)
        steps = [json.loads(line)["step"] for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert steps == list(range(1, RESUME_STEPS + 1)), f"{folder}/metrics.jsonl steps {steps}"
    out = tmp / f"samples-{run.name}"
    if sample_args is None:
        return cli("sample", run, "--out", out, "--n", N_SAMPLES, "--device", "cpu", ok=False)
    cli("sample", run, "--out", out, "--device", "cpu", *sample_args)
    return out


# -- phantom data -------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> dict[str, Path]:
    """Prepared phantom sets: fundus (5 grades, with vessel masks) at 32 and 128 px, CT (4 classes) at 64 px."""
    root = tmp_path_factory.mktemp("phantom")
    cli("phantom", "fundus", "--out", root / "fundus", "--n", 40, "--size", 128, "--proportions", "1,1,1,1,1")
    cli("phantom", "ct", "--out", root / "ct", "--n", 24, "--size", 64, "--proportions", "1,1,1,1")
    sets = {"fundus32": (root / "fundus", 32), "fundus128": (root / "fundus", 128), "ct64": (root / "ct", 64)}
    for name, (source, size) in sets.items():
        cli("prepare", source, "--out", root / name, "--size", size, "--workers", 1)
    return {name: root / name for name in sets}


TINY_GAN = ["--hp", "width=8", "--latent-dim", "8"]
TINY_WGAN = [*TINY_GAN, "--hp", "n_critic=1"]
TINY_VAE = ["--hp", "width=8", "--hp", "max_channels=16", "--latent-dim", "4"]
TINY_LKGAN = ["--hp", "width=4", "--hp", "max_channels=16", "--latent-dim", "8", "--hp", "n_critic=1"]
TINY_UNET = ["--hp", "num_channels=[8,8]"]

# (model, data set, train flags, how to sample: "class" = --per-class MINORITY=3, "n" = --n 3 unlabelled,
#  "error" = sample must refuse and point at `medisynth pipeline`, expected PNG mode)
CASES = [
    ("dcgan", "fundus32", ["--model-per-class", *TINY_GAN], "class", "RGB"),
    ("cgan", "fundus32", [*TINY_GAN, "--hp", "embed_dim=4"], "class", "RGB"),
    ("fastgan", "fundus32", ["--hp", "width=4", "--latent-dim", "8", "--hp", "embed_dim=4"], "class", "RGB"),
    ("fastgan", "ct64", ["--hp", "width=4", "--latent-dim", "8", "--hp", "embed_dim=4"], "class", "L"),
    ("wgan-gp", "fundus32", ["--model-per-class", *TINY_WGAN], "class", "RGB"),
    ("vae", "fundus32", ["--model-per-class", "--hp", "hidden=16", "--latent-dim", "4"], "class", "RGB"),
    ("conv-vae", "fundus32", ["--model-per-class", *TINY_VAE], "class", "RGB"),
    ("conv-cvae", "fundus32", TINY_VAE, "class", "RGB"),
    ("resvae", "fundus32", ["--model-per-class", *TINY_VAE, "--hp", "blocks=1"], "class", "RGB"),
    ("resvae", "fundus32", ["--target", "masks", *TINY_VAE, "--hp", "blocks=1"], "n", "L"),  # vessel maps
    ("lkgan-small", "ct64", ["--model-per-class", *TINY_LKGAN], "class", "L"),
    ("lkgan-v1", "fundus128", TINY_LKGAN, "n", "RGB"),
    ("lkgan-v2", "fundus128", TINY_LKGAN, "n", "RGB"),
    ("autoencoder-kl", "ct64", ["--model-per-class", *TINY_UNET], "class", "L"),
    ("diffusion", "fundus32", [*TINY_UNET, "--hp", "num_head_channels=8", "--hp", "sampling_steps=2"], "class", "RGB"),
    ("pix2pix", "fundus32", ["--hp", "ngf=4", "--hp", "ndf=4"], "error", None),
    ("edsr", "fundus32", ["--hp", "n_resblocks=1", "--hp", "n_feats=8", "--hp", "patch_size=16"], "error", None),
]


def test_every_registered_model_has_a_case():
    registered = {name for name in MODEL_REGISTRY if not name.startswith("toy-")}  # toy-* are trainer test doubles
    assert registered == {case[0] for case in CASES}


@pytest.mark.parametrize("model, data_key, train_args, how, mode", CASES,
                         ids=[f"{c[0]}-{c[1]}" + ("-masks" if "masks" in c[2] else "") for c in CASES])
def test_train_resume_sample(phantom, tmp_path, model, data_key, train_args, how, mode):
    data = phantom[data_key]
    size = json.loads((data / "manifest.json").read_text())["image_size"]
    minority = minority_class(data)
    sample_args = {"class": ["--per-class", f"{minority}={N_SAMPLES}"], "n": ["--n", N_SAMPLES], "error": None}[how]
    if model == "diffusion":
        sample_args += ["--sampling-steps", "2"]
    if model == "fastgan":  # the default model: every sampling option a GAN has
        sample_args += ["--truncation", "0.8", "--min-d-score", "0.0", "--max-similarity", "0.999"]
    out = train_resume_sample(data, model, tmp_path / model, train_args, sample_args, tmp_path)

    if how == "error":
        assert isinstance(out.exception, MedisynthError), out.output
        assert "medisynth pipeline" in str(out.exception)
        assert not (tmp_path / f"samples-{model}").exists()
        return
    label = minority if how == "class" else "unlabelled"
    check_image_folder(out, {label: N_SAMPLES}, size, mode)
    assert (out / "grid.png").is_file()
    written = json.loads((out / "sample.json").read_text())
    assert set(written["checkpoint_steps"].values()) == {RESUME_STEPS}  # sampled from the resumed checkpoint


def test_latent_diffusion_on_an_autoencoder_run(phantom, tmp_path):
    """diffusion --hp autoencoder_run=RUN (latent diffusion) trains, resumes and samples full-size images."""
    data = phantom["ct64"]
    cli("train", data, "--model", "autoencoder-kl", "--out", tmp_path / "ae", "--steps", 2, "--batch-size", 4,
        "--device", "cpu", "--sample-every", 0, *TINY_UNET)
    out = train_resume_sample(
        data, "diffusion", tmp_path / "latent-diffusion",
        [*TINY_UNET, "--hp", "num_head_channels=8", "--hp", "sampling_steps=2", "--hp", f"autoencoder_run={tmp_path / 'ae'}"],
        ["--per-class", "Stone=3"], tmp_path)
    check_image_folder(out, {"Stone": N_SAMPLES}, 64, "L")


def test_samples_read_back_by_prepare(phantom, tmp_path):
    """A sample folder is a valid `medisynth prepare` source (the image-folder layout)."""
    run = tmp_path / "cgan"
    cli("train", phantom["fundus32"], "--model", "cgan", "--out", run, "--steps", 1, "--batch-size", 4,
        "--device", "cpu", "--sample-every", 0, *TINY_GAN)
    cli("sample", run, "--out", tmp_path / "syn", "--per-class", "3=4,4=2", "--device", "cpu")
    cli("prepare", tmp_path / "syn", "--out", tmp_path / "syn-prepared", "--size", 32, "--workers", 1)
    manifest = json.loads((tmp_path / "syn-prepared" / "manifest.json").read_text())
    assert manifest["num_images"] == 6
    assert {c: sum(manifest["counts"][s][c] for s in manifest["counts"]) for c in manifest["class_names"]} == {"3": 4, "4": 2}


def test_console_script_reports_user_errors_in_one_line(phantom, tmp_path):
    """The installed `medisynth` script: a user error is one 'error:' line on stderr and exit status 2."""
    script = Path(sys.executable).with_name("medisynth")
    if not script.is_file():
        pytest.skip(f"console script not installed beside {sys.executable}")
    run = tmp_path / "edsr"
    cli("train", phantom["fundus32"], "--model", "edsr", "--out", run, "--steps", 1, "--batch-size", 4,
        "--device", "cpu", "--hp", "n_resblocks=1", "--hp", "n_feats=8", "--hp", "patch_size=16")
    done = subprocess.run([str(script), "sample", str(run), "--out", str(tmp_path / "s"), "--n", "2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error:") and "medisynth pipeline" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "s").exists()


# -- real data (../shared/data) ----------------------------------------------------------
REAL_CASES = [
    # (source inside shared/data, size, model, train flags, sample: class from data / "error")
    ("EyePACS_sample", 32, "cgan", [*TINY_GAN, "--hp", "embed_dim=4"], "class"),
    ("CT_Kidney_Normal_Cyst_Tumor_Stone", 64, "lkgan-small", ["--model-per-class", *TINY_LKGAN], "class"),
    ("DRIVE", 32, "pix2pix", ["--hp", "ngf=4", "--hp", "ndf=4"], "error"),
    ("PneumoniaMNIST/pneumoniamnist.npz", 32, "dcgan", ["--model-per-class", *TINY_GAN], "class"),
]


@pytest.mark.parametrize("source, size, model, train_args, how", REAL_CASES, ids=[c[2] for c in REAL_CASES])
def test_real_data(shared_data, tmp_path, source, size, model, train_args, how):
    path = shared_data / source
    if not path.exists():
        pytest.skip(f"{path} not found")
    data = tmp_path / "data"
    cli("prepare", path, "--out", data, "--size", size)
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["image_size"] == size
    minority = minority_class(data)
    sample_args = None if how == "error" else ["--per-class", f"{minority}={N_SAMPLES}"]
    out = train_resume_sample(data, model, tmp_path / model, train_args, sample_args, tmp_path)
    if how == "error":
        assert isinstance(out.exception, MedisynthError) and "medisynth pipeline" in str(out.exception)
        return
    check_image_folder(out, {minority: N_SAMPLES}, size, "RGB" if manifest["channels"] == 3 else "L")
