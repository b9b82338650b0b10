"""Fixtures for the vessel pipeline tests: a known binary vessel tree and tiny paired data."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage import draw, morphology


def draw_vessel_tree(size: int = 64, depth: int = 4, seed: int = 0, width: int = 1) -> np.ndarray:
    """A binary tree of straight segments, branching in two at each level (bool size x size).

    ``width`` is the dilation radius of the trunk; branches below the second level are 1 px wide.
    """
    rng = np.random.default_rng(seed)
    tree = np.zeros((size, size), dtype=bool)
    thick = np.zeros_like(tree)

    def grow(r, c, angle, length, level):
        r2 = r - length * math.cos(angle)
        c2 = c + length * math.sin(angle)
        rr, cc = draw.line(int(round(r)), int(round(c)), int(round(r2)), int(round(c2)))
        ok = (rr >= 0) & (rr < size) & (cc >= 0) & (cc < size)
        (thick if level < 2 else tree)[rr[ok], cc[ok]] = True
        if level + 1 < depth:
            for sign in (-1, 1):
                grow(r2, c2, angle + sign * rng.uniform(0.35, 0.6), length * 0.7, level + 1)

    grow(size - 2, size / 2, 0.0, size * 0.3, 0)
    if width > 0:
        thick = ndimage.binary_dilation(thick, morphology.disk(width))
    return tree | thick


@pytest.fixture
def vessel_tree():
    return draw_vessel_tree(64, depth=4, seed=0)


@pytest.fixture
def tree_factory():
    return draw_vessel_tree


def make_run(path, name: str, size: int, channels: int, hyper: dict | None = None, target: str = "images", seed: int = 0):
    """A run folder in the trainer's format (model.json + one checkpoint), without training."""
    import dataclasses

    import torch

    from medisynth.models import DataSpec, build_model
    from medisynth.runs import Run
    from medisynth.training.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    spec = DataSpec(size, channels, ["0"])
    model = build_model(name, spec, hyper or {})
    Run.create(
        path, {"model": name, "target": target},
        {"model": name, "per_class": False, "spec": dataclasses.asdict(spec), "hyper": dataclasses.asdict(model.hyper),
         "ema": bool(model.ema_networks), "target": target, "class_index": None, "conditional": model.conditional},
    )
    save_checkpoint(path, 1, model, model.configure_optimizers(), {"epoch": 1.0, "elapsed": 0.0, "metrics": {}})
    return model


@pytest.fixture
def run_factory(tmp_path):
    def factory(run_name: str, name: str, size: int, channels: int, hyper=None, target="images"):
        return make_run(tmp_path / run_name, name, size, channels, hyper, target)

    return factory


@pytest.fixture
def tiny_runs(run_factory, tmp_path):
    """A vessel run (resvae on masks), a pix2pix run and an edsr run, all at 32 px."""
    run_factory("vessels", "resvae", 32, 1, {"width": 8, "latent_dim": 8, "blocks": 1}, target="masks")
    run_factory("p2p", "pix2pix", 32, 3, {"ngf": 8, "ndf": 8})
    run_factory("sr", "edsr", 32, 3, {"n_resblocks": 2, "n_feats": 8})
    return tmp_path
