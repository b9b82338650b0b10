"""What a run leaves to look at: metrics.jsonl (+ TensorBoard), loss.png, sample grids."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medisynth.data.images import float_to_uint8, image_grid
from medisynth.io import atomic_write_bytes, write_png
from medisynth.runs import METRICS as METRICS_FILE
from medisynth.runs import read_metrics


class MetricsLog:
    """Appends one JSON line per logging interval; mirrors scalars to TensorBoard when it is installed."""

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = Path(run_dir) / METRICS_FILE
        self._file = open(self.path, "a", buffering=1)
        self._tb = None
        if tensorboard:
            try:  # optional: torch's SummaryWriter needs the tensorboard package
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:
                self._tb = None

    def write(self, record: dict[str, Any]) -> None:
        # strict JSON: a non-finite figure is written as null (json.dumps would write a bare NaN token)
        record = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                  for k, v in ((k, _plain(v)) for k, v in record.items())}
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(key, value, record["step"])

    def add_grid(self, path: Path, step: int) -> None:
        """Show the sample grid PNG at ``path`` in TensorBoard's images tab beside the scalars (when installed)."""
        if self._tb is None or not Path(path).is_file():
            return
        from medisynth.io import read_image

        self._tb.add_image("samples", read_image(path), step, dataformats="HWC")

    def truncate(self, last_step: int) -> None:
        """Drop the lines logged after ``last_step`` (a rolled-back run continues from there)."""
        self._file.close()
        truncate_metrics(self.path.parent, last_step)
        self._file = open(self.path, "a", buffering=1)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _plain(value: Any) -> Any:
    """numpy / torch scalars -> Python numbers, so JSON gets plain values."""
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item()
    return value


def truncate_metrics(run_dir: Path, last_step: int) -> None:
    """Drop lines logged after ``last_step`` (written after the checkpoint a run resumes from)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and _step_of(line) <= last_step]
    atomic_write_bytes(path, ("\n".join(kept) + "\n" if kept else "").encode())


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 1 << 62  # a damaged (half-written) line: drop it


def plot_losses(run_dir: Path, keys: tuple[str, ...] | list[str]) -> Path | None:
    """loss.png: one panel per logged figure (Loss_D, Loss_G, D(x)... have different scales)."""
    records = read_metrics(run_dir)
    keys = [k for k in keys if any(k in r for r in records)]
    if not records or not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(keys), 1, figsize=(7, 1.8 * len(keys) + 0.6), sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        points = [(r["step"], r[key]) for r in records if key in r and _finite(r[key])]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, lw=1)
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    path = Path(run_dir) / "loss.png"
    atomic_write_bytes(path, buf.getvalue())
    return path


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def float_grid(images: torch.Tensor, nrow: int) -> np.ndarray:
    """float N x C x H x W in [-1, 1] -> uint8 H x W x 3 grid (``medisynth.data.images.image_grid``)."""
    return image_grid(float_to_uint8(images.detach().float().cpu()), columns=nrow)


def label_font_size(row_height: int) -> int:
    """Row labels a third of a row high (11-48 px): a fixed small font became a speck once a page scaled a grid of
    64 px images down to fit a column."""
    return max(11, min(48, row_height // 3))


def label_rows(grid: np.ndarray, row_names: list[str], row_height: int, pad: int = 2) -> np.ndarray:
    """A white margin left of ``grid`` with ``row_names[r]`` written beside row r (PIL's default font, scaled to the
    row height where Pillow has FreeType)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=label_font_size(row_height))
    font_probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin = 8 + int(max(font_probe.textlength(str(n), font=font) for n in row_names))
    canvas = Image.new("RGB", (grid.shape[1] + margin, grid.shape[0]), "white")
    canvas.paste(Image.fromarray(grid), (margin, 0))
    draw = ImageDraw.Draw(canvas)
    for r, name in enumerate(row_names):
        centre = pad + r * (row_height + pad) + row_height / 2
        draw.text((4, centre), str(name), fill="black", anchor="lm", font=font)
    return np.asarray(canvas)


def save_grid(path: Path, images: torch.Tensor, nrow: int, row_names: list[str] | None = None) -> Path:
    """A grid of ``nrow`` images a row; with ``row_names`` each row is labelled on the left (class names)."""
    grid = float_grid(images, nrow)
    if row_names and len(images) > 1:
        grid = label_rows(grid, row_names, row_height=images.shape[-2])
    write_png(path, grid)
    return Path(path)
