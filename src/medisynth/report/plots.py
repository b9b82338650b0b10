"""Figures for the evaluation report, each returned as PNG bytes (matplotlib, Agg backend)."""
from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import gaussian_kde  # noqa: E402

from medisynth.data.images import image_grid as _image_grid  # noqa: E402
from medisynth.runs import read_metrics  # noqa: E402

REAL_COLOR, FAKE_COLOR = "#1f77b4", "#d62728"


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _hwc(image_chw: np.ndarray) -> np.ndarray:
    x = np.asarray(image_chw).transpose(1, 2, 0)
    return x[..., 0] if x.shape[-1] == 1 else x


def image_grid(images_nchw: np.ndarray, columns: int = 8, pad: int = 2) -> np.ndarray:
    """uint8 N x C x H x W -> one uint8 grid image (H' x W' [x 3]), white padding (torchvision's make_grid)."""
    grid = _image_grid(images_nchw, columns, pad=pad, pad_value=255)
    return grid[..., 0] if images_nchw.shape[1] == 1 else grid  # one channel in, gray out


def grid_png(images_nchw: np.ndarray, columns: int = 8) -> bytes:
    from medisynth.io import png_bytes

    return png_bytes(image_grid(images_nchw, columns))


def project_2d(real: np.ndarray, fake: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets projected onto the REAL set's first two principal components (randomized SVD: fast for wide features)."""
    from sklearn.decomposition import PCA

    k = min(2, real.shape[1], len(real) - 1)
    pca = PCA(n_components=k, svd_solver="randomized" if real.shape[1] > 64 else "full", random_state=0).fit(real)
    return pca.transform(real), pca.transform(fake)


def pca_scatter(r: np.ndarray, f: np.ndarray, title: str) -> bytes:
    """Scatter of projected real (r) and synthetic (f) features."""
    if r.shape[1] < 2:
        r, f = np.c_[r, np.zeros(len(r))], np.c_[f, np.zeros(len(f))]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.scatter(r[:, 0], r[:, 1], s=6, alpha=0.5, c=REAL_COLOR, label=f"real ({len(r)})")
    ax.scatter(f[:, 0], f[:, 1], s=6, alpha=0.5, c=FAKE_COLOR, label=f"synthetic ({len(f)})")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _png(fig)


def pca_kde(r: np.ndarray, f: np.ndarray, title: str) -> bytes:
    """Kernel density estimates of projected real (r) vs synthetic (f) along each component (seed 004's KDE view)."""
    components = r.shape[1]
    fig, axes = plt.subplots(1, components, figsize=(4 * components, 3), squeeze=False)
    for k, ax in enumerate(axes[0]):
        lo, hi = min(r[:, k].min(), f[:, k].min()), max(r[:, k].max(), f[:, k].max())
        xs = np.linspace(lo, hi, 200)
        for data, color, label in ((r[:, k], REAL_COLOR, "real"), (f[:, k], FAKE_COLOR, "synthetic")):
            if len(data) > 2 and np.ptp(data) > 0:
                density = gaussian_kde(data)(xs)
                ax.plot(xs, density, color=color, label=label)
                ax.fill_between(xs, density, color=color, alpha=0.15)
        ax.set_xlabel(f"PC {k + 1}")
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _png(fig)


def pairs_png(left_nchw: np.ndarray, right_nchw: np.ndarray, captions: list[str], left_title="synthetic", right_title="nearest training") -> bytes:
    """Side-by-side pairs (one row each): synthetic image | its nearest training image."""
    n = len(left_nchw)
    fig, axes = plt.subplots(n, 2, figsize=(4, 2 * n), squeeze=False)
    for i in range(n):
        for j, (img, name) in enumerate(((left_nchw[i], left_title), (right_nchw[i], right_title))):
            ax = axes[i][j]
            ax.imshow(_hwc(img), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=8)
        axes[i][0].set_ylabel(captions[i], fontsize=7)
    return _png(fig)


def edge_maps(real_nchw: np.ndarray, fake_nchw: np.ndarray, count: int = 6) -> bytes:
    """Sobel edge magnitude (scikit-image) of a few real (top) and synthetic (bottom) images."""
    from skimage.filters import sobel

    count = min(count, len(real_nchw), len(fake_nchw))
    fig, axes = plt.subplots(2, count, figsize=(1.6 * count, 3.4), squeeze=False)
    for row, (images, name) in enumerate(((real_nchw, "real"), (fake_nchw, "synthetic"))):
        for k in range(count):
            gray = np.asarray(images[k], np.float64).mean(axis=0) / 255.0
            axes[row][k].imshow(sobel(gray), cmap="magma")
            axes[row][k].set_xticks([])
            axes[row][k].set_yticks([])
        axes[row][0].set_ylabel(name, fontsize=8)
    return _png(fig)


def histograms(real_hist: np.ndarray, fake_hist: np.ndarray) -> bytes:
    """Intensity histograms (per channel) of the real and synthetic sets."""
    fig, ax = plt.subplots(figsize=(5, 3))
    levels = np.arange(real_hist.shape[1])
    for c in range(len(real_hist)):
        suffix = f" ch{c}" if len(real_hist) > 1 else ""
        ax.plot(levels, real_hist[c], color=REAL_COLOR, alpha=0.8, label=f"real{suffix}")
        ax.plot(levels, fake_hist[c], color=FAKE_COLOR, alpha=0.8, linestyle="--", label=f"synthetic{suffix}")
    ax.set_xlabel("intensity")
    ax.set_ylabel("fraction of pixels")
    ax.legend(fontsize=7)
    return _png(fig)


def mean_images(real_mean: np.ndarray, fake_mean: np.ndarray) -> bytes:
    """Mean real image, mean synthetic image and their absolute difference."""
    fig, axes = plt.subplots(1, 3, figsize=(7, 2.6))
    diff = np.abs(real_mean - fake_mean).mean(axis=0)
    for ax, img, title, kw in (
        (axes[0], _hwc(real_mean), "mean real", {"cmap": "gray", "vmin": 0, "vmax": 1}),
        (axes[1], _hwc(fake_mean), "mean synthetic", {"cmap": "gray", "vmin": 0, "vmax": 1}),
        (axes[2], diff, "|difference|", {"cmap": "magma"}),
    ):
        ax.imshow(np.clip(img, 0, 1) if img.ndim == 3 else img, **kw)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    return _png(fig)


def similarity_histogram(fake_sim: np.ndarray, heldout_sim: np.ndarray | None, threshold: float) -> bytes:
    """Each image's highest similarity to a training image: synthetic vs held-out real."""
    fig, ax = plt.subplots(figsize=(5, 3))
    bins = np.linspace(min(-0.2, float(np.min(fake_sim))), 1.0, 50)
    ax.hist(fake_sim, bins=bins, alpha=0.6, color=FAKE_COLOR, density=True, label="synthetic -> train")
    if heldout_sim is not None and len(heldout_sim):
        ax.hist(heldout_sim, bins=bins, alpha=0.6, color=REAL_COLOR, density=True, label="held-out real -> train")
    ax.axvline(threshold, color="k", linestyle=":", label=f"threshold {threshold:g}")
    ax.set_xlabel("max similarity to a training image")
    ax.legend(fontsize=7)
    return _png(fig)


def read_loss_log(run: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """RUN/metrics.jsonl -> {key: (steps, values)} for every numeric key (damaged lines are skipped)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for record in read_metrics(run):
        try:
            step = float(record["step"])
        except (KeyError, TypeError, ValueError):
            continue
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                series.setdefault(key, []).append((step, float(value)))
    return {k: (np.array([s for s, _ in v]), np.array([x for _, x in v])) for k, v in series.items() if len(v) >= 2}


def loss_curves(series: dict[str, tuple[np.ndarray, np.ndarray]], max_panels: int = 8) -> bytes | None:
    keys = [k for k in series if "loss" in k.lower()] or list(series)
    keys = keys[:max_panels]
    if not keys:
        return None
    cols = min(4, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        steps, values = series[key]
        ax.plot(steps, values, lw=1)
        ax.set_title(key, fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    return _png(fig)
