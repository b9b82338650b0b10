"""Copy detection: is a synthetic image an edited copy of a training image?

Two stages, as in image copy detection practice (SSCD, Pizzi et al. CVPR 2022):

1. **Candidates by descriptor.** The self-supervised encoder of the data set
   (``medisynth.features.ssl``), trained to map a training image and its edited copies (flips,
   shifts, crops, small rotations, intensity changes, noise, blur, JPEG) close together, gives
   each image an L2-normalised descriptor. A query is described as it is and mirrored
   (test-time flip); its ``top_k`` most similar training images are the candidates.
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

``CopyDetector`` is the one implementation behind ``sample --max-similarity``, ``balance`` and
``evaluate`` (``near_copies.csv``). Inputs are checked (uint8, N x C x H x W, channel count):
channels-last arrays raise a ``MedisynthError`` instead of giving silently wrong similarities.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from medisynth.errors import MedisynthError
from medisynth.features.ssl import SSLEncoder, SSLExtractor, check_images

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


def _resized(images: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 N x C x H x W -> float N x C x side x side in [0, 1], area-resized, then smoothed (SMOOTH_SIGMA)."""
    from torchvision.transforms.v2 import functional as TF

    x = images.float().div(255.0)
    if tuple(x.shape[-2:]) != (side, side):
        x = F.interpolate(x, size=(side, side), mode="area") if min(x.shape[-2:]) >= side \
            else F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return TF.gaussian_blur(x, [5, 5], [SMOOTH_SIGMA, SMOOTH_SIGMA])


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


