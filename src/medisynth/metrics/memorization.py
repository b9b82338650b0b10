"""Memorization and privacy: is a synthetic image a (near) copy of a training image?

Pixel-space similarity (``NearCopyFilter``): each image is area-downsampled to at most
32 x 32, its mean intensity subtracted (a brightness change does not hide a copy), the mean
of the reference embeddings subtracted (the structure every image of the data set shares,
e.g. the round fundus field of view, does not make distinct images look alike; done when
the reference has >= 16 images), and L2-normalised. Similarity is the cosine, in [-1, 1];
1 = the same picture up to brightness/contrast. Downsampling makes it robust to noise and
to shifts of a pixel or two.

Held-out baseline: how close do REAL images the model never saw (the val/test split) come
to the training set? Synthetic images are judged against that: a distance-to-closest-record
(DCR) ratio median(DCR fake) / median(DCR held-out) well below 1 means the model reproduces
training images more closely than fresh real images resemble them. Data sets with exact
duplicates or neighbouring CT slices have held-out images that are near-copies of training
images themselves; the report states that fraction, so a synthetic flag rate is read against it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# one constant for split time (prepare's near-duplicate grouping) and evaluation time
from medisynth.data.near_duplicates import CENTER_MIN_REFERENCE  # noqa: F401  (re-exported)

EMBED_SIDE = 32


def _to_nchw_tensor(images, layout: str) -> torch.Tensor:
    t = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    t = t.detach().cpu()
    if t.ndim == 3:  # N x H x W grayscale
        t = t[:, None] if layout == "nchw" else t[..., None]
    if t.ndim != 4:
        raise ValueError(f"expected a batch of images, got shape {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2) if layout == "nhwc" else t


class NearCopyFilter:
    """Flag images too similar to any reference (training) image.

    ``NearCopyFilter(reference_uint8_NxHxWxC, threshold)``; ``.similarity(images_uint8_NxCxHxW)``
    gives each image's highest cosine similarity to a reference image, ``.keep(images)`` is
    ``similarity < threshold``. Used by ``medisynth sample --max-similarity`` and by evaluate.
    """

    def __init__(self, reference, threshold: float = 0.95, side: int = EMBED_SIDE, batch_size: int = 1024):
        ref = _to_nchw_tensor(reference, "nhwc")
        if len(ref) == 0:
            raise ValueError("NearCopyFilter needs at least one reference image")
        self.threshold = float(threshold)
        self.channels = ref.shape[1]
        self.side = int(min(side, ref.shape[-2], ref.shape[-1]))
        self.batch_size = batch_size
        self._center = None
        raw = self._raw_embed(ref)
        if len(raw) >= CENTER_MIN_REFERENCE:
            self._center = raw.mean(dim=0, keepdim=True)
        self.reference = self._normalise(raw)

    # -- embedding -----------------------------------------------------------
    def _raw_embed(self, images: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, len(images), self.batch_size):
            x = images[i : i + self.batch_size].float().div_(127.5).sub_(1.0)
            if x.shape[1] != self.channels:  # compare gray with RGB by luma / repetition
                x = x.mean(dim=1, keepdim=True).expand(-1, self.channels, -1, -1)
            x = F.adaptive_avg_pool2d(x, self.side).flatten(1)
            out.append(x - x.mean(dim=1, keepdim=True))
        return torch.cat(out)

    def _normalise(self, raw: torch.Tensor) -> torch.Tensor:
        if self._center is not None:
            raw = raw - self._center
        return F.normalize(raw, dim=1, eps=1e-8)

    def embed(self, images_nchw) -> torch.Tensor:
        return self._normalise(self._raw_embed(_to_nchw_tensor(images_nchw, "nchw")))

    # -- queries -------------------------------------------------------------
    def nearest(self, images_nchw) -> tuple[np.ndarray, np.ndarray]:
        """(index of the most similar reference image, its similarity) for each image."""
        emb = self.embed(images_nchw)
        idx, sim = [], []
        with torch.inference_mode():
            for i in range(0, len(emb), self.batch_size):
                s = emb[i : i + self.batch_size] @ self.reference.T
                best = s.max(dim=1)
                idx.append(best.indices)
                sim.append(best.values)
        if not idx:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        return torch.cat(idx).numpy(), torch.cat(sim).clamp(-1, 1).double().numpy()

    def similarity(self, images_nchw) -> np.ndarray:
        return self.nearest(images_nchw)[1]

    def keep(self, images_nchw) -> np.ndarray:
        return self.similarity(images_nchw) < self.threshold


def nearest_feature_distance(queries: np.ndarray, reference: np.ndarray, scale: np.ndarray | None = None, batch: int = 2048):
    """(index, Euclidean distance) of each query's nearest reference row, features divided by ``scale``."""
    q = torch.as_tensor(np.asarray(queries, np.float32))
    r = torch.as_tensor(np.asarray(reference, np.float32))
    if scale is not None:
        s = torch.as_tensor(np.asarray(scale, np.float32)).clamp(min=1e-8)
        q, r = q / s, r / s
    idx, dist = [], []
    for i in range(0, len(q), batch):
        d = torch.cdist(q[i : i + batch], r)
        best = d.min(dim=1)
        idx.append(best.indices)
        dist.append(best.values)
    return torch.cat(idx).numpy(), torch.cat(dist).double().numpy()


