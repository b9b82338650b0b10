"""Damaged or odd input ends in ONE line naming the file or flag, exit 2, no traceback, no output
left behind: each case feeds exactly the input that used to end in a traceback."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medisynth.training import toy


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """P/data (prepared, toy) and P/run (a 2-step toy-gan run with one checkpoint)."""
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    root = tmp_path_factory.mktemp("bad_input")
    data = toy.write_toy_dataset(root / "data")
    train(TrainConfig(data=data, model="toy-gan", out=root / "run", steps=2, batch_size=4, sample_every=0,
                      device="cpu", progress=False))
    return root


def assert_one_line_error(code: int, output: str, *names: str) -> None:
    assert code == 2, output
    assert "Traceback" not in output, output
    lines = [line for line in output.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    for name in names:
        assert name in lines[0], output


TRAIN = ["--model", "toy-gan", "--steps", "1", "--batch-size", "4", "--device", "cpu", "--sample-every", "0"]


@pytest.mark.parametrize("flags, names", [
    (["--lr-g", "-1"], ["--lr-g -1"]),
    (["--lr-g", "nan"], ["--lr-g nan"]),
    (["--lr-d", "inf"], ["--lr-d inf"]),
    (["--hp", "width=banana"], ["width='banana'", "--hp width"]),
    (["--hp", "width=!!python/object/apply:os.system ['echo hacked']"], ["width=", "--hp width"]),
    (["--hp", "width=!!binary aGVsbG8="], ["width=b'hello'", "--hp width"]),
    (["--hp", "lr_g=2020-01-01"], ["lr_g=", "--hp lr_g"]),
    (["--hp", "lr_g=-0.1"], ["lr_g=-0.1", "positive"]),
    (["--on-nan", "ignore"], ["--on-nan 'ignore'"]),
])
def test_bad_training_flags(project, tmp_path, medisynth_cli, flags, names):
    out = tmp_path / "run"
    assert_one_line_error(*medisynth_cli("train", project / "data", "--out", out, *TRAIN, *flags), *names)
    assert not out.exists()


def test_an_unknown_model_is_named_before_a_missing_budget(project, tmp_path, medisynth_cli):
    out = tmp_path / "run"
    assert_one_line_error(*medisynth_cli("train", project / "data", "--out", out, "--model", "toy-gna"),
                          "unknown model 'toy-gna'", "toy-gan")
    assert not out.exists()


@pytest.mark.parametrize("damage", ["truncated", "pickled"])
def test_damaged_npy_shard(project, tmp_path, medisynth_cli, damage):
    data = tmp_path / "data"
    shutil.copytree(project / "data", data)
    shard = data / "images-00000.npy"
    if damage == "truncated":
        shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    else:
        np.save(shard, np.array([{"payload": 1}, None], dtype=object), allow_pickle=True)
    out = tmp_path / "run"
    assert_one_line_error(*medisynth_cli("train", data, "--out", out, *TRAIN), str(shard), "damaged")
    assert not out.exists()


def _latest(run: Path) -> Path:
    return run / "checkpoints" / (run / "checkpoints" / "LATEST").read_text().strip()


def _damage_state_step(run):
    (_latest(run) / "state.json").write_text(json.dumps({"step": "ten"}))
    return "state.json"


def _damage_training_json(run):
    path = _latest(run) / "training.json"
    tree = json.loads(path.read_text())
    del tree["optimizers"]
    path.write_text(json.dumps(tree))
    return "training.json"


def _damage_latest_binary(run):
    (run / "checkpoints" / "LATEST").write_bytes(b"\x89\xff\x00\x13garbage")
    return "LATEST"


def _damage_latest_escape(run):
    (run / "checkpoints" / "LATEST").write_text("../../../other_run/checkpoints/step-000002\n")
    return "LATEST"


def _flip_weight_bytes(run):
    path = _latest(run) / "model.safetensors"
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header + 5] ^= 0x55
    path.write_bytes(bytes(data))
    return "model.safetensors"


@pytest.mark.parametrize("damage", [_damage_state_step, _damage_training_json, _damage_latest_binary,
                                    _damage_latest_escape, _flip_weight_bytes])
@pytest.mark.parametrize("command", ["resume", "sample"])
def test_damaged_run(project, tmp_path, medisynth_cli, damage, command):
    run = tmp_path / "run"
    shutil.copytree(project / "run", run)
    name = damage(run)
    if command == "sample" and name == "training.json":
        pytest.skip("sampling reads only the weights and state.json")
    before = sorted(p.name for p in run.rglob("*"))
    out = tmp_path / "samples"
    args = ["train", "--resume", run, "--steps", "4"] if command == "resume" else ["sample", run, "--out", out, "--n", "2"]
    assert_one_line_error(*medisynth_cli(*args), name)
    assert not out.exists()
    assert sorted(p.name for p in run.rglob("*")) == before


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file systems refuse names that are not UTF-8")
def test_non_utf8_file_name_in_prepare(tmp_path, medisynth_cli):
    source = tmp_path / "source"
    for cls in ("a", "b"):
        (source / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((20, 20, 3), 40 * i + (cls == "b") * 100, np.uint8)).save(source / cls / f"{i}.png")
    odd = os.path.join(os.fsencode(source / "a"), b"caf\xe9.png")  # Latin-1 bytes: not valid UTF-8
    with open(odd, "wb") as f:
        Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(f, format="PNG")
    out = tmp_path / "prepared"
    assert_one_line_error(*medisynth_cli("prepare", source, "--out", out, "--size", "16"), "caf", "UTF-8")
    assert not out.exists()


def test_pickled_domain_classifier_cache_is_rebuilt(tmp_path, capsys):
    import pickle

    from medisynth.classifier import domain_classifier
    from medisynth.downstream.toy import write_toy_prepared

    write_toy_prepared(tmp_path / "data", {"train": [6, 6], "val": [2, 2], "test": [2, 2]})
    cache = tmp_path / "cache"
    options = dict(cache_dir=cache, device="cpu", epochs=1, width=4, progress=False)
    domain_classifier(tmp_path / "data", **options)
    weights = next((cache / "classifiers").glob("*.safetensors"))
    weights.write_bytes(pickle.dumps({"conv.weight": [1, 2, 3]}))
    model = domain_classifier(tmp_path / "data", **options)  # rebuilt, not fatal
    assert model is not None
    assert "cached domain classifier unusable" in capsys.readouterr().err
    from safetensors.torch import load_file

    load_file(str(weights))  # the cache holds a safetensors file again


# -- cases that used to pass silently ---------------------------------------------------------
def _npz(path: Path, splits: dict[str, tuple[int, int]]) -> Path:
    """A MedMNIST-style npz: split -> (images, labels) counts; labels cycle over 2 classes."""
    from medisynth.training.toy import write_toy_medmnist

    return write_toy_medmnist(path, {split: np.arange(n_labels) % 2 for split, (_, n_labels) in splits.items()},
                              images={split: n_images for split, (n_images, _) in splits.items()})


def test_npz_with_fewer_labels_than_images(tmp_path, medisynth_cli):
    npz = _npz(tmp_path / "tiny.npz", {"train": (10, 7), "val": (4, 4), "test": (4, 4)})
    out = tmp_path / "out"
    assert_one_line_error(*medisynth_cli("prepare", npz, "--out", out, "--size", "28"), str(npz),
                          "train_images has 10 images but train_labels has 7")
    assert not out.exists()


def test_npz_without_val_and_test_is_noted(tmp_path, medisynth_cli):
    npz = _npz(tmp_path / "tiny.npz", {"train": (10, 10)})
    code, output = medisynth_cli("prepare", npz, "--out", tmp_path / "out", "--size", "28")
    assert code == 0, output
    assert f"note: {npz} has no val or test images" in output


def test_clamped_batch_size_is_what_config_json_records(project, tmp_path, medisynth_cli):
    run = tmp_path / "run"
    code, output = medisynth_cli("train", project / "data", "--out", run, "--model", "toy-gan", "--steps", "1",
                                 "--batch-size", "500", "--device", "cpu", "--sample-every", "0")
    assert code == 0, output
    train_images = 12 + 6  # toy.write_toy_dataset's default train split
    assert f"--batch-size 500 is more than the {train_images} training images" in output
    assert json.loads((run / "config.json").read_text())["batch_size"] == train_images


@pytest.mark.parametrize("command", ["evaluate {data} --synthetic {fake} --out {out} --features pixels",
                                     "utility {data} --synthetic {fake} --out {out} --protocols real+synthetic"])
def test_damaged_image_advises_only_flags_the_command_has(tmp_path, medisynth_cli, command):
    from medisynth.downstream.toy import toy_images, write_image_folder, write_toy_prepared

    write_toy_prepared(tmp_path / "data", {"train": [4, 4], "val": [2, 2], "test": [2, 2]})
    fake = write_image_folder(tmp_path / "fake", toy_images([0, 1, 0, 1], 16, 3, seed=1), ["0", "1", "0", "1"])
    broken = sorted((fake / "images").iterdir())[1]
    broken.write_bytes(broken.read_bytes()[:40])
    out = tmp_path / "out"
    code, output = medisynth_cli(*command.format(data=tmp_path / "data", fake=fake, out=out).split())
    assert_one_line_error(code, output, broken.name, "cannot decode")
    assert "--skip-bad" not in output
    assert not out.exists()


# -- prepare: sizes, labels, links, masks, CSV layout -------------------------------------------
def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _noise(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)


def _class_folders(root: Path, per_class: int = 4, side: int = 32) -> Path:
    for k, cls in enumerate(("a", "b")):
        for i in range(per_class):
            _png(root / cls / f"{i}.png", _noise((side, side, 3), 10 * k + i))
    return root


def _label_csv(root: Path, labels: list[str], header: str = "image,label", sep: str = ",",
               image_dir: str = "images", csv_name: str = "labels.csv") -> Path:
    lines = [header.replace(",", sep)]
    for i, label in enumerate(labels):
        _png(root / image_dir / f"im{i:02d}.png", _noise((32, 32, 3), i))
        lines.append(f"im{i:02d}{sep}{label}")
    (root / csv_name).write_text("\n".join(lines) + "\n")
    return root / csv_name


def _prepare(cli, source, out, *flags):
    return cli("prepare", source, "--out", out, "--size", "16", "--workers", "1", *flags)


@pytest.mark.parametrize("height, width, names", [(1, 1, ["1x1 px", "under 4 px"]),
                                                  (10, 2000, ["2000x10 px", "beyond 20:1"])])
def test_degenerate_image_size_is_refused(tmp_path, medisynth_cli, height, width, names):
    source = _class_folders(tmp_path / "source")
    odd = _png(source / "a" / "odd.png", np.full((height, width, 3), 200, np.uint8))
    out = tmp_path / "out"
    assert_one_line_error(*_prepare(medisynth_cli, source, out), str(odd), *names, "--skip-bad")
    assert not out.exists()
    code, output = _prepare(medisynth_cli, source, out, "--skip-bad")
    assert code == 0, output
    skipped = json.loads((out / "manifest.json").read_text())["skipped"]
    assert [s["item"] for s in skipped] == [str(odd)]


@pytest.mark.parametrize("odd_shape, fill, size, kind, text", [
    ((20, 64, 3), None, 16, "elongated", "longer than 3:1"),
    ((32, 32, 3), 7, 16, "flat", "of one colour"),
    ((32, 32, 3), None, 160, "upscaled", "enlarged more than 4x"),
])
def test_odd_images_are_warned_and_counted(tmp_path, medisynth_cli, odd_shape, fill, size, kind, text):
    source = _class_folders(tmp_path / "source", side=48)
    odd = _png(source / "b" / "odd.png", _noise(odd_shape, 99) if fill is None else np.full(odd_shape, fill, np.uint8))
    out = tmp_path / "out"
    code, output = medisynth_cli("prepare", source, "--out", out, "--size", size, "--workers", "1")
    assert code == 0, output
    warnings = json.loads((out / "manifest.json").read_text())["warnings"]
    assert warnings == {kind: {"count": 1, "example": str(odd)}}  # 160 px: 4x the 48 px images is 192, not over
    assert f"warning: 1 image(s) {text}" in output


def test_label_outside_given_classes_lists_them(tmp_path, medisynth_cli):
    csv_path = _label_csv(tmp_path / "source", ["0", "1"] * 4 + ["banana"])
    out = tmp_path / "out"
    assert_one_line_error(*_prepare(medisynth_cli, tmp_path / "source", out, "--classes", "0,1"),
                          f"{csv_path} row 10", "'banana'", "classes 0, 1")
    assert not out.exists()


@pytest.mark.parametrize("layout", ["grades", "balanced"])
def test_label_outside_the_layouts_classes_needs_allow_new_classes(tmp_path, medisynth_cli, layout):
    source = tmp_path / "source"
    if layout == "grades":  # EyePACS: image,level with train/: the DR grades 0-4 are the classes
        csv_path = _label_csv(source, ["0", "1", "2", "3", "4"] * 2 + ["7"], header="image,level",
                              image_dir="train", csv_name="trainLabels.csv")
        unknown, known = "'7'", "classes 0, 1, 2, 3, 4"
    else:  # a `medisynth balance` folder: balance.json lists the real data set's classes
        csv_path = _label_csv(source, ["cyst", "normal"] * 4 + ["banana"])
        (source / "balance.json").write_text(json.dumps({"per_class": [{"class": "cyst"}, {"class": "normal"}]}))
        unknown, known = "'banana'", "classes cyst, normal"
    out = tmp_path / "out"
    assert_one_line_error(*_prepare(medisynth_cli, source, out), str(csv_path), unknown, known,
                          "--allow-new-classes")
    assert not out.exists()
    code, output = _prepare(medisynth_cli, source, out, "--allow-new-classes")
    assert code == 0, output
    assert unknown.strip("'") in json.loads((out / "manifest.json").read_text())["class_names"]


def test_allow_new_classes_with_classes_is_refused(tmp_path, medisynth_cli):
    _label_csv(tmp_path / "source", ["0", "1"] * 4)
    out = tmp_path / "out"
    assert_one_line_error(*_prepare(medisynth_cli, tmp_path / "source", out, "--classes", "0,1",
                                    "--allow-new-classes"), "--allow-new-classes", "--classes")
    assert not out.exists()


def test_one_image_class_in_a_generic_csv_is_warned(tmp_path, medisynth_cli):
    _label_csv(tmp_path / "source", ["0", "1"] * 4 + ["banana"])
    code, output = _prepare(medisynth_cli, tmp_path / "source", tmp_path / "out")
    assert code == 0, output
    assert "warning: class(es) banana (1) have under 3 images" in output


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need privileges on Windows")
@pytest.mark.parametrize("layout", ["folders", "csv"])
def test_dangling_symlink_is_counted(tmp_path, medisynth_cli, layout):
    source = tmp_path / "source"
    if layout == "folders":
        _class_folders(source)
        link = source / "a" / "moved.png"
    else:
        csv_path = _label_csv(source, ["0", "1"] * 4)
        link = source / "images" / "moved.png"
        csv_path.write_text(csv_path.read_text() + "moved,1\n")
    link.symlink_to(tmp_path / "elsewhere" / "moved.png")
    out = tmp_path / "out"
    code, output = _prepare(medisynth_cli, source, out)
    assert code == 0, output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["num_images"] == 8
    assert [s["item"] for s in manifest["skipped"]] == [str(link)]
    assert "dangling symbolic link" in manifest["skipped"][0]["reason"]
    assert f"skipped 1 bad item(s)" in output and str(link) in output


def _hrf(root: Path, vessel_mask) -> Path:
    """An HRF-layout folder of 6 images (2 per class); image 0's vessel mask is ``vessel_mask`` (None: absent)."""
    for i, cls in enumerate(["h", "dr", "g"] * 2):
        name = f"{i:02d}_{cls}"
        _png(root / "images" / f"{name}.png", _noise((48, 64, 3), i))
        stripes = np.zeros((48, 64), np.uint8)
        stripes[10:20] = 255
        mask = stripes if i else vessel_mask
        if mask is not None:
            _png(root / "manual1" / f"{name}.png", mask)
        _png(root / "mask" / f"{name}_mask.png", np.full((48, 64), 255, np.uint8))
    return root