def _box_sum(x: torch.Tensor, t: int) -> torch.Tensor:
    """Sums over every t x t window of the last two axes (an integral image: cost independent of t)."""
    c = F.pad(x.cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    return c[..., t:, t:] - c[..., :-t, t:] - c[..., t:, :-t] + c[..., :-t, :-t]


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

    ``CopyDetector(reference, encoder, units=None, threshold=None)``: ``reference`` is uint8
    N x C x H x W; ``encoder`` an ``SSLEncoder`` (``medisynth.features.ssl.ssl_encoder(data)``);
    ``units`` one id per reference image (images of one patient / series share it; default: each
    image its own unit); ``threshold`` the flag similarity, or None to calibrate it on the
    reference (``calibration`` then says how).

    ``match(images)`` -> ``CopyMatches``; ``similarity(images)``; ``keep(images)`` (not flagged).
    """

    def __init__(self, reference, encoder: SSLEncoder | SSLExtractor, units=None, threshold: Optional[float] = None,
                 top_k: int = TOP_K, batch_size: int = 256):
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
        self.top_k = max(1, min(top_k, len(ref)))
        self.batch_size = batch_size
        self._grid = _grid()
        self._ref_desc = self.extractor.descriptors(ref)
        self._ref_coarse = _resized(ref, COARSE_SIDE)
        self._ref_fine = _resized(ref, min(COMPARE_SIDE, *self.size))
        # the coarse search leaves rotation out (at 32 px, smoothed, 5 degrees barely move the ranking); the fine
        # stage tries every angle for each of its picks: a third of the work for the same catches
        self._coarse = _grid(angles=(0.0,))
        self._coarse_grids = _sampling_grid(self._coarse, COARSE_SIDE)
        self._fine_grids = _sampling_grid(self._grid, self._ref_fine.shape[-1])
        self.descriptor_floor = self._descriptor_floor()
        self.calibration: dict = {"method": "given", "threshold": threshold}
        if threshold is None:
            threshold = self._calibrate()
        if not -1.0 <= float(threshold) <= 1.0:
            raise MedisynthError(f"copy threshold {threshold}: a correlation in [-1, 1]")
        self.threshold = float(threshold)

    # -- checks --------------------------------------------------------------------------------
    def _check(self, images, what: str) -> torch.Tensor:
        t = check_images(images, what, self.channels)
        if tuple(t.shape[-2:]) != self.size:
            raise MedisynthError(f"{what}: images of {tuple(t.shape[-2:])} px, but the training images are {self.size}; "
                                 "resize them to the training size first")
        return t

    # -- matching ------------------------------------------------------------------------------
    def _descriptor_scores(self, queries: torch.Tensor, exclude_units=None) -> torch.Tensor:
        d0 = self.extractor.descriptors(queries)
        d1 = self.extractor.descriptors(queries, flip=True)
        scores = torch.maximum(d0 @ self._ref_desc.T, d1 @ self._ref_desc.T)
        if exclude_units is not None:  # calibration: only OTHER units count
            same = torch.from_numpy(exclude_units[:, None] == self.units[None, :])
            scores = scores.masked_fill(same, -2.0)
        return scores

    def _confirm(self, q: torch.Tensor, top, ex) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
        """Align each query with its candidates: (nearest index, similarity, descriptor similarity, transform)."""
        coarse_grid, k = self._coarse, top.indices.shape[1]
        # coarse: every candidate mirrored or not and zoomed (no rotation), at COARSE_SIDE
        warped = _warp(self._ref_coarse[top.indices.flatten()], self._coarse_grids)
        coarse, _, _ = _best_alignment(_resized(q, COARSE_SIDE), warped.view(len(q), k * len(coarse_grid), *warped.shape[2:]), MAX_SHIFT)
        if ex is not None:  # a candidate of the query's own unit never confirms (masked scores can still be picked)
            own = torch.from_numpy(self.units[top.indices.numpy()] == ex[:, None])
            coarse = coarse.masked_fill(own.repeat_interleave(len(coarse_grid), dim=1), -1.0)
        # fine: the best REFINE (candidate, mirror, zoom) at full resolution, each at every angle
        picks = coarse.topk(min(REFINE, coarse.shape[1]), dim=1).indices  # Q x R
        rows = torch.arange(len(q))
        cand = picks // len(coarse_grid)
        na = len(ANGLES)
        # self._grid lists (mirror, zoom, angle) with the angle varying fastest, the coarse grid (mirror, zoom)
        fine_t = ((picks % len(coarse_grid))[:, :, None] * na + torch.arange(na)).flatten(1)  # Q x (R * angles)
        ref_idx = top.indices[rows[:, None], cand].repeat_interleave(na, dim=1)  # Q x (R * angles)
        fine = _warp_each(self._ref_fine[ref_idx.flatten()], self._fine_grids[fine_t.flatten()])
        side = self._ref_fine.shape[-1]
        score, dy, dx = _best_alignment(_resized(q, side), fine.view(len(q), ref_idx.shape[1], *fine.shape[1:]),
                                        MAX_SHIFT * side // COARSE_SIDE)
        if ex is not None:
            score = score.masked_fill(coarse.gather(1, picks).repeat_interleave(na, dim=1) <= -1.0, -1.0)
        value, r = score.max(dim=1)
        best_cand = cand.repeat_interleave(na, dim=1)[rows, r]
        scale = self.size[1] / side  # report shifts in the images' own pixels
        transforms = [describe_transform(*self._grid[int(fine_t[i, r[i]])], -float(dx[i, r[i]]) * scale,
                                         -float(dy[i, r[i]]) * scale) for i in range(len(q))]
        return ref_idx[rows, r], value, top.values[rows, best_cand], transforms

    def _match(self, queries: torch.Tensor, exclude_units=None, skip_unlikely: bool = False) -> CopyMatches:
        n = len(queries)
        nearest = np.zeros(n, np.int64)
        sim = np.full(n, np.nan)
        dsim = np.zeros(n)
        transforms = ["not aligned: descriptor below the copy floor"] * n
        for lo in range(0, n, self.batch_size):
            q = queries[lo:lo + self.batch_size]
            ex = None if exclude_units is None else exclude_units[lo:lo + self.batch_size]
            top = self._descriptor_scores(q, ex).topk(self.top_k, dim=1)
            nearest[lo:lo + len(q)] = top.indices[:, 0].numpy()
            dsim[lo:lo + len(q)] = top.values[:, 0].double().numpy()
            todo = np.arange(len(q))
            # the fast path presumes an image under the floor is below the threshold: true for any threshold a
            # copy check means (> 0), not for one that asks to reject (nearly) everything
            if skip_unlikely and self.descriptor_floor is not None and self.threshold > 0:
                todo = np.nonzero(top.values[:, 0].numpy() >= self.descriptor_floor)[0]
            if len(todo) == 0:
                continue
            sel = torch.from_numpy(todo)
            sub_top = type(top)((top.values[sel], top.indices[sel]))
            idx, value, d, found = self._confirm(q[sel], sub_top, None if ex is None else ex[todo])
            nearest[lo + todo] = idx.numpy()
            sim[lo + todo] = value.double().numpy()
            dsim[lo + todo] = d.double().numpy()
            for j, t in zip(todo, found):
                transforms[lo + j] = t
        flagged = np.nan_to_num(sim, nan=-1.0) >= getattr(self, "threshold", np.inf)
        return CopyMatches(nearest, sim, dsim, transforms, flagged)

    def match(self, images) -> CopyMatches:
        """Nearest training image after alignment, the similarity, the transform and the flag of each image."""
        return self._match(self._check(images, "query images"))

    def similarity(self, images) -> np.ndarray:
        return self.match(images).similarity

    def keep(self, images) -> np.ndarray:
        """True for images that are not copies. The fast path of ``sample --max-similarity``: images whose
        descriptor is below ``descriptor_floor`` (farther from every training image than any edited copy
        of a training image came to its source) are kept without the alignment search."""
        return ~self._match(self._check(images, "query images"), skip_unlikely=True).flagged

    def _descriptor_floor(self) -> float:
        """The lowest descriptor similarity between an edited copy (``copy_augment``, the encoder's training views,
        which are stronger than the edits the detector is for) of a training image and that image, minus 0.05."""
        from medisynth.data.dataset import float_to_uint8
        from medisynth.features.ssl import copy_augment

        pick = np.arange(len(self.reference))[:CALIBRATION_MAX_QUERIES]
        src = self.reference[pick]
        views = float_to_uint8(copy_augment(src.float().div(127.5).sub(1.0), torch.Generator().manual_seed(0)))
        d = torch.maximum(self.extractor.descriptors(views), self.extractor.descriptors(views, flip=True))
        own = (d * self._ref_desc[pick]).sum(dim=1)
        return float(own.min()) - 0.05

    # -- calibration ---------------------------------------------------------------------------
    def _calibrate(self) -> float:
        """The highest similarity a reference image reaches with an image of another unit, + CALIBRATION_MARGIN."""
        n = len(self.reference)
        distinct = len(np.unique(self.units))
        if distinct < 2:
            raise MedisynthError("copy threshold: all reference images are one unit, nothing to calibrate on; "
                                 "pass a threshold (e.g. --max-similarity 0.95)")
        pick = np.arange(n)
        if n > CALIBRATION_MAX_QUERIES:
            pick = np.sort(np.random.default_rng(0).choice(n, CALIBRATION_MAX_QUERIES, replace=False))
        between = self._match(self.reference[pick], exclude_units=self.units[pick]).similarity
        # the largest: a synthetic image closer to a training image than any training image came to another
        # unit's is flagged; the margin keeps distinct images at the edge of that range from being flagged
        threshold = float(np.clip(between.max() + CALIBRATION_MARGIN, 0.5, 0.999))
        rule = f"maximum over {len(pick)} training images"
        self.calibration = {
            "method": f"{rule} of each one's best aligned similarity to a training image of another unit, + {CALIBRATION_MARGIN}",
            "threshold": threshold, "queries": int(len(pick)), "units": int(distinct),
            "between_units_median": float(np.median(between)), "between_units_max": float(between.max()),
        }
        return threshold


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
    """The data set's detector: its train split as reference and units, its (cached) ssl encoder.

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
    return CopyDetector(reference, encoder, units=units_of(root), threshold=threshold)


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
