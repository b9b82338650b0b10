"""Training logs: sample grids go to TensorBoard's images beside the scalars when tensorboard is installed."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from medisynth.io import read_image
from medisynth.training.trainer import train


class FakeWriter:
    """Stands in for torch's SummaryWriter (records calls) where the tensorboard package is absent."""

    calls: list[tuple] = []

    def __init__(self, log_dir):
        self.log_dir = log_dir

    def add_scalar(self, tag, value, step):
        FakeWriter.calls.append(("scalar", tag, step))

    def add_image(self, tag, image, step, dataformats="CHW"):
        FakeWriter.calls.append(("image", tag, step, np.asarray(image).copy(), dataformats))

    def close(self):
        pass


def test_sample_grids_are_logged_as_images_at_each_sample_interval(toy_data, tmp_path, monkeypatch, make_config):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    FakeWriter.calls = []
    out = tmp_path / "run"
    train(make_config(toy_data, out, steps=4, sample_every=2))
    images = [c for c in FakeWriter.calls if c[0] == "image"]
    assert [(c[1], c[2], c[4]) for c in images] == [("samples", 2, "HWC"), ("samples", 4, "HWC")]
    assert np.array_equal(images[-1][3], read_image(out / "samples" / "step-000004.png"))  # the grid PNG itself
    assert ("scalar", "Loss_D", 2) in FakeWriter.calls


def test_real_tensorboard_event_file_holds_the_grids(toy_data, tmp_path, make_config):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train(make_config(toy_data, out, steps=4, sample_every=2))
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Images("samples")] == [2, 4]


@pytest.mark.parametrize("row_height", [16, 64, 256])
def test_row_labels_grow_with_the_images(row_height):
    """A label a third of a row high stays legible when a page scales a grid of large images down."""
    from medisynth.training.logging import label_font_size, label_rows

    grid = np.zeros((2 * (row_height + 2) + 2, 4 * (row_height + 2) + 2, 3), np.uint8)
    labelled = label_rows(grid, ["0", "Tumor"], row_height=row_height)
    margin = labelled.shape[1] - grid.shape[1]
    ink = (labelled[:, :margin] < 128).any(axis=2)  # the label's dark pixels in the white margin
    rows = np.flatnonzero(ink[: row_height + 4].any(axis=1))  # the first row's label
    assert np.array_equal(labelled[:, margin:], grid)  # the images themselves untouched
    assert 0.5 * label_font_size(row_height) <= rows.max() - rows.min() + 1 <= row_height
    assert margin >= 8 + 2 * label_font_size(row_height)  # "Tumor" fits beside the images
