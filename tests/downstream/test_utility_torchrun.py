"""``medisynth utility`` under torchrun (2 Gloo processes): data-parallel classifiers, one report from rank 0."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from medisynth.downstream.toy import toy_images, write_image_folder, write_toy_prepared

# the one torchrun launcher of the distributed tests (tests are not a package: load it by path)
_spec = importlib.util.spec_from_file_location(
    "distributed_launch", Path(__file__).resolve().parents[1] / "training" / "test_distributed.py")
launch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(launch)

# a trained classifier's weights match one process's within docs/distributed.md's tolerance (atol and
# rtol 1e-4); its test-set probabilities, and the figures made of them, move by as little
TOLERANCE = {"rel": 1e-4, "abs": 1e-4}
UNCOMPARED = {"seconds", "out"}  # the clock, the output path


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("utility-torchrun")
    write_toy_prepared(root / "real", {"train": [8, 4, 2], "val": [2, 2, 2], "test": [3, 3, 0]})
    labels = [0] * 4 + [1] * 6 + [2] * 6
    write_image_folder(root / "syn", toy_images(labels, 16, 3, seed=5), [str(k) for k in labels])
    return root


@pytest.mark.parametrize("protocols", ["real,real+synthetic", "real-balanced,synthetic"])
def test_two_ranks_write_one_report_equal_to_one_process(folders, tmp_path, protocols):
    """Augmented and class-balanced protocols too; seeds pair up as on one process."""
    outs = {nproc: tmp_path / str(nproc) / "report" for nproc in (1, 2)}
    for nproc in (1, 2):
        result = launch.torchrun(
            tmp_path, nproc, launch.CLI, "utility", str(folders / "real"), "--synthetic", str(folders / "syn"),
            "--out", str(outs[nproc]), "--protocols", protocols, "--seeds", "2", "--epochs", "2", "--batch-size", "4",
            "--width", "4", "--device", "cpu", "--no-progress")
        assert result.returncode == 0, launch.failure(result)
        assert result.stdout.count("report: ") == 1  # rank 0 alone prints (and writes)
        assert [p.name for p in outs[nproc].parent.iterdir()] == ["report"]  # one copy, no scratch folder left
    assert sorted(p.name for p in outs[2].iterdir()) == sorted(p.name for p in outs[1].iterdir())
    one, two = (json.loads((outs[n] / "utility.json").read_text()) for n in (1, 2))
    assert len(two["runs"]) == 4 and all(r["epochs_run"] == 2 for r in two["runs"])
    launch.assert_json_close(two, one, UNCOMPARED, **TOLERANCE, where="utility")
