"""The real images of a balanced folder are linked or copied when a PNG of exactly the prepared pixels
exists, and encoded only otherwise; whichever way, they read back as the prepared pixels."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

import medisynth.balancing.real_images as real_images
import medisynth.sampling
from medisynth.balancing import BalanceConfig, balance
from medisynth.balancing.real_images import place_image
from medisynth.data.dataset import PreparedDataset
from medisynth.io import read_image, write_json, write_png
from medisynth.downstream.toy import toy_images, write_image_folder, write_toy_prepared

PIXELS = np.random.default_rng(0).integers(0, 256, size=(16, 16, 3), dtype=np.uint8)


def _source(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "source.png"
    if kind == "same png":
        write_png(path, PIXELS)
    elif kind == "other pixels":
        write_png(path, 255 - PIXELS)
    elif kind == "other size":
        write_png(path, np.zeros((32, 32, 3), np.uint8))
    elif kind == "grey png":
        write_png(path, PIXELS[..., :1])
    elif kind == "jpeg named png":
        Image.fromarray(PIXELS).save(path, format="JPEG", quality=100)
    elif kind == "damaged png":
        path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    return path  # "missing": no file at all


@pytest.mark.parametrize("kind,how", [
    ("same png", "linked"), ("other pixels", "encoded"), ("other size", "encoded"), ("grey png", "encoded"),
    ("jpeg named png", "encoded"), ("damaged png", "encoded"), ("missing", "encoded"),
])
def test_place_image_links_only_a_png_of_the_same_pixels(tmp_path, kind, how):
    source, target = _source(tmp_path, kind), tmp_path / "out.png"
    assert place_image(PIXELS, source, target) == how
    assert np.array_equal(read_image(target), PIXELS)
    if how == "linked":
        assert os.path.samefile(source, target)
    elif source.exists():
        assert not os.path.samefile(source, target)


def test_a_differently_sized_original_is_never_decoded(tmp_path, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a source that cannot match")

    monkeypatch.setattr(real_images, "read_image", no_decoding)
    assert place_image(PIXELS, _source(tmp_path, "other size"), tmp_path / "out.png") == "encoded"


@pytest.mark.parametrize("code", [errno.EXDEV, errno.EPERM])
def test_without_hard_links_the_file_is_copied_byte_for_byte(tmp_path, monkeypatch, code):
    def refuse(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", refuse)
    source, target = _source(tmp_path, "same png"), tmp_path / "out.png"
    assert place_image(PIXELS, source, target) == "copied"
    assert target.read_bytes() == source.read_bytes() and not os.path.samefile(source, target)


def fake_sample(config):
    """Stands in for medisynth.sampling.sample: the same output layout, made of toy images."""
    labels = [name for name, n in config.per_class.items() for _ in range(n)]
    write_image_folder(config.out, toy_images([int(n) for n in labels], 16, 3, seed=7), labels, prefix="syn_",
                       extra={"class_index": [int(n) for n in labels], "synthetic": 1})
    return SimpleNamespace(shortfall={})


def test_a_set_prepared_from_png_files_is_linked_not_re_encoded(tmp_path, monkeypatch):
    """balance -> prepare that folder at its own size -> balance again: the second balance finds every
    real image's PNG, links it, and encodes none (counted at medisynth's one PNG writer)."""
    from medisynth.data.prepare import PrepareConfig, prepare

    monkeypatch.setattr(medisynth.sampling, "sample", fake_sample)
    write_toy_prepared(tmp_path / "data", {"train": [6, 3], "val": [2, 2], "test": [2, 2]})
    (tmp_path / "run").mkdir()
    write_json(tmp_path / "run" / "model.json", {"model": "fake", "spec": {"class_names": ["0", "1"]}})
    first = tmp_path / "first"
    balance(BalanceConfig(data=tmp_path / "data", run=tmp_path / "run", out=first, progress=False))
    assert json.loads((first / "balance.json").read_text())["real_images"] == {"linked": 0, "copied": 0, "encoded": 17}
    prepare(PrepareConfig(source=first, out=tmp_path / "again", size=16, workers=1), progress=False)

    encoded = []
    monkeypatch.setattr(real_images, "write_png", lambda path, *a, **k: encoded.append(path))
    second = tmp_path / "second"
    balance(BalanceConfig(data=tmp_path / "again", run=tmp_path / "run", out=second, target=1, progress=False))
    again = PreparedDataset(tmp_path / "again", split=None)
    assert encoded == []
    assert json.loads((second / "balance.json").read_text())["real_images"] == {"linked": len(again), "copied": 0, "encoded": 0}
    for i, image_id in enumerate(again.index["id"].astype(str)):
        written = second / "images" / f"{image_id}.png"
        assert np.array_equal(read_image(written), again.image_uint8(i))
        assert written.read_bytes() == (first / "images" / f"{image_id}.png").read_bytes()
