"""Copy detection: is a synthetic image an edited copy of a training image?

Two stages, as in image copy detection practice (SSCD, Pizzi et al. CVPR 2022):

1. **Candidates by descriptor.** The self-supervised encoder of the data set
   (``medisynth.features.ssl``), trained to map a training image and its edited copies (flips,
   shifts, crops, small rotations, intensity changes, noise, blur, JPEG) close together, gives
   each image an L2-normalised descriptor. A query is compared with every training image as it is
   and mirrored (the mirror images' descriptors are computed once, not each query's); its ``top_k``
   most similar training images are the candidates.
2. **Confirmation by direct comparison.** Each candidate is warped by every transform of a small
   grid (mirror or not, zoom 0.9 / 1 / 1.11, rotation -5 / 0 / +5 degrees) and the query's centre
   is slid over it (shifts up to ``MAX_SHIFT`` px); the similarity is the normalised
   cross-correlation (Pearson correlation of the pixels, 1 = identical up to brightness and
   contrast) at the best alignment, at ``COMPARE_SIDE`` px. That number, and the transform that
   achieved it, is what a person can check by looking at the pair.

**The threshold has a meaning.** Unless one is given, it is calibrated on the training images
themselves: each training image (up to ``CALIBRATION_MAX_QUERIES``) is matched as above against the
training images of OTHER units (the split's units: a patient's images, exact and near duplicates such
as runs of neighbouring CT slices, see ``medisynth.data.split.split_units``), and the threshold is the
highest similarity seen plus ``CALIBRATION_MARGIN``: a synthetic image is flagged when it is closer to
a training image than any training image came to another unit's. A data set of near-identical slices
and one of distinct photographs each get their own. A synthetic image matching a slice of a series is
reported with that slice's unit, so the series counts once.

**The sampler's fast path** (``keep``): an image whose descriptor is farther from every training image
than any edit the confirmation aligns came to its source (``descriptor_floor``) is kept without the
alignment search, and only candidates above that floor are aligned. The training images' descriptors,
the floor and the calibration are cached on disk (``cache_dir``), keyed by a checksum of the training
pixels, the encoder's weights (and the units), so a second ``sample --max-similarity`` builds none of them.

``CopyDetector`` is the one implementation behind ``sample --max-similarity``, ``balance`` and
``evaluate`` (``near_copies.csv``). Inputs are checked (uint8, N x C x H x W, channel count):
channels-last arrays raise a ``MedisynthError`` instead of giving silently wrong similarities.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from medisynth.errors import MedisynthError
from medisynth.features.ssl import EditRange, SSLEncoder, SSLExtractor, check_images

COARSE_SIDE = 32  # the transform search runs at this size: cheap, and tolerant of the grid's coarse steps
COMPARE_SIDE = 64  # the best few alignments are re-scored at this size (or the images' own, if smaller)
MAX_SHIFT = 3  # px at COARSE_SIDE; the same distance in px at COMPARE_SIDE (6 px at 64 px)
REFINE = 4  # alignments re-scored at COMPARE_SIDE per query
SMOOTH_SIGMA = 1.0  # px, at either size: noise, JPEG blocks and sub-pixel shifts count less than content
FLIPS = (False, True)
ZOOMS = (1.0, 1 / 0.9, 0.9)
ANGLES = (0.0, -5.0, 5.0)
TOP_K = 8  # neighbouring CT slices crowd the candidate list; 5 missed ~10% of shifted slices
CALIBRATION_MARGIN = 0.01
CALIBRATION_MAX_QUERIES = 400
FLOOR_MARGIN = 0.05  # below the lowest descriptor similarity of an aligned edit to its source
FLOOR_VIEWS = 2  # edits per training image (up to CALIBRATION_MAX_QUERIES images): the floor is a minimum, so more is safer
#: the edits the sampler's fast path must not miss: the grid's mirror, zoom and rotation, shifts of up to 3 px at 64 px
#: (the benchmark's 1-3 px; the search itself reaches MAX_SHIFT px at 32 px, but a descriptor floor low enough for
#: 6 px combined with zoom and rotation lets every GAN sample through) and the photometric changes the correlation
#: ignores. The descriptor floor is measured on these, not on the encoder's much stronger training views.
ALIGNED_EDITS = EditRange(max_angle=5.0, zoom=(0.9, 1 / 0.9), max_shift=3.0, vflip=0.0, intensity=0.1, colour=0.1,
                          max_noise=5 / 255, blur_sigma=(0.3, 1.0), jpeg_quality=(70, 95))
CACHE_VERSION = 1  # bump when what is cached (descriptors, floor, calibration) is computed differently


@dataclass
class CopyMatches:
    """Per query: its most similar training image after alignment and the verdict."""

    nearest: np.ndarray  # int64 index into the reference
    similarity: np.ndarray  # float64 normalised cross-correlation at the best alignment
    descriptor_similarity: np.ndarray  # float64 cosine of the descriptors (mirror allowed)
    transform: list[str]  # the alignment found, e.g. "mirror, zoom 1.11, shift (+2, -1) px"
    flagged: np.ndarray  # bool: similarity >= threshold


def _grid(angles=ANGLES) -> list[tuple[bool, float, float]]:
    return [(f, z, a) for f in FLIPS for z in ZOOMS for a in angles]


def describe_transform(flip: bool, zoom: float, angle: float, dx: float, dy: float) -> str:
    parts = (["mirror"] if flip else []) + ([f"zoom {zoom:.2f}"] if zoom != 1 else []) \
        + ([f"rotate {angle:+g} deg"] if angle else []) + ([f"shift ({dx:+g}, {dy:+g}) px"] if dx or dy else [])
    return ", ".join(parts) or "identity"


def _smoothed(x: torch.Tensor, sigma: float = SMOOTH_SIGMA) -> torch.Tensor:
    """A 5 x 5 Gaussian blur with reflected borders, as torchvision's ``gaussian_blur``, without importing
    torchvision: its import costs seconds, more than ``sample --max-similarity`` may add."""
    half = 2
    k = torch.exp(-0.5 * (torch.arange(-half, half + 1, dtype=x.dtype) / sigma) ** 2)
    k = k / k.sum()
    n, c, h, w = x.shape
    y = F.pad(x.reshape(n * c, 1, h, w), (half, half, half, half), mode="reflect")
    y = F.conv2d(F.conv2d(y, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return y.view(n, c, h, w)


def _resized(images: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 N x C x H x W -> float N x C x side x side in [0, 1], area-resized, then smoothed (SMOOTH_SIGMA)."""
    x = images.float().div(255.0)
    if tuple(x.shape[-2:]) != (side, side):
        x = F.interpolate(x, size=(side, side), mode="area") if min(x.shape[-2:]) >= side \
            else F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return _smoothed(x)


