"""Atomic outputs: whole or nothing, ordinary permissions; image reading errors name the file."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir, atomic_write_text, read_image, write_png


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "out") as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("interrupted")
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "whole.txt").write_text("x")
    assert (tmp_path / "out" / "whole.txt").read_text() == "x"
    with pytest.raises(MedisynthError, match="already exists"):
        with atomic_dir(tmp_path / "out"):
            pass


def test_outputs_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "report") as tmp:
            atomic_write_text(tmp / "report.html", "<html></html>")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "report").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "report" / "report.html").stat().st_mode) == 0o644


def test_truncated_image_error_names_the_file(tmp_path):
    path = tmp_path / "eye.png"
    write_png(path, np.full((32, 32, 3), 120, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(MedisynthError, match="eye.png.*--skip-bad"):
        read_image(path)


@pytest.mark.parametrize("shape", [(8, 6), (8, 6, 1), (8, 6, 3)])
@pytest.mark.parametrize("atomic", [True, False])
def test_write_png_round_trips_pixels_and_text(tmp_path, shape, atomic):
    from PIL import Image

    array = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = tmp_path / "x.png"
    write_png(path, array, text={"medisynth:run": "runs/a", "seed": "3"}, atomic=atomic)
    channels = 3 if len(shape) == 3 and shape[2] == 3 else 1
    assert np.array_equal(read_image(path, channels), array.reshape(8, 6, channels))
    with Image.open(path) as img:
        assert img.text == {"medisynth:run": "runs/a", "seed": "3"}
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"]  # no temporary file left behind


def test_write_png_without_text_has_no_text_chunks(tmp_path):
    from PIL import Image

    write_png(tmp_path / "x.png", np.zeros((4, 4), np.uint8))
    with Image.open(tmp_path / "x.png") as img:
        assert img.text == {}