def test_soft_mask_is_counted(tmp_path, medisynth_cli):
    ramp = np.tile(np.linspace(0, 255, 64).astype(np.uint8), (48, 1))
    source = _hrf(tmp_path / "hrf", ramp)
    out = tmp_path / "out"
    code, output = _prepare(medisynth_cli, source, out)
    assert code == 0, output
    warnings = json.loads((out / "manifest.json").read_text())["warnings"]
    assert warnings == {"soft_mask": {"count": 1, "example": str(source / "manual1" / "00_h.png")}}
    assert "warning: 1 mask(s) not binary" in output


@pytest.mark.parametrize("odd_index", [0, 3])
def test_grayscale_file_among_colour_ones_is_named(tmp_path, medisynth_cli, odd_index):
    source = _class_folders(tmp_path / "source")
    odd = source / "a" / f"{odd_index}.png"
    Image.fromarray(np.full((32, 32), 5000, np.uint16)).save(odd)  # 16-bit grayscale
    out = tmp_path / "out"
    code, output = _prepare(medisynth_cli, source, out)
    assert_one_line_error(code, output, "--channels")
    assert output.strip().split("\n")[-1].startswith(f"error: {odd}: has 1 channel(s) where the other images have 3")
    assert not out.exists()


@pytest.mark.parametrize("flags, missing", [
    (["--label-column", "grade"], "no column 'grade' for --label-column"),
    (["--source", "csv", "--id-column", "image", "--label-column", "grade"], "no column 'grade' for --label-column"),
    (["--id-column", "file"], "no column 'file' for --id-column"),
])
def test_wrong_csv_column_names_the_csv_and_its_columns(tmp_path, medisynth_cli, flags, missing):
    csv_path = _label_csv(tmp_path / "source", ["0", "1"] * 4)
    out = tmp_path / "out"
    assert_one_line_error(*_prepare(medisynth_cli, tmp_path / "source", out, *flags), str(csv_path), missing,
                          "columns: image, label; separated by ','")
    assert not out.exists()


