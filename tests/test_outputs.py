"""--overwrite replaces only medisynth's own earlier outputs: never an input, a folder above one,
the working folder, or a folder of the user's own files (medisynth.outputs)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir
from medisynth.outputs import MARKER, check_output, read_marker
from medisynth.training import toy


def tree_digest(root: Path) -> str:
    """Names and bytes of every file under ``root`` (to prove a refused command left it untouched)."""
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def user_folder(tmp_path) -> Path:
    folder = tmp_path / "my_files"
    folder.mkdir()
    (folder / "thesis.txt").write_text("years of work")
    return folder


# -- the rule itself -----------------------------------------------------------------
def test_missing_or_empty_target_is_fine(tmp_path):
    check_output(tmp_path / "new", overwrite=False, kind="samples")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MedisynthError, match="already exists"):
        check_output(tmp_path / "empty", overwrite=False, kind="samples")
    check_output(tmp_path / "empty", overwrite=True, kind="samples")


@pytest.mark.parametrize("overwrite", [False, True])
def test_user_folder_refused(user_folder, overwrite):
    match = "not written by medisynth" if overwrite else "already exists"
    with pytest.raises(MedisynthError, match=match):
        check_output(user_folder, overwrite, "samples")


def test_other_kind_of_output_refused(tmp_path):
    with atomic_dir(tmp_path / "run_like", kind="run") as tmp:
        (tmp / "x").write_text("1")
    assert read_marker(tmp_path / "run_like")["kind"] == "run"
    with pytest.raises(MedisynthError, match="holds a medisynth 'run' output, not 'samples'"):
        check_output(tmp_path / "run_like", True, "samples")


@pytest.mark.parametrize("where", ["input", "parent of input", "working folder", "parent of working folder"])
def test_inputs_and_working_folder_refused_even_when_marked(tmp_path, monkeypatch, where):
    parent = tmp_path / "project"
    with atomic_dir(parent, kind="samples") as tmp:  # marked: only the input rule can refuse it
        (tmp / "run").mkdir()
    source = parent / "run"
    target = {"input": source, "parent of input": parent, "working folder": source,
              "parent of working folder": parent}[where]
    if target is source:
        (source / MARKER).write_text((parent / MARKER).read_text())
    if "working" in where:
        monkeypatch.chdir(source)
    before = tree_digest(tmp_path)
    with pytest.raises(MedisynthError, match="working folder" if "working" in where else "input"):
        check_output(target, True, "samples", inputs=() if "working" in where else (source,))
    assert tree_digest(tmp_path) == before


def test_marked_output_is_replaced_atomically(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out, kind="samples") as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):  # a failed rewrite leaves the earlier output as it was
        with atomic_dir(out, overwrite=True, kind="samples") as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("crash")
    assert (out / "old.txt").exists() and not (out / "new.txt").exists()
    with atomic_dir(out, overwrite=True, kind="samples") as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary or trash folder left


# -- through the commands --------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """P/data (prepared, toy) and P/run (a 2-step toy-gan run)."""
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    root = tmp_path_factory.mktemp("project")
    data = toy.write_toy_dataset(root / "data")
    train(TrainConfig(data=data, model="toy-gan", out=root / "run", steps=2, batch_size=4, sample_every=0,
                      device="cpu", progress=False))
    return root


@pytest.mark.parametrize("command", [
    "train {P}/data --model toy-gan --steps 1 --out {P}/data --overwrite",
    "train {P}/data --model toy-gan --steps 1 --out {P} --overwrite",
    "train {P}/data --model toy-gan --steps 1 --out . --overwrite",
    "train {P}/data --model toy-gan --steps 1 --out {USER} --overwrite",
    "sample {P}/run --out {P}/run --overwrite --n 2",
    "sample {P}/run --out {P} --overwrite --n 2",
    "sample {P}/run --out . --overwrite --n 2",
    "sample {P}/run --out {USER} --overwrite --n 2",
    "balance {P}/data --run {P}/run --out {P}/data --overwrite",
    "balance {P}/data --run {P}/run --out {USER} --overwrite",
    "evaluate {P}/data --synthetic {P}/run --out {P}/data --overwrite",
    "evaluate {P}/data --synthetic {P}/run --out {USER} --overwrite",
    "utility {P}/data --out {P}/data --overwrite --protocols real",
    "utility {P}/data --out . --overwrite --protocols real",
    "prepare {USER} --out {USER} --overwrite",
    "prepare {P}/data --out {P} --overwrite",
])
def test_commands_refuse_to_overwrite_what_they_did_not_make(project, user_folder, monkeypatch, medisynth_cli, command):
    monkeypatch.chdir(user_folder)  # `--out .` is the user's folder
    before = tree_digest(project), tree_digest(user_folder)
    args = command.format(P=project, USER=user_folder).split()
    code, output = medisynth_cli(*args)
    assert code == 2, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
    out = args[args.index("--out") + 1]
    assert f"--out {out}" in output, output
    assert (tree_digest(project), tree_digest(user_folder)) == before


def test_sample_replaces_its_own_earlier_output(project, tmp_path, medisynth_cli):
    out = tmp_path / "samples"
    assert medisynth_cli("sample", project / "run", "--out", out, "--n", "2")[0] == 0
    assert read_marker(out)["kind"] == "samples"
    code, output = medisynth_cli("sample", project / "run", "--out", out, "--n", "3", "--overwrite")
    assert code == 0, output
    assert json.loads((out / "sample.json").read_text())["requested"] is not None
    assert len(list((out / "images").iterdir())) == 3
