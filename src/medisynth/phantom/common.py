"""Helpers shared by the fundus and CT phantoms: argument checks, class counts, seeding, drawing.

Everything here is pure numpy: coordinate grids are cached per image size, shapes are
drawn as soft-edged distance fields, and small blobs are stamped onto local patches so a
lesion costs a few hundred pixel operations, not a whole image.
"""
from __future__ import annotations

import contextlib
import functools
import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from medisynth.errors import MedisynthError

MIN_SIZE, MAX_SIZE = 32, 1024
MIN_PER_CLASS = 2  # every class with a nonzero share gets at least this many images
CHUNK = 64         # images per work unit (one progress step, one task for a worker process)


# ----------------------------------------------------------------------------- arguments
def parse_proportions(text: str | Sequence[float] | None, default: Sequence[float], class_names: Sequence[str],
                      flag: str = "--proportions") -> list[float]:
    """'73.67,6.97,...' (or a sequence) -> list of floats, one per class, checked."""
    if text is None:
        values = list(default)
    elif isinstance(text, str):
        try:
            values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
        except ValueError:
            raise MedisynthError(
                f"{flag} {text!r} is not a comma-separated list of numbers; "
                f"give {len(class_names)} numbers in the order {','.join(class_names)}"
            ) from None
    else:
        values = [float(v) for v in text]
    if len(values) != len(class_names):
        raise MedisynthError(
            f"{flag} has {len(values)} values but there are {len(class_names)} classes "
            f"({','.join(class_names)}); give one number per class"
        )
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise MedisynthError(f"{flag} {values} contains a negative or non-finite value; shares must be >= 0")
    if sum(values) <= 0:
        raise MedisynthError(f"{flag} {values} sums to 0; at least one class needs a positive share")
    return values


def check_size(size: int, flag: str = "--size") -> int:
    if not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise MedisynthError(f"{flag} {size} is out of range; choose an image size from {MIN_SIZE} to {MAX_SIZE} pixels")
    return int(size)


def check_seed(seed: int) -> int:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MedisynthError(f"--seed {seed} must be a non-negative integer")
    return int(seed)


def class_counts(n: int, proportions: Sequence[float], class_names: Sequence[str]) -> list[int]:
    """Exact per-class counts summing to ``n``: largest-remainder rounding, then a minimum of
    ``MIN_PER_CLASS`` for each class with a nonzero share (taken from the largest classes)."""
    active = [i for i, p in enumerate(proportions) if p > 0]
    need = MIN_PER_CLASS * len(active)
    if not isinstance(n, (int, np.integer)) or n < need:
        raise MedisynthError(
            f"--n {n} is too small: {len(active)} classes with a nonzero share need at least "
            f"{MIN_PER_CLASS} images each; pass --n {need} or more"
        )
    total = float(sum(proportions))
    quotas = [n * p / total for p in proportions]
    counts = [math.floor(q) for q in quotas]
    # ties go to the earlier class so the result never depends on float noise in sorting
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    for i in active:
        while counts[i] < MIN_PER_CLASS:
            donor = max(range(len(counts)), key=lambda j: (counts[j], -j))
            counts[donor] -= 1
            counts[i] += 1
    return counts


def assign_labels(counts: Sequence[int], seed: int) -> np.ndarray:
    """Class index per image position, with exactly ``counts[c]`` images of class c.

    Each position i draws a key u_i from (seed, i) alone; positions sorted by key are cut into
    class blocks. So a larger n keeps most earlier positions in the same class (the class
    blocks move only a little), and the order of classes looks random.
    """
    n = int(sum(counts))
    keys = np.array([image_rng(seed, 1, i).random() for i in range(n)])
    labels = np.empty(n, np.int64)
    labels[np.argsort(keys, kind="stable")] = np.repeat(np.arange(len(counts)), counts)
    return labels


def image_rng(*keys: int) -> np.random.Generator:
    """A generator fixed by (seed, stream, index...): any image can be rendered alone, in any order."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


def split_rng(rng: np.random.Generator, k: int) -> list[np.random.Generator]:
    """k independent generators drawn from ``rng``.

    Renderers give anatomy, lesions and noise their own streams, so the same ``rng`` state
    yields the same anatomy whatever the class: the class only adds its findings on top.
    """
    return [np.random.default_rng(int(s)) for s in rng.integers(0, 2**63 - 1, size=k)]


# ----------------------------------------------------------------------------- drawing
@functools.lru_cache(maxsize=16)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) pixel-centre coordinates in [-1, 1] (float32, read-only), cached per size."""
    c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(c, c, indexing="ij")
    y.setflags(write=False)
    x.setflags(write=False)
    return y, x


