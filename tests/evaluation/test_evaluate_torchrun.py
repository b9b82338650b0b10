"""``medisynth evaluate`` under torchrun (2 Gloo processes): sharded feature extraction, one report from rank 0."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from medisynth.downstream.toy import toy_images, write_image_folder, write_prepared

# the one torchrun launcher of the distributed tests (tests are not a package: load it by path)
_spec = importlib.util.spec_from_file_location(
    "distributed_launch", Path(__file__).resolve().parents[1] / "training" / "test_distributed.py")
launch = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(launch)

CLASSES = ["healthy", "sick"]
# metrics.json parts that differ between any two runs by design: the clock, the output path
UNCOMPARED = {"created", "timings_s", "out"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """33 train images (odd: the two ranks' shares differ by one), 7 held-out, 25 synthetic."""
    root = tmp_path_factory.mktemp("evaluate-torchrun")
    labels = [0] * 17 + [1] * 16 + [0, 1, 0, 1, 0, 1, 0]
    splits = ["train"] * 33 + ["val"] * 4 + ["test"] * 3
    write_prepared(root / "real", toy_images(labels, size=32, channels=3, seed=0), labels, splits, CLASSES)
    fake_labels = [0] * 13 + [1] * 12
    write_image_folder(root / "fake", toy_images(fake_labels, size=32, channels=3, seed=1), [CLASSES[k] for k in fake_labels])
    return root


@pytest.fixture(scope="module")
def cgan_run(toy):
    """A trained run as --synthetic: evaluate samples it (on every rank, sharded) before measuring."""
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    out = toy / "cgan"
    train(TrainConfig(data=toy / "real", model="cgan", out=out, steps=2, batch_size=4, sample_every=0, device="cpu",
                      progress=False, hyper={"width": 8, "latent_dim": 8, "embed_dim": 4}))
    return out


def _flags(toy, synthetic, out) -> list[str]:
    return [str(toy / "real"), "--synthetic", str(synthetic), "--out", str(out), "--per-class", "12", "--features", "domain,pixels",
            "--domain-epochs", "1", "--ssl-steps", "4", "--cache-dir", str(toy / "cache"), "--min-class-samples", "10", "--kid-subsets", "5",
            "--kid-subset-size", "10", "--diversity-pairs", "10", "--bootstrap", "20", "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("synthetic", ["folder", "run"])
def test_two_ranks_write_one_report_with_the_metrics_of_one_process(toy, tmp_path, request, synthetic):
    """The domain classifier is at chance on this toy set, so the ssl space joins: three spaces, one with logits."""
    source = toy / "fake" if synthetic == "folder" else request.getfixturevalue("cgan_run")
    outs = {nproc: tmp_path / str(nproc) / "report" for nproc in (1, 2)}
    for nproc in (1, 2):  # 1 first: it trains and caches the encoders both runs then measure with
        result = launch.torchrun(tmp_path, nproc, launch.CLI, "evaluate", *_flags(toy, source, outs[nproc]))
        assert result.returncode == 0, launch.failure(result)
        assert result.stdout.count("report: ") == 1  # rank 0 alone prints (and writes)
        assert [p.name for p in outs[nproc].parent.iterdir()] == ["report"]  # one copy, no scratch folder left
    assert sorted(p.name for p in outs[2].iterdir()) == sorted(p.name for p in outs[1].iterdir())
    one, two = (json.loads((outs[n] / "metrics.json").read_text()) for n in (1, 2))
    assert {s: v["status"] for s, v in two["feature_spaces"].items()} == {"domain": "ok", "pixels": "ok", "ssl": "ok"}
    assert two["distribution"]["domain"]["is_mean"] is not None  # the gathered logits made it
    launch.assert_json_close(two, one, UNCOMPARED, rel=1e-4, abs=1e-5, where="metrics")


def test_a_network_that_cannot_train_on_the_ranks_says_how_to_cache_it(toy, tmp_path):
    """33 train images: the uncached domain classifier's batch (the whole split) does not divide over 2 ranks."""
    flags = _flags(toy, toy / "fake", tmp_path / "report")
    flags[flags.index("--cache-dir") + 1] = str(tmp_path / "empty-cache")
    result = launch.torchrun(tmp_path, 2, launch.CLI, "evaluate", *flags)
    assert result.returncode != 0 and "exitcode  : 2" in result.stderr, launch.failure(result)  # the ranks' bad-input status
    assert "domain space: training its network on 2 ranks failed: --batch-size 33" in result.stderr
    assert "as one process" in result.stderr
    assert not (tmp_path / "report").exists()
