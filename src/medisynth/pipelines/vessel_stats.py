"""How close synthetic image + vessel pairs are to real ones (seed paper 003's checks, and more).

1. SSIM against a reference (the paper's protocol): one real image is the reference;
   the mean SSIM of every synthetic image against it is set beside the mean SSIM of the
   other real images against it (the paper: 0.74 synthetic vs 0.78 real for vessel maps).
   Done for the vessel maps and for the photographs, with medisynth's one SSIM
   (``medisynth.metrics.ssim``: 11 px Gaussian window, intensities on [0, 1]).
   A high synthetic figure only says "structured like a fundus image"; it is not fidelity
   on its own, which is why the real-vs-reference figure is always reported beside it.
2. Vessel-map statistics of synthetic against real annotations, per image then mean/std:
   vessel density (fraction of the FOV), connected components, and from the skeleton
   (``skimage.morphology.skeletonize``) its length, end points (1 neighbour) and branch
   points (3 or more neighbours).

Both sets are brought to one size first with medisynth's own preprocessing (fundus
field-of-view crop, pad to square, antialiased resize; masks by area then threshold),
so a raw DRIVE folder and a synthetic 1024 px folder are compared like with like.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage
from skimage import measure, morphology

from medisynth.errors import MedisynthError
from medisynth.io import read_image, write_json
from medisynth.metrics.ssim import ssim

_NEIGHBOURS = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]])


# -- per-image statistics ----------------------------------------------------
def skeleton_points(skeleton: np.ndarray) -> tuple[int, int]:
    """(end points, branch points) of a 1-px skeleton.

    End points are skeleton pixels with exactly one 8-neighbour. Branch points are junctions:
    skeleton pixels with 3 or more 8-neighbours, where touching junction pixels (a junction of
    an 8-connected skeleton is often 2-4 pixels) count as one branch point."""
    skeleton = np.asarray(skeleton, bool)
    neighbours = ndimage.convolve(skeleton.astype(np.uint8), _NEIGHBOURS, mode="constant")
    ends = int(np.count_nonzero(skeleton & (neighbours == 1)))
    branches = int(measure.label(skeleton & (neighbours >= 3), connectivity=2).max())
    return ends, branches


def vessel_map_stats(vessels: np.ndarray, fov: Optional[np.ndarray] = None) -> dict[str, float]:
    """Density, components and skeleton figures of one binary vessel map."""
    vessels = np.asarray(vessels, bool)
    area = int(np.count_nonzero(fov)) if fov is not None else vessels.size
    skeleton = morphology.skeletonize(vessels)
    ends, branches = skeleton_points(skeleton)
    return {
        "vessel_density": float(np.count_nonzero(vessels) / max(area, 1)),
        "components": int(measure.label(vessels, connectivity=2).max()),
        "skeleton_length": int(np.count_nonzero(skeleton)),
        "end_points": ends,
        "branch_points": branches,
    }


# -- reading pair sets ----------------------------------------------------------
@dataclass
class PairSet:
    """Images (N x S x S x C uint8), vessel masks and FOV masks (N x S x S bool), and their ids."""

    ids: list[str]
    images: np.ndarray
    vessels: np.ndarray
    fovs: np.ndarray
    where: str


def _read_binary(path: Path, what: str) -> np.ndarray:
    m = read_image(path, channels=1, skip_flag=None)[..., 0]  # the pipeline commands have no --skip-bad
    values = np.unique(m)
    if not set(values.tolist()) <= {0, 1, 255}:
        raise MedisynthError(
            f"{path}: {what} is not binary (values {values[:6].tolist()}...); it must hold only 0 and 255 (or 0 and 1)"
        )
    return m > 0


def read_pair_folder(root: Path, size: int) -> PairSet:
    """A DRIVE/HRF/CHASE layout folder (``medisynth prepare --source pairs`` layouts) at ``size`` px.

    Uses the ``pairs`` source to match files (it reports images without masks), then checks
    every pair: same size for image and masks, binary masks."""
    from medisynth.data.preprocess import PrepOptions, preprocess
    from medisynth.data.sources.pairs import PairsSource

    source = PairsSource(Path(root), skip_flag=None)
    ids, images, vessels, fovs = [], [], [], []
    options = PrepOptions(size=size, kind="fundus", channels=3)
    for record in source.records():
        image = read_image(record.path, skip_flag=None)
        mask = _read_binary(record.mask_path, "vessel mask")
        fov = _read_binary(record.fov_path, "field-of-view mask") if record.fov_path else None
        for name, m, path in (("vessel mask", mask, record.mask_path), ("field-of-view mask", fov, record.fov_path)):
            if m is not None and m.shape != image.shape[:2]:
                raise MedisynthError(
                    f"{path}: {name} is {m.shape[1]}x{m.shape[0]} but its image {record.path.name} is "
                    f"{image.shape[1]}x{image.shape[0]}; every mask must match its image's size"
                )
        u8 = lambda m: None if m is None else (m * 255).astype(np.uint8)  # noqa: E731
        image, mask, fov = preprocess(image, options, u8(mask), u8(fov))
        ids.append(record.id)
        images.append(image)
        vessels.append(mask > 0)
        fovs.append(fov > 0)
    if not ids:
        raise MedisynthError(f"{root}: no image + vessel-mask pairs found")
    return PairSet(ids, np.stack(images), np.stack(vessels), np.stack(fovs), str(root))


def read_prepared(root: Path, size: int) -> PairSet:
    """All splits of a prepared data set with masks, resized to ``size`` when needed."""
    from medisynth.data.dataset import PreparedDataset
    from medisynth.data.preprocess import resize
    from medisynth.io import convert_channels

    ds = PreparedDataset(root, split=None, with_masks=True)
    images, masks = ds.images_uint8(), ds.masks_uint8()
    images = np.stack([resize(convert_channels(im, 3), size) for im in images])
    vessels = np.stack([resize(m, size, is_mask=True) > 0 for m in masks])
    from medisynth.pipelines.fov import circle_fov

    fovs = np.repeat(circle_fov(size)[None], len(images), axis=0)
    return PairSet(list(ds.index["id"].astype(str)), images, vessels, fovs, str(root))


def read_pairs(root: Path, size: int) -> PairSet:
    root = Path(root)
    if (root / "manifest.json").is_file():
        return read_prepared(root, size)
    if not root.is_dir():
        raise MedisynthError(f"{root}: no such folder; give a prepared data set with masks or a DRIVE-layout folder")
    return read_pair_folder(root, size)


# -- the evaluation ---------------------------------------------------------------
def ssim_to_reference(images: np.ndarray, reference: np.ndarray, skip: Optional[int] = None) -> list[float]:
    """SSIM of each image (uint8 or bool, H x W [x C]) against ``reference``, leaving out index ``skip``."""
    keep = [i for i in range(len(images)) if i != skip]
    if not keep:
        return []
    as_nchw = lambda x: np.moveaxis(x, -1, 1) if x.ndim == 4 else x[:, None]  # noqa: E731  (N x H x W [x C])
    return ssim(as_nchw(images[keep]), as_nchw(reference[None])).tolist()


def _summary(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "n": int(arr.size)} if arr.size else {"mean": float("nan"), "std": float("nan"), "n": 0}


@dataclass
class VesselEvalConfig:
    real: Path  # a prepared data set with masks, or a DRIVE/HRF-layout folder
    synthetic: Path  # the output of `medisynth pipeline vessels` (DRIVE layout)
    out: Optional[Path] = None  # JSON report
    size: int = 512  # both sets are compared at this size
    reference_index: int = 0  # which real image is the SSIM reference
    overwrite: bool = False


def evaluate_vessel_pairs(config: VesselEvalConfig) -> dict:
    """SSIM-to-reference and vessel statistics of synthetic against real pairs; written to ``config.out``."""
    if config.out is not None and Path(config.out).exists() and not config.overwrite:
        raise MedisynthError(f"{config.out} already exists; choose another --out or pass --overwrite")
    real = read_pairs(config.real, config.size)
    synthetic = read_pairs(config.synthetic, config.size)
    if not 0 <= config.reference_index < len(real.ids):
        raise MedisynthError(f"--reference-index {config.reference_index}: the real set has {len(real.ids)} images")
    r = config.reference_index
    report: dict = {
        "real": real.where, "synthetic": synthetic.where, "size": config.size,
        "n_real": len(real.ids), "n_synthetic": len(synthetic.ids),
        "reference": real.ids[r],
        "ssim": {
            "protocol": "mean SSIM of each set against one real reference image (Sengupta et al., seed 003); "
                        "the reference itself is left out of the real set",
            "vessels_synthetic": _summary(ssim_to_reference(synthetic.vessels, real.vessels[r])),
            "vessels_real": _summary(ssim_to_reference(real.vessels, real.vessels[r], skip=r)),
            "images_synthetic": _summary(ssim_to_reference(synthetic.images, real.images[r])),
            "images_real": _summary(ssim_to_reference(real.images, real.images[r], skip=r)),
        },
        "vessel_stats": {},
    }
    per_set = {name: [vessel_map_stats(v, f) for v, f in zip(s.vessels, s.fovs)] for name, s in (("real", real), ("synthetic", synthetic))}
    for key in per_set["real"][0]:
        report["vessel_stats"][key] = {name: _summary([d[key] for d in rows]) for name, rows in per_set.items()}
    if config.out is not None:
        write_json(Path(config.out), report)
    return report


def format_report(report: dict) -> str:
    s = report["ssim"]
    lines = [
        f"SSIM against reference {report['reference']} ({report['size']} px): "
        f"vessels synthetic {s['vessels_synthetic']['mean']:.3f} vs real {s['vessels_real']['mean']:.3f}; "
        f"images synthetic {s['images_synthetic']['mean']:.3f} vs real {s['images_real']['mean']:.3f}",
        f"{'statistic':<16}{'real mean':>12}{'synthetic mean':>16}",
    ]
    for key, v in report["vessel_stats"].items():
        lines.append(f"{key:<16}{v['real']['mean']:>12.4g}{v['synthetic']['mean']:>16.4g}")
    return "\n".join(lines)
