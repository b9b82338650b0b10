"""Per-class figures for small classes: KID and coverage with a bootstrap interval and the sample sizes.

Full per-class distribution metrics (FID, precision/recall) need ``min_class_samples`` images
a class; a rare class of 5-20 images still gets KID and coverage here, in the verdict's feature
space, with a percentile-bootstrap interval (``medisynth.metrics.interval``) so a reader sees how
little 6 images can say instead of a dash.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from medisynth.defaults import PRDC_K
from medisynth.metrics.interval import MIN_IMAGES, kid_coverage_interval


def add_small_class_intervals(per_class: dict, real_features: np.ndarray, real_labels: np.ndarray, fake_features: np.ndarray,
                              fake_labels: Optional[np.ndarray], class_names: list[str], space: str, k: int = PRDC_K,
                              n_boot: int = 200, seed: int = 0) -> None:
    """Adds ``per_class[name]["interval"]`` (see ``kid_coverage_interval``, plus ``space``) to every class,
    or ``{"space", "reason"}`` when a set has fewer than ``MIN_IMAGES`` images of it."""
    if fake_labels is None:
        return
    for c, name in enumerate(class_names):
        r_sel, f_sel = real_labels == c, fake_labels == c
        n_real, n_fake = int(r_sel.sum()), int(f_sel.sum())
        if min(n_real, n_fake) < MIN_IMAGES:
            per_class[name]["interval"] = {"space": space, "n_real": n_real, "n_fake": n_fake,
                                           "reason": f"fewer than {MIN_IMAGES} images ({n_real} real, {n_fake} synthetic)"}
            continue
        per_class[name]["interval"] = {"space": space, **kid_coverage_interval(
            real_features[r_sel], fake_features[f_sel], k=k, n_boot=n_boot, seed=seed + c)}


__all__ = ["add_small_class_intervals"]
