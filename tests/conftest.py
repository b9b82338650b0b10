"""Shared test fixtures: one thread per test process, the shared data folder, tiny prepared data sets."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

SHARED_DATA = Path(os.environ.get("MEDISYNTH_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip on a machine without a CUDA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout; tests that use it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


def shared_subset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(autouse=True)
def _short_ssl_training(monkeypatch):
    """The self-supervised encoder (copy detection, the ssl space) trains 300 steps by default, about a CPU
    minute; tests need a working encoder, not a good one. Tests of its quality pass their own recipe."""
    from medisynth.features import ssl

    monkeypatch.setattr(ssl, "DEFAULT_RECIPE", ssl.SSLRecipe(steps=4, batch_size=16))


@pytest.fixture
def medisynth_cli(capsys, monkeypatch):
    """medisynth_cli(*args) -> (exit code, stdout + stderr): the real entry point (``medisynth.cli.main``)
    in-process, so a MedisynthError ends as it does for users (one line, exit 2) and toy models registered
    by the test are available."""
    import sys

    from medisynth.cli import main

    def invoke(*args) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["medisynth", *map(str, args)])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out + captured.err

    return invoke
