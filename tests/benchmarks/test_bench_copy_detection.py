"""The copy-detection benchmark runs end to end in smoke mode (small subsets, a 5-step encoder) on the shared data."""
import pytest


@pytest.fixture
def bench(load_benchmark):
    return load_benchmark("bench_copy_detection")


def test_smoke_run_prints_every_transform_and_the_rates(bench, shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MEDISYNTH_CACHE", str(tmp_path / "cache"))
    assert bench.main(["--smoke", "--data", str(shared_data), "--work", str(tmp_path / "work")]) == 0
    out = capsys.readouterr().out
    for transform in bench.TRANSFORMS:
        assert f"| {transform} | " in out
    assert "distinct real images flagged" in out and "per 1,000 queries" in out and "sampler fast path" in out
    # the sampling overhead, from fresh `medisynth sample` processes with and without the filter
    assert "plain vs --max-similarity" in out and "cpu seconds:" in out and "wall seconds:" in out and "cache cold" in out


def test_planted_transforms_change_the_image_but_keep_its_size(bench):
    import numpy as np
    import torch

    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (4, 3, 64, 64), dtype=np.uint8))
    for name in bench.TRANSFORMS:
        copies, src = bench.plant(images, name, 6, seed=0)
        assert copies.shape == (6, 3, 64, 64) and copies.dtype == torch.uint8 and len(src) == 6
        if name != "exact copy":
            assert not torch.equal(copies, images[src]), name
