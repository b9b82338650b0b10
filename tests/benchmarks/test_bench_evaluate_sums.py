"""The benchmark of the evaluation's sums runs end to end at toy sizes, and its reference implementations give
today's results (else its ratios would compare different computations)."""
import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def bench(load_benchmark):
    return load_benchmark("bench_evaluate_sums")


def test_a_toy_run_prints_both_comparisons_and_the_same_results(bench, capsys):
    assert bench.main(["--queries", "40", "--train", "30", "--rounds", "2", "--ssl-steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "copy matching, 40 queries against 30 training images: reference [" in out
    assert "KID, 100 subsets of 30 from 30 and 40 128-d features" in out
    assert "median ratio today / reference" in out and "same results: yes" in out


@pytest.mark.parametrize("shape, t", [((2, 3, 64, 64), 58), ((3, 32, 32), 26), ((1, 1, 9, 9), 9)])
def test_the_reference_window_sums_equal_todays(bench, shape, t):
    from medisynth.metrics.copy_detection import _box_sum

    x = torch.rand(shape) - 0.5
    torch.testing.assert_close(bench.integral_box_sum(x, t), _box_sum(x, t), atol=1e-4, rtol=1e-5)


def test_the_reference_kid_equals_todays(bench):
    from medisynth.metrics.kid import _kid_kernel_once

    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(60, 8)), rng.normal(0.3, 1.0, size=(80, 8))
    np.testing.assert_allclose(bench.kid_by_blocks(real, fake, 10, 50, 3), _kid_kernel_once(real, fake, 10, 50, 3),
                               rtol=1e-9)