def _theta(flip: bool, zoom: float, angle: float) -> list[list[float]]:
    """affine_grid's matrix for: mirror (optional), zoom in by ``zoom`` (a crop resized back), rotate by ``angle``."""
    a = math.radians(angle)
    sx = (-1.0 if flip else 1.0) / zoom
    return [[math.cos(a) * sx, -math.sin(a) / zoom, 0.0], [math.sin(a) * sx, math.cos(a) / zoom, 0.0]]


def _sampling_grid(transforms: list[tuple[bool, float, float]], side: int) -> torch.Tensor:
    """affine_grid of each transform for side x side images: len x side x side x 2."""
    theta = torch.tensor([_theta(*t) for t in transforms], dtype=torch.float32)
    return F.affine_grid(theta, [len(transforms), 1, side, side], align_corners=False)


def _warp_each(x: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
    """Image i of x (N x C x S x S) resampled on grids[i]: what the generator may have made of a training image."""
    return F.grid_sample(x, grids, mode="bilinear", padding_mode="zeros", align_corners=False)


def _warp(x: torch.Tensor, grids: torch.Tensor) -> torch.Tensor:
    """Every image of x (N x C x S x S) on every grid of ``grids`` (G x S x S x 2) -> N x G x C x S x S."""
    n, c, s, _ = x.shape
    g = len(grids)
    out = _warp_each(x.repeat_interleave(g, dim=0), grids.repeat(n, 1, 1, 1))
    return out.view(n, g, c, s, s)


FLAT_STD = 1e-3  # per-pixel standard deviation below a quarter of one uint8 level: an image without structure


def _window_sums(x: torch.Tensor, t: int) -> torch.Tensor:
    """Sums over every window of t along the last axis: the first window's sum, then each next one adds the value
    that enters and drops the one that leaves. Windows here cover most of the axis (t = side - 2 * shift), so this
    is a sum and a short cumulative sum. A full integral image took 3-5x as long on an AVX2 CPU, where copy detection
    spent half its time there (on an AVX512 CPU the two took the same time)."""
    m = x.shape[-1] - t
    first = x[..., :t].sum(-1, keepdim=True)
    return torch.cat([first, first + (x[..., t:] - x[..., :m]).cumsum(-1)], -1)


def _box_sum(x: torch.Tensor, t: int) -> torch.Tensor:
    """Sums over every t x t window of the last two axes."""
    return _window_sums(_window_sums(x, t).transpose(-1, -2), t).transpose(-1, -2)


def _best_alignment(queries: torch.Tensor, candidates: torch.Tensor, max_shift: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised cross-correlation of each query's centre with each of its warped candidates at every shift.

    queries: Q x C x S x S; candidates: Q x M x C x S x S (M = candidates x transforms); shifts up to
    ``max_shift`` px each way. Returns (best NCC over shifts, and its dy, dx), each Q x M.
    """
    q, m, c, s, _ = candidates.shape
    t = s - 2 * max_shift
    n_shift = 2 * max_shift + 1
    tmpl = queries[:, :, max_shift:max_shift + t, max_shift:max_shift + t]
    tmpl = tmpl - tmpl.mean(dim=(-2, -1), keepdim=True)  # per channel: brightness and colour casts do not count
    tnorm = tmpl.flatten(2).norm(dim=2)  # Q x C
    # one grouped convolution: each query channel's template against that channel of its own M candidates
    windows = candidates.reshape(1, q * m * c, s, s)
    weight = tmpl[:, None].expand(q, m, c, t, t).reshape(q * m * c, 1, t, t)
    num = F.conv2d(windows, weight, groups=q * m * c).view(q, m, c, n_shift, n_shift)
    # each window's energy around its own mean, per channel, from box sums
    flat = candidates.reshape(q * m, c, s, s)
    area = t * t
    flat = flat - flat.mean(dim=(-2, -1), keepdim=True)  # centred: float32 integral images keep their precision
    box_sum = _box_sum(flat, t)
    box_sq = _box_sum(flat * flat, t)
    energy = (box_sq - box_sum * box_sum / area).clamp(min=0).view(q, m, c, n_shift, n_shift)
    tn = tnorm[:, None, :, None, None]
    ncc_c = num / (tn * energy.sqrt()).clamp(min=1e-6)
    # channels weighted by the query's contrast in them: a nearly flat channel (a fundus photo's blue) is mostly noise
    weights = tn / tnorm.sum(dim=1).clamp(min=1e-6)[:, None, None, None, None]
    ncc = (ncc_c * weights).sum(dim=2)
    best, where = ncc.flatten(2).max(dim=2)
    # a (nearly) flat query has no structure to match: its correlation is noise divided by almost nothing
    flat_query = tnorm.max(dim=1).values / t < FLAT_STD
    best = best.masked_fill(flat_query[:, None], 0.0)
    return best.clamp(-1, 1), where // n_shift - max_shift, where % n_shift - max_shift


class CopyDetector:
    """Flag images that are (edited) copies of any reference (training) image.

    ``CopyDetector(reference, encoder, units=None, threshold=None, cache_dir=None)``: ``reference`` is
    uint8 N x C x H x W; ``encoder`` an ``SSLEncoder`` (``medisynth.features.ssl.ssl_encoder(data)``);
    ``units`` one id per reference image (images of one patient / series share it; default: each
    image its own unit); ``threshold`` the flag similarity, or None to calibrate it on the
    reference (``calibration`` then says how); ``cache_dir`` keeps the reference's descriptors, the
    descriptor floor and the calibration on disk for the next detector on the same pixels (None: not kept).

    Only what is asked for is built: a given threshold builds no calibration, ``match`` no descriptor floor.

    ``match(images)`` -> ``CopyMatches``; ``similarity(images)``; ``keep(images)`` (not flagged).
    """

    def __init__(self, reference, encoder: SSLEncoder | SSLExtractor, units=None, threshold: Optional[float] = None,
                 top_k: int = TOP_K, batch_size: int = 256, cache_dir: str | Path | None = None):
        ref = check_images(reference, "reference images")
        if len(ref) == 0:
            raise MedisynthError("reference images: none given; copy detection needs at least one training image")
        self.extractor = encoder if isinstance(encoder, SSLExtractor) else SSLExtractor(encoder)
        self.channels = ref.shape[1]
        self.size = tuple(ref.shape[-2:])
        self.reference = ref
        self.units = np.arange(len(ref)) if units is None else np.asarray(units)
        if len(self.units) != len(ref):
            raise MedisynthError(f"units: {len(self.units)} ids for {len(ref)} reference images")
        if threshold is not None and not -1.0 <= float(threshold) <= 1.0:
            raise MedisynthError(f"copy threshold {threshold}: a correlation in [-1, 1]")
        if threshold is None and len(np.unique(self.units)) < 2:
            raise MedisynthError("copy threshold: all reference images are one unit, nothing to calibrate on; "
                                 "pass a threshold (e.g. --max-similarity 0.95)")
        self.top_k = max(1, min(top_k, len(ref)))
        self.batch_size = batch_size
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self._grid = _grid()
        # the coarse search leaves rotation out (at 32 px, smoothed, 5 degrees barely move the ranking); the fine
        # stage tries every angle for each of its picks: a third of the work for the same catches
        self._coarse = _grid(angles=(0.0,))
        self._coarse_grids = _sampling_grid(self._coarse, COARSE_SIDE)
        self._fine_grids = _sampling_grid(self._grid, self._fine_side)
        self._ref_desc, self._ref_desc_mirrored = self._reference_descriptors()
        self._given_threshold = None if threshold is None else float(threshold)
        self._resized_reference: dict[int, torch.Tensor] = {}  # side -> every reference image, once many are aligned

    # -- what is built once, on first use, and cached on disk ---------------------------------------
    @cached_property
    def _key(self) -> str:
        """Checksum of the reference pixels and the encoder's weights: what every cached figure depends on."""
        h = hashlib.blake2b(digest_size=12)
        h.update(f"v{CACHE_VERSION}-{tuple(self.reference.shape)}".encode())
        h.update(self.reference.contiguous().numpy().tobytes())
        for name, value in self.extractor.model.state_dict().items():
            h.update(name.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def _cache_path(self, suffix: str) -> Optional[Path]:
        return None if self.cache_dir is None else self.cache_dir / "copy_detection" / f"{self._key}{suffix}"

    def _reference_descriptors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The reference's descriptors as it is and mirrored (each query is then described once, not twice)."""
        from safetensors.torch import load_file, save

        from medisynth.io import atomic_write_bytes

        path = self._cache_path(".safetensors")
        if path is not None and path.is_file():
            try:
                cached = load_file(str(path))
                desc, mirrored = cached["descriptors"], cached["mirrored"]
                if len(desc) == len(self.reference) and desc.shape == mirrored.shape:
                    return desc, mirrored
            except Exception:  # noqa: BLE001 - a damaged or half-written cache is rebuilt, never trusted
                pass
        desc, mirrored = self.extractor.descriptors(self.reference), self.extractor.descriptors(self.reference, flip=True)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, save({"descriptors": desc.contiguous(), "mirrored": mirrored.contiguous()}))
        return desc, mirrored

    def _cached_json(self, suffix: str, build, key: str) -> dict:
        """``build()`` (a JSON-able dict with ``key``), or what a previous detector on the same pixels and encoder stored."""
        from medisynth.io import read_json, write_json

        path = self._cache_path(suffix)
        if path is not None and path.is_file():
            try:
                value = read_json(path)
                if isinstance(value, dict) and isinstance(value.get(key), (int, float)):
                    return value
            except Exception:  # noqa: BLE001 - unreadable: rebuilt
                pass
        value = build()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, value)
        return value

    @property
    def _fine_side(self) -> int:
        return min(COMPARE_SIDE, *self.size)

    def _reference_at(self, side: int, indices: torch.Tensor) -> torch.Tensor:
        """Reference images ``indices`` resized for comparison at ``side`` px. All of them are resized once when
        many are asked for (``match``, calibration); the sampler's fast path aligns a few candidates per batch,
        which are resized on the spot (the same pixels: each image is resized on its own)."""
        resized = self._resized_reference
        if side not in resized and len(indices) < len(self.reference) // 4:
            return _resized(self.reference[indices], side)
        if side not in resized:
            resized[side] = _resized(self.reference, side)
        return resized[side][indices]

    @cached_property
    def descriptor_floor(self) -> float:
        """The lowest descriptor similarity between an aligned edit (``ALIGNED_EDITS``: the transforms the
        confirmation searches, the photometric changes its correlation ignores) of a training image and that
        image, minus ``FLOOR_MARGIN``. Built on the first ``keep``, never by ``match``."""
        return float(self._cached_json("-floor.json", self._measure_floor, "descriptor_floor")["descriptor_floor"])

    @cached_property
    def calibration(self) -> dict:
        """How the threshold was set: given, or calibrated between units (built on first use, cached)."""
        if self._given_threshold is not None:
            return {"method": "given", "threshold": self._given_threshold}
        return self._cached_json(f"-calibration-{_units_key(self.units)}.json", self._calibrate, "threshold")

    @property
    def threshold(self) -> float:
        return float(self.calibration["threshold"])

    # -- checks --------------------------------------------------------------------------------
    def _check(self, images, what: str) -> torch.Tensor:
        t = check_images(images, what, self.channels)
        if tuple(t.shape[-2:]) != self.size:
            raise MedisynthError(f"{what}: images of {tuple(t.shape[-2:])} px, but the training images are {self.size}; "
                                 "resize them to the training size first")
        return t

    # -- matching ------------------------------------------------------------------------------
    def _descriptor_scores(self, queries: torch.Tensor, exclude_units=None) -> torch.Tensor:
        d = self.extractor.descriptors(queries)
        scores = torch.maximum(d @ self._ref_desc.T, d @ self._ref_desc_mirrored.T)
        if exclude_units is not None:  # calibration: only OTHER units count
            same = torch.from_numpy(exclude_units[:, None] == self.units[None, :])
            scores = scores.masked_fill(same, -2.0)
        return scores

    def _confirm(self, q: torch.Tensor, top, ex, floor: Optional[float] = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """Align each query with its candidates: (nearest index, similarity, descriptor similarity, transform).

        ``ex``: each query's own unit, whose candidates never confirm (calibration); ``floor``: candidates with a
        descriptor similarity below it are not aligned (the sampler's fast path)."""
        coarse_grid, k = self._coarse, top.indices.shape[1]
        blocked = torch.zeros(top.indices.shape, dtype=torch.bool)
        if floor is not None:  # candidates come sorted: align only as many as the query with most above the floor
            k = max(1, int((top.values >= floor).sum(dim=1).max()))
            top = type(top)((top.values[:, :k], top.indices[:, :k]))
            blocked = top.values < floor
        if ex is not None:  # a candidate of the query's own unit never confirms
            blocked = blocked[:, :k] | torch.from_numpy(self.units[top.indices.numpy()] == ex[:, None])
        # coarse: every candidate mirrored or not and zoomed (no rotation), at COARSE_SIDE
        warped = _warp(self._reference_at(COARSE_SIDE, top.indices.flatten()), self._coarse_grids)
        coarse, _, _ = _best_alignment(_resized(q, COARSE_SIDE), warped.view(len(q), k * len(coarse_grid), *warped.shape[2:]), MAX_SHIFT)
        # blocked scores can still be picked below, when a query has fewer unblocked alignments than REFINE
        coarse = coarse.masked_fill(blocked.repeat_interleave(len(coarse_grid), dim=1), -1.0)
        # fine: the best REFINE (candidate, mirror, zoom) at full resolution, each at every angle
        picks = coarse.topk(min(REFINE, coarse.shape[1]), dim=1).indices  # Q x R
        rows = torch.arange(len(q))
        cand = picks // len(coarse_grid)
        na = len(ANGLES)
        # self._grid lists (mirror, zoom, angle) with the angle varying fastest, the coarse grid (mirror, zoom)
        fine_t = ((picks % len(coarse_grid))[:, :, None] * na + torch.arange(na)).flatten(1)  # Q x (R * angles)
        ref_idx = top.indices[rows[:, None], cand].repeat_interleave(na, dim=1)  # Q x (R * angles)
        side = self._fine_side
        fine = _warp_each(self._reference_at(side, ref_idx.flatten()), self._fine_grids[fine_t.flatten()])
        score, dy, dx = _best_alignment(_resized(q, side), fine.view(len(q), ref_idx.shape[1], *fine.shape[1:]),
                                        MAX_SHIFT * side // COARSE_SIDE)
        score = score.masked_fill(coarse.gather(1, picks).repeat_interleave(na, dim=1) <= -1.0, -1.0)
        value, r = score.max(dim=1)
        best_cand = cand.repeat_interleave(na, dim=1)[rows, r]
        scale = self.size[1] / side  # report shifts in the images' own pixels
        transforms = [describe_transform(*self._grid[int(fine_t[i, r[i]])], -float(dx[i, r[i]]) * scale,
                                         -float(dy[i, r[i]]) * scale) for i in range(len(q))]
        return ref_idx[rows, r], value, top.values[rows, best_cand], transforms

    def _match(self, queries: torch.Tensor, exclude_units=None, skip_unlikely: bool = False,
               threshold: Optional[float] = None) -> CopyMatches:
        n = len(queries)
        nearest = np.zeros(n, np.int64)
        sim = np.full(n, np.nan)
        dsim = np.zeros(n)
        transforms = ["not aligned: descriptor below the copy floor"] * n
        threshold = self.threshold if threshold is None else threshold
        # the fast path presumes an image under the floor is below the threshold: true for any threshold a copy
        # check means (> 0), not for one that asks to reject (nearly) everything
        floor = self.descriptor_floor if skip_unlikely and threshold > 0 else None
        for lo in range(0, n, self.batch_size):
            q = queries[lo:lo + self.batch_size]
            ex = None if exclude_units is None else exclude_units[lo:lo + self.batch_size]
            top = self._descriptor_scores(q, ex).topk(self.top_k, dim=1)
            nearest[lo:lo + len(q)] = top.indices[:, 0].numpy()
            dsim[lo:lo + len(q)] = top.values[:, 0].double().numpy()
            todo = np.arange(len(q)) if floor is None else np.nonzero(top.values[:, 0].numpy() >= floor)[0]
            if len(todo) == 0:
                continue
            sel = torch.from_numpy(todo)
            sub_top = type(top)((top.values[sel], top.indices[sel]))
            idx, value, d, found = self._confirm(q[sel], sub_top, None if ex is None else ex[todo], floor)
            nearest[lo + todo] = idx.numpy()
            sim[lo + todo] = value.double().numpy()
            dsim[lo + todo] = d.double().numpy()
            for j, t in zip(todo, found):
                transforms[lo + j] = t
        flagged = np.nan_to_num(sim, nan=-1.0) >= threshold
        return CopyMatches(nearest, sim, dsim, transforms, flagged)

    def match(self, images) -> CopyMatches:
        """Nearest training image after alignment, the similarity, the transform and the flag of each image."""
        return self._match(self._check(images, "query images"))

    def similarity(self, images) -> np.ndarray:
        return self.match(images).similarity

    def keep(self, images) -> np.ndarray:
        """True for images that are not copies. The fast path of ``sample --max-similarity``: images whose
        descriptor is below ``descriptor_floor`` (farther from every training image than any aligned edit
        of a training image came to its source) are kept without the alignment search, and candidates
        below it are not aligned."""
        return ~self._match(self._check(images, "query images"), skip_unlikely=True).flagged

    def _measure_floor(self) -> dict:
        from medisynth.data.dataset import float_to_uint8
        from medisynth.features.ssl import copy_augment

        from dataclasses import replace

        pick = np.tile(np.arange(len(self.reference))[:CALIBRATION_MAX_QUERIES], FLOOR_VIEWS)
        edits = replace(ALIGNED_EDITS, max_shift=ALIGNED_EDITS.max_shift * min(self.size) / 64)  # 3 px at 64 px
        views = float_to_uint8(copy_augment(self.reference[pick].float().div(127.5).sub(1.0),
                                            torch.Generator().manual_seed(0), edits))
        d = self.extractor.descriptors(views)
        # a view may be mirrored: its source is then the mirrored training image
        own = torch.maximum((d * self._ref_desc[pick]).sum(dim=1), (d * self._ref_desc_mirrored[pick]).sum(dim=1))
        return {"descriptor_floor": float(own.min()) - FLOOR_MARGIN, "views": int(len(pick)),
                "lowest_view_similarity": float(own.min()), "median_view_similarity": float(own.median())}

    # -- calibration ---------------------------------------------------------------------------
    def _calibrate(self) -> dict:
        """The highest similarity a reference image reaches with an image of another unit, + CALIBRATION_MARGIN."""
        n = len(self.reference)
        distinct = len(np.unique(self.units))
        pick = np.arange(n)
        if n > CALIBRATION_MAX_QUERIES:
            pick = np.sort(np.random.default_rng(0).choice(n, CALIBRATION_MAX_QUERIES, replace=False))
        between = self._match(self.reference[pick], exclude_units=self.units[pick], threshold=np.inf).similarity
        # the largest: a synthetic image closer to a training image than any training image came to another
        # unit's is flagged; the margin keeps distinct images at the edge of that range from being flagged
        threshold = float(np.clip(between.max() + CALIBRATION_MARGIN, 0.5, 0.999))
        rule = f"maximum over {len(pick)} training images"
        return {
            "method": f"{rule} of each one's best aligned similarity to a training image of another unit, + {CALIBRATION_MARGIN}",
            "threshold": threshold, "queries": int(len(pick)), "units": int(distinct),
            "between_units_median": float(np.median(between)), "between_units_max": float(between.max()),
        }


def _units_key(units: np.ndarray) -> str:
    """Checksum of the unit ids (the calibration depends on them, not only on the pixels)."""
    codes = np.unique(units, return_inverse=True)[1].astype(np.int64)
    return hashlib.blake2b(codes.tobytes(), digest_size=8).hexdigest()


def units_of(prepared_root: str | Path, split: str = "train") -> np.ndarray:
    """The split's unit id per image (shared group, exact or near duplicate: ``split_units``)."""
    from medisynth.data.dataset import PreparedDataset
    from medisynth.data.split import UNIT_COLUMNS, split_units

    index = PreparedDataset(prepared_root, split).index.copy()
    for column in UNIT_COLUMNS:  # an empty key (no group, no content hash recorded) joins nothing
        if column in index:
            values = index[column].astype("string").fillna("")
            index[column] = values.where(values != "", "\0row" + pd.Series(range(len(index)), index=index.index).astype(str))
    return split_units(index)


def copy_detector(prepared_root: str | Path, threshold: Optional[float] = None, cache_dir=None, seed: int = 0,
                  progress: bool = True, reference=None, steps: Optional[int] = None) -> CopyDetector:
    """The data set's detector: its train split as reference and units, its (cached) ssl encoder; the detector's
    descriptors, floor and calibration are cached beside the encoder (``cache_dir``, default ``$MEDISYNTH_CACHE``).

    ``reference`` (uint8 N x C x H x W) replaces the train images, e.g. the masks of a run that learns
    masks; it must list the train split's images in order. Where its channels differ from the data
    set's, an encoder is trained on it directly (not cached).
    """
    from dataclasses import replace

    from medisynth.data.dataset import PreparedDataset
    from medisynth.features import ssl

    root = Path(prepared_root)
    recipe = replace(ssl.DEFAULT_RECIPE, seed=seed, **({"steps": int(steps)} if steps else {}))  # as build() does
    if reference is None:
        reference = torch.from_numpy(PreparedDataset(root, "train").images_uint8()).permute(0, 3, 1, 2).contiguous()
    reference = check_images(reference, "reference images")
    encoder = ssl.ssl_encoder(root, cache_dir=cache_dir, recipe=recipe, progress=progress)
    if encoder.config["in_channels"] != reference.shape[1]:
        encoder, _ = ssl.train_ssl_encoder(reference, recipe, progress=progress)
    from medisynth.classifier import default_cache_dir

    return CopyDetector(reference, encoder, units=units_of(root), threshold=threshold,
                        cache_dir=Path(cache_dir or default_cache_dir()))


def near_copies_table(matches: CopyMatches, fake_ids: list[str], train_ids: list[str], train_units) -> pd.DataFrame:
    """One row per synthetic image: its nearest training image and unit, similarity, transform, flag."""
    units = np.asarray(train_units)
    unit_name = {u: train_ids[i] for i, u in reversed(list(enumerate(units)))}  # a unit is named by its first image
    unit_size = pd.Series(units).value_counts()
    near_units = units[matches.nearest]
    return pd.DataFrame({
        "image": fake_ids,
        "nearest_train": [train_ids[i] for i in matches.nearest],
        "train_unit": [unit_name[u] for u in near_units],
        "unit_size": [int(unit_size[u]) for u in near_units],
        "similarity": np.round(matches.similarity, 4),
        "descriptor_similarity": np.round(matches.descriptor_similarity, 4),
        "transform": matches.transform,
        "flagged": matches.flagged,
    })