def test_semicolon_csv_is_read_and_said(tmp_path, medisynth_cli):
    csv_path = _label_csv(tmp_path / "source", ["0", "1"] * 4, sep=";")
    out = tmp_path / "out"
    code, output = _prepare(medisynth_cli, tmp_path / "source", out)
    assert code == 0, output
    assert f"note: {csv_path}: columns separated by ';'" in output
    assert json.loads((out / "manifest.json").read_text())["class_names"] == ["0", "1"]
    shutil.rmtree(out)
    assert_one_line_error(*_prepare(medisynth_cli, tmp_path / "source", out, "--label-column", "grade"),
                          str(csv_path), "separated by ';'")
    assert not out.exists()


def test_vessels_eval_advises_no_skip_bad(tmp_path, medisynth_cli):
    source = _hrf(tmp_path / "hrf", None)
    code, output = medisynth_cli("pipeline", "vessels-eval", source, "--synthetic", source, "--size", "32")
    assert_one_line_error(code, output, str(source), "without annotation")
    assert "--skip-bad" not in output


@pytest.mark.parametrize("flag,value", [("--domain-augment", "heavy"), ("--domain-width", "0"), ("--domain-epochs", "0")])
def test_a_domain_classifier_recipe_it_cannot_train_is_one_line(tmp_path, medisynth_cli, flag, value):
    from medisynth.downstream.toy import toy_images, write_image_folder, write_toy_prepared

    write_toy_prepared(tmp_path / "data", {"train": [4, 4], "val": [2, 2], "test": [2, 2]})
    fake = write_image_folder(tmp_path / "fake", toy_images([0, 1, 0, 1], 16, 3, seed=1), ["0", "1", "0", "1"])
    out = tmp_path / "out"
    code, output = medisynth_cli("evaluate", tmp_path / "data", "--synthetic", fake, "--out", out, "--features",
                                 "domain", "--cache-dir", tmp_path / "cache", flag, value)
    assert_one_line_error(code, output, flag, value)
    assert not out.exists()