def smoothstep(edge0: float, edge1: float, v: np.ndarray) -> np.ndarray:
    t = np.clip((v - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def soft_ellipse(y: np.ndarray, x: np.ndarray, cy: float, cx: float, ry: float, rx: float,
                 angle: float = 0.0, edge: float = 0.0) -> np.ndarray:
    """Coverage in [0, 1] of a rotated ellipse; ``edge`` is the soft margin in radius units (0 = hard)."""
    ca, sa = math.cos(angle), math.sin(angle)
    dy, dx = y - cy, x - cx
    u = (dx * ca + dy * sa) / rx
    v = (-dx * sa + dy * ca) / ry
    r = np.sqrt(u * u + v * v)
    if edge <= 0:
        return (r <= 1.0).astype(np.float32)
    return 1.0 - smoothstep(1.0 - edge, 1.0 + edge, r)


def lowfreq_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in roughly [-1, 1]: a ``cells`` x ``cells`` random grid, bilinearly upsampled."""
    coarse = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    pos = (np.arange(size, dtype=np.float32) + 0.5) / size * cells
    i0 = np.minimum(pos.astype(np.int32), cells - 1)
    f = pos - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]          # size x (cells+1)
    return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]


def stamp_blobs(layer: np.ndarray, centers: np.ndarray, radii: np.ndarray, size: int,
                aspect: np.ndarray | None = None, angles: np.ndarray | None = None,
                edge: float = 0.3, wobble: np.ndarray | None = None) -> None:
    """Max-composite soft ellipses into ``layer`` (HxW float), each evaluated on its own patch.

    centres (N x 2, y/x) and radii are in [-1, 1] image units; ``aspect`` stretches the
    second axis, ``wobble`` (N x 3 amplitudes) adds 2nd-4th angular harmonics for ragged edges.
    """
    scale = size / 2.0
    for k in range(len(centers)):
        cy, cx = (centers[k] + 1.0) * scale - 0.5          # pixel coordinates
        r = max(float(radii[k]) * scale, 0.35)
        a = 1.0 if aspect is None else float(aspect[k])
        reach = r * max(a, 1.0) * (1.0 + edge) * 1.4 + 1.0
        y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, size)
        x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, size)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = np.arange(y0, y1, dtype=np.float32)[:, None] - cy
        xx = np.arange(x0, x1, dtype=np.float32)[None, :] - cx
        th = 0.0 if angles is None else float(angles[k])
        ca, sa = math.cos(th), math.sin(th)
        u = (xx * ca + yy * sa) / r
        v = (-xx * sa + yy * ca) / (r * a)
        d = np.sqrt(u * u + v * v)
        if wobble is not None:
            phi = np.arctan2(v, u)
            w = wobble[k]
            d = d / (1.0 + w[0] * np.cos(2 * phi + 7.0 * k) + w[1] * np.cos(3 * phi + 3.0 * k)
                     + w[2] * np.cos(5 * phi + 1.0 * k))
        # a pixel-sized minimum softness keeps sub-pixel dots visible instead of vanishing
        soft = max(edge, 0.6 / r)
        cover = 1.0 - smoothstep(1.0 - soft, 1.0 + soft, d)
        patch = layer[y0:y1, x0:x1]
        np.maximum(patch, cover, out=patch)


def blend(image: np.ndarray, alpha: np.ndarray, color: Sequence[float]) -> None:
    """In place: image = image * (1 - alpha) + color * alpha (image HxWx3, alpha HxW)."""
    a = alpha[..., None]
    image *= 1.0 - a
    image += a * np.asarray(color, dtype=np.float32)


def to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def progress_jobs(job: Callable, chunks: list, workers: int, progress: bool, description: str) -> Iterator:
    """Run ``job`` over ``chunks`` (in worker processes when ``workers`` > 1), yielding results in
    order and advancing a progress bar by each result (the number of images it made)."""
    from medisynth.progress import make_progress

    with contextlib.ExitStack() as stack:
        if workers > 1 and len(chunks) > 1:
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers))
            results = pool.map(job, chunks)
        else:
            results = map(job, chunks)
        bar = stack.enter_context(make_progress()) if progress else None
        task = bar.add_task(description, total=sum(len(c) for c in chunks), status="") if bar else None
        for result in results:
            if bar is not None:
                bar.advance(task, result)
            yield result


def check_workers(workers: int) -> int:
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise MedisynthError(f"--workers {workers} must be 1 or more")
    return int(workers)
