"""benchmarks/gpu_check.sh: without CUDA it says so and exits 0; each check prints exactly one line."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def test_without_cuda_it_prints_that_cuda_is_absent_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}  # hides any GPU from torch
    proc = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines() == [
        "gpu_check: CUDA is absent (torch.cuda.is_available() is False); skipping all GPU checks"
    ]


def test_a_failing_check_prints_one_fail_line_and_the_next_check_still_runs(load_benchmark, tmp_path, capsys):
    gpu_check = load_benchmark("gpu_check")
    report = gpu_check.Report(tmp_path / "log.txt")

    def broken():
        raise ValueError("first line\nthe reason")

    def not_here():
        raise gpu_check.Skip("model 'x' is not registered")

    report.check("broken", broken)
    report.check("absent", not_here)
    report.check("fine", lambda: "42 img/s")
    report.log.close()
    assert capsys.readouterr().out.splitlines() == [
        "FAIL broken: ValueError: first line",
        "SKIP absent: model 'x' is not registered",
        "PASS fine: 42 img/s",
    ]
    assert report.counts == {"PASS": 1, "FAIL": 1, "SKIP": 1}
    assert "Traceback" in (tmp_path / "log.txt").read_text()  # the details go to the log
