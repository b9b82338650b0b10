"""The report's figures: image grids, nearest-neighbour pairs, histograms, feature-space scatter plots."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from medisynth.evaluation.inputs import ImageSet
from medisynth.report.format import format_number


@dataclass
class FigureInputs:
    """What the report's figures are drawn from (computed once by ``evaluate``)."""

    reference: ImageSet  # the real images compared with
    fake: ImageSet
    train: ImageSet  # the real train split (nearest neighbours come from it)
    features: dict[str, dict[str, np.ndarray]]  # space -> {"real", "fake", "train", "heldout"}
    mem_px: dict  # copy_memorization's output
    flagged: np.ndarray  # indices of near-copies, most similar first
    hist_real: np.ndarray
    hist_fake: np.ndarray
    real_mean: np.ndarray
    fake_mean: np.ndarray
    run: Optional[Path] = None  # the run sampled, when the synthetic set came from one (loss curves)


def figures(inputs: FigureInputs, seed: int, near_copy_threshold: float) -> dict[str, Optional[bytes]]:
    """Every figure of the report as PNG bytes, keyed by plot name."""
    from medisynth.report import plots

    reference, fake, train, features = inputs.reference, inputs.fake, inputs.train, inputs.features
    mem_px, flagged, run = inputs.mem_px, inputs.flagged, inputs.run
    rng = np.random.default_rng(seed)

    def pick(n_total: int, n: int) -> np.ndarray:
        return np.sort(rng.choice(n_total, min(n, n_total), replace=False))

    show = 32
    figs: dict[str, Optional[bytes]] = {
        "grid_real": plots.grid_png(display(reference.images[pick(len(reference.images), show)])),
        "grid_fake": plots.grid_png(display(fake.images[pick(len(fake.images), show)])),
    }
    pairs = pick(len(fake.images), 6)
    near = mem_px["fake_nearest"]
    figs["nn_pairs"] = plots.pairs_png(
        display(fake.images[pairs]), display(train.images[near[pairs]]),
        [f"sim {format_number(mem_px['fake_similarity'][i], kind='fraction')}" for i in pairs],
    )
    if len(flagged):
        top = flagged[:8]
        figs["flagged_pairs"] = plots.pairs_png(
            display(fake.images[top]), display(train.images[near[top]]),
            [f"{fake.ids[i]}\nsim {format_number(mem_px['fake_similarity'][i], kind='fraction')}\n{mem_px['matches'].transform[i]}" for i in top],
        )
    figs["similarity_hist"] = plots.similarity_histogram(mem_px["fake_similarity"], mem_px["heldout_similarity"], near_copy_threshold)
    figs["edges"] = plots.edge_maps(reference.images[pick(len(reference.images), 6)].numpy(), fake.images[pick(len(fake.images), 6)].numpy())
    figs["histograms"] = plots.histograms(inputs.hist_real, inputs.hist_fake)
    figs["mean_images"] = plots.mean_images(inputs.real_mean, inputs.fake_mean)
    for space, f in features.items():
        if len(f["real"]) > 2 and len(f["fake"]) > 2:
            r2, f2 = plots.project_2d(f["real"], f["fake"])
            figs[f"pca:{space}"] = plots.pca_scatter(r2, f2, f"{space} features, PCA fitted on real")
            figs[f"kde:{space}"] = plots.pca_kde(r2, f2, f"{space} features: KDE along PC 1 and 2")
    if run is not None:
        figs["loss_curves"] = plots.loss_curves(plots.read_loss_log(run))
    return figs


def display(images: torch.Tensor, max_side: int = 128) -> np.ndarray:
    """Images for a figure: large ones downsampled (antialiased) so the report stays small."""
    if images.shape[-1] > max_side:
        images = F.interpolate(images.float(), size=(max_side, max_side), mode="bilinear", antialias=True).round().clamp(0, 255).to(torch.uint8)
    return images.numpy()