def dcr_summary(fake_dcr: np.ndarray, heldout_dcr: np.ndarray | None) -> dict:
    """Distance-to-closest-record figures of the synthetic set against the held-out baseline."""
    out = {
        "fake_dcr_median": float(np.median(fake_dcr)),
        "fake_dcr_p05": float(np.percentile(fake_dcr, 5)),
        "heldout_dcr_median": None,
        "heldout_dcr_p05": None,
        "dcr_ratio": None,
        "fraction_closer_than_heldout_p05": None,
    }
    if heldout_dcr is not None and len(heldout_dcr):
        h_med, h_p05 = float(np.median(heldout_dcr)), float(np.percentile(heldout_dcr, 5))
        out.update(
            heldout_dcr_median=h_med,
            heldout_dcr_p05=h_p05,
            dcr_ratio=float(out["fake_dcr_median"] / h_med) if h_med > 0 else None,
            fraction_closer_than_heldout_p05=float(np.mean(fake_dcr < h_p05)),
        )
    return out


def pixel_memorization(train_nchw, fake_nchw, heldout_nchw=None, threshold: float = 0.95) -> dict:
    """Pixel-space memorization figures plus the per-image nearest training index and similarity."""
    filt = NearCopyFilter(_to_nchw_tensor(train_nchw, "nchw").permute(0, 2, 3, 1), threshold)
    f_idx, f_sim = filt.nearest(fake_nchw)
    result = {
        "threshold": float(threshold),
        "similarity": "cosine of mean-centred, downsampled pixels (NearCopyFilter)",
        "embed_side": filt.side,
        "fraction_flagged": float(np.mean(f_sim >= threshold)),
        "num_flagged": int(np.sum(f_sim >= threshold)),
        "fake_max_similarity_median": float(np.median(f_sim)),
        "heldout_fraction_flagged": None,
        "heldout_num_exact_copies": None,
        **dcr_summary(1.0 - f_sim, None),
    }
    h_sim = None
    if heldout_nchw is not None and len(heldout_nchw):
        _, h_sim = filt.nearest(heldout_nchw)
        result.update(dcr_summary(1.0 - f_sim, 1.0 - h_sim))
        result["heldout_fraction_flagged"] = float(np.mean(h_sim >= threshold))
        result["heldout_num_exact_copies"] = int(np.sum(h_sim >= 0.9999))
    return {"summary": result, "fake_nearest": f_idx, "fake_similarity": f_sim, "heldout_similarity": h_sim}


def feature_memorization(train_feats, fake_feats, heldout_feats=None) -> dict:
    """Feature-space DCR figures (Euclidean, features standardised by the training set's std)."""
    scale = np.asarray(train_feats).std(axis=0)
    f_idx, f_d = nearest_feature_distance(fake_feats, train_feats, scale)
    h_d = None
    if heldout_feats is not None and len(heldout_feats):
        _, h_d = nearest_feature_distance(heldout_feats, train_feats, scale)
    return {"summary": dcr_summary(f_d, h_d), "fake_nearest": f_idx, "fake_distance": f_d}
