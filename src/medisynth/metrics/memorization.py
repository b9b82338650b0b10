"""Memorization and privacy: is a synthetic image a (near) copy of a training image?

Image space: ``medisynth.metrics.copy_detection.CopyDetector`` (a self-supervised copy descriptor
proposes candidates, a normalised cross-correlation after aligning flip, zoom, rotation and shift
confirms them; the flag threshold is calibrated on the training set's units). ``copy_memorization``
turns its matches into the report's figures.

Held-out baseline: how close do REAL images the model never saw (the val/test split) come
to the training set? Synthetic images are judged against that: a distance-to-closest-record
(DCR) ratio median(DCR fake) / median(DCR held-out) well below 1 means the model reproduces
training images more closely than fresh real images resemble them. Data sets with exact
duplicates or neighbouring CT slices can have held-out images that are near-copies of training
images themselves; the report states that fraction, so a synthetic flag rate is read against it.
"""
from __future__ import annotations

import numpy as np
import torch


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


def copy_memorization(detector, fake_nchw, heldout_nchw=None) -> dict:
    """Copy-detection figures of a synthetic set (and of held-out real images, the baseline), plus per-image matches.

    ``detector`` is a ``CopyDetector`` on the training split; DCR here is 1 - similarity.
    """
    fake = detector.match(fake_nchw)
    f_sim = fake.similarity
    t = detector.threshold
    result = {
        "threshold": t,
        "threshold_source": detector.calibration["method"],
        "calibration": detector.calibration,
        "similarity": "normalised cross-correlation with the nearest training image after aligning flip, zoom, "
                      "rotation and shift (candidates from the self-supervised ssl descriptor)",
        "fraction_flagged": float(np.mean(fake.flagged)) if len(f_sim) else 0.0,
        "num_flagged": int(np.sum(fake.flagged)),
        "num_units_flagged": int(len(np.unique(detector.units[fake.nearest[fake.flagged]]))),
        "fake_max_similarity_median": float(np.median(f_sim)) if len(f_sim) else None,
        "heldout_fraction_flagged": None,
        "heldout_num_exact_copies": None,
        **dcr_summary(1.0 - f_sim, None),
    }
    h_sim = None
    if heldout_nchw is not None and len(heldout_nchw):
        held = detector.match(heldout_nchw)
        h_sim = held.similarity
        result.update(dcr_summary(1.0 - f_sim, 1.0 - h_sim))
        result["heldout_fraction_flagged"] = float(np.mean(held.flagged))
        result["heldout_num_exact_copies"] = int(np.sum(h_sim >= 0.9999))
    return {"summary": result, "matches": fake, "fake_nearest": fake.nearest, "fake_similarity": f_sim,
            "heldout_similarity": h_sim}


def feature_memorization(train_feats, fake_feats, heldout_feats=None) -> dict:
    """Feature-space DCR figures (Euclidean, features standardised by the training set's std)."""
    scale = np.asarray(train_feats).std(axis=0)
    f_idx, f_d = nearest_feature_distance(fake_feats, train_feats, scale)
    h_d = None
    if heldout_feats is not None and len(heldout_feats):
        _, h_d = nearest_feature_distance(heldout_feats, train_feats, scale)
    return {"summary": dcr_summary(f_d, h_d), "fake_nearest": f_idx, "fake_distance": f_d}
