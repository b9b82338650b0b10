"""Procedurally drawn colour fundus photographs graded for diabetic retinopathy (DR 0-4).

What is drawn (layer by layer, all in float32 RGB, one Gaussian blur per image):

* a circular field of view (black outside) with an orange-red, textured background whose
  pigmentation and brightness vary, vignetting, uneven illumination and sometimes a pale rim;
* the optic disc (bright yellowish, with a paler cup) left or right of centre by eye, and the
  darker macula with its fovea on the other side;
* a branching vessel tree grown from the disc (``vessels.py``): veins darker and thicker,
  arteries lighter and thinner, tapering and branching recursively; its binary mask is the
  ground truth saved beside each image;
* lesions by grade, following Table 1 of the DR grading scheme (seed paper 002):
  0 none; 1 microaneurysms only; 2 + dot/blot haemorrhages, hard exudates, cotton-wool spots;
  3 many haemorrhages in all four quadrants, venous beading, IRMA; 4 severe features plus
  neovascularisation (at the disc and/or elsewhere) and often a vitreous haemorrhage haze.

Anatomy, lesions and noise use separate random streams split from the caller's generator,
so one generator state gives the same eye at every grade: only the findings differ.
"""
from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir, atomic_write_text, write_json, write_png
from medisynth.phantom import common
from medisynth.phantom.vessels import Vessel, draw_vessels, grow_tangle, grow_tree

GRADES = ("0", "1", "2", "3", "4")
GRADE_NAMES = ("no DR", "mild NPDR", "moderate NPDR", "severe NPDR", "proliferative DR")
# EyePACS (Kaggle 2015) class shares in percent, as quoted in seed paper 002
EYEPACS_PROPORTIONS = (73.67, 6.97, 14.85, 2.35, 2.16)
LESION_KINDS = ("microaneurysm", "haemorrhage", "hard_exudate", "cotton_wool", "venous_beading",
                "irma", "neovascular", "preretinal", "vitreous_haze")

# multiplicative tints (what a red-brown blood layer does to the orange background)
VEIN_TINT = np.array([0.58, 0.30, 0.34], np.float32)
ARTERY_TINT = np.array([0.80, 0.52, 0.55], np.float32)
BLOOD_TINT = np.array([0.50, 0.20, 0.22], np.float32)
NEW_VESSEL_TINT = np.array([0.75, 0.30, 0.32], np.float32)


@dataclass
class FundusRender:
    """One rendered eye plus everything a test or a segmentation study may want to know."""

    image: np.ndarray            # uint8 HxWx3
    vessel_mask: np.ndarray      # uint8 HxW, 0/255, inside the FOV
    fov: np.ndarray              # uint8 HxW, 0/255 circle
    grade: int
    eye: str                     # "left" | "right"
    disc: tuple[float, float]    # (y, x) in [-1, 1] units
    fovea: tuple[float, float]
    lesions: dict[str, np.ndarray] = field(default_factory=dict)   # kind -> bool HxW footprint


def render_fundus(grade: int | str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image uint8 HxWx3, vessel mask uint8 HxW 0/255, FOV uint8 HxW 0/255) for one DR grade."""
    r = render_fundus_layers(grade, size, rng)
    return r.image, r.vessel_mask, r.fov


def render_fundus_layers(grade: int | str, size: int, rng: np.random.Generator, eye: str | None = None) -> FundusRender:
    grade = _check_grade(grade)
    size = common.check_size(size)
    anat_rng, lesion_rng, noise_rng = common.split_rng(rng, 3)
    y, x = common.grid(size)
    px = 2.0 / size                                          # one pixel in image units

    # --- field of view and geometry
    fov_r = anat_rng.uniform(0.90, 0.97)
    fov_c = (anat_rng.uniform(-0.015, 0.015), anat_rng.uniform(-0.015, 0.015))
    rr = np.sqrt((y - fov_c[0]) ** 2 + (x - fov_c[1]) ** 2)
    fov = rr <= fov_r
    if eye is None:
        eye = "right" if anat_rng.random() < 0.5 else "left"
    else:
        anat_rng.random()                                    # keep the stream aligned either way
    side = 1 if eye == "right" else -1                       # right eye: disc on the right of the image
    fovea = (fov_c[0] + anat_rng.uniform(-0.06, 0.06), fov_c[1] + side * anat_rng.uniform(-0.12, 0.02))
    disc = (fovea[0] - anat_rng.uniform(0.0, 0.08), fovea[1] + side * anat_rng.uniform(0.46, 0.56))
    disc_r = anat_rng.uniform(0.11, 0.145)

    # --- background: pigmentation, texture, macula
    img = _background(anat_rng, size, y, x)
    macula = np.exp(-(((y - fovea[0]) ** 2 + (x - fovea[1]) ** 2) / (2 * (anat_rng.uniform(0.11, 0.16)) ** 2)))
    fov_pit = np.exp(-(((y - fovea[0]) ** 2 + (x - fovea[1]) ** 2) / (2 * max(0.025, 1.2 * px) ** 2)))
    depth = anat_rng.uniform(0.25, 0.45)
    img *= (1.0 - depth * macula[..., None] * np.array([0.8, 1.0, 0.9], np.float32))
    img *= (1.0 - 0.25 * fov_pit[..., None])

    # --- optic disc with cup (slightly taller than wide)
    # a soft peripapillary glow, then the disc itself
    glow = np.exp(-(((y - disc[0]) ** 2 + (x - disc[1]) ** 2) / (2 * (disc_r * 1.6) ** 2)))
    img *= 1.0 + 0.25 * glow[..., None] * np.array([0.6, 1.0, 1.0], np.float32)
    disc_cover = common.soft_ellipse(y, x, disc[0], disc[1], disc_r * 1.08, disc_r, edge=0.15)
    disc_color = np.array([1.0, 0.80, 0.52], np.float32) * anat_rng.uniform(0.95, 1.1)
    common.blend(img, disc_cover * 0.92, disc_color)
    cup_r = disc_r * anat_rng.uniform(0.3, 0.55)
    cup = common.soft_ellipse(y, x, disc[0], disc[1] - side * 0.15 * disc_r, cup_r * 1.1, cup_r, edge=0.4)
    common.blend(img, cup * 0.75, np.array([1.0, 0.94, 0.78], np.float32))

    # --- vessel tree (arteries lighter/thinner, veins darker/thicker)
    tree = grow_tree(anat_rng, disc, side, fov_r, fov_c, fovea)
    veins = [v for v in tree if v.kind == "vein"]
    arteries = [v for v in tree if v.kind == "artery"]
    lesions: dict[str, np.ndarray] = {}
    beading = None
    if grade >= 3:
        beading = _beading(lesion_rng)
    vein_cov = draw_vessels(veins, size, beading)
    art_cov = draw_vessels(arteries, size)
    img *= 1.0 - vein_cov[..., None] * (1.0 - VEIN_TINT)
    img *= 1.0 - art_cov[..., None] * (1.0 - ARTERY_TINT)
    vessel_cov = np.maximum(vein_cov, art_cov)
    if beading is not None:
        plain = draw_vessels(veins, size)
        lesions["venous_beading"] = (vein_cov - plain) > 0.25

    # --- DR findings
    new_cov = _draw_lesions(grade, lesion_rng, img, size, px, fov_r, fov_c, fovea, disc, disc_r, tree, lesions)
    if new_cov is not None:
        vessel_cov = np.maximum(vessel_cov, new_cov)

    # --- illumination, camera blur, sensor noise, FOV
    img *= _illumination(anat_rng, y, x, rr, fov_r, fov_c)[..., None]
    if anat_rng.random() < 0.3:                              # the pale bluish rim some cameras give
        rim = common.smoothstep(fov_r * 0.75, fov_r, rr)[..., None]
        img += rim * np.array([0.08, 0.16, 0.18], np.float32) * anat_rng.uniform(0.5, 1.5)
    sigma = max(0.45, size / 300.0)
    img = gaussian_filter(img, sigma=(sigma, sigma, 0), mode="nearest")
    img += noise_rng.normal(0.0, 0.012, size=img.shape).astype(np.float32)
    img *= (common.smoothstep(fov_r, fov_r - 2.5 * px, rr) * fov)[..., None]

    vessel_mask = (vessel_cov >= 0.3) & fov
    for kind in LESION_KINDS:
        lesions.setdefault(kind, np.zeros((size, size), bool))
        lesions[kind] &= fov
    return FundusRender(
        image=common.to_uint8(img), vessel_mask=vessel_mask.astype(np.uint8) * 255, fov=fov.astype(np.uint8) * 255,
        grade=grade, eye=eye, disc=disc, fovea=fovea, lesions=lesions,
    )


def _check_grade(grade) -> int:
    try:
        g = int(grade)
    except (TypeError, ValueError):
        g = -1
    if str(grade).strip() not in GRADES or g not in range(5):
        raise MedisynthError(f"DR grade {grade!r} is not one of {', '.join(GRADES)}")
    return g


def _background(rng, size, y, x) -> np.ndarray:
    """Orange-red retina: a pigmentation mixed from three reference colours, plus texture."""
    palette = np.array([[0.86, 0.40, 0.15],     # typical orange-red
                        [0.62, 0.27, 0.09],     # darker, heavily pigmented fundus
                        [0.88, 0.56, 0.36],     # pale, blond fundus
                        [0.80, 0.55, 0.30]],    # tan/olive, as under some camera white balances
                       np.float32)
    mix = rng.dirichlet((2.5, 1.0, 1.0, 0.8))
    base = (mix @ palette) * rng.uniform(0.72, 1.15)
    coarse = common.lowfreq_noise(rng, size, 5)
    fine = common.lowfreq_noise(rng, size, max(8, size // 5))
    shade = 1.0 + 0.06 * coarse + 0.035 * fine
    img = np.empty((size, size, 3), np.float32)
    img[:] = base
    img *= shade[..., None]
    img[..., 1] *= 1.0 + 0.05 * coarse                       # a little colour variation, not just brightness
    return img


def _illumination(rng, y, x, rr, fov_r, fov_c) -> np.ndarray:
    vignette = 1.0 - rng.uniform(0.25, 0.5) * (rr / fov_r) ** 2.5
    a = rng.uniform(0, 2 * math.pi)
    tilt = 1.0 + rng.uniform(0.0, 0.18) * ((x - fov_c[1]) * math.cos(a) + (y - fov_c[0]) * math.sin(a))
    return (vignette * tilt).astype(np.float32)


def _beading(rng):
    """Width modulation along main veins: sausage-like dilations past the disc (venous beading)."""
    wavelength = rng.uniform(0.045, 0.07)
    amp = rng.uniform(0.8, 1.2)

    def scale(vessel: Vessel) -> np.ndarray:
        pts, widths = vessel.arrays()
        if widths.max() < 0.012:
            return np.ones(len(widths), np.float32)
        seglen = np.r_[0.0, np.sqrt((np.diff(pts, axis=0) ** 2).sum(1))]
        s = np.cumsum(seglen)
        phase = rng.uniform(0, 2 * math.pi)
        bead = np.clip(np.sin(2 * math.pi * s / wavelength + phase), 0, None) ** 2
        return (1.0 + amp * bead * (s > 0.12)).astype(np.float32)

    return scale


def _random_points(rng, n, fov_r, fov_c, r_range=(0.1, 0.85), quadrant=None, center=None) -> np.ndarray:
    """n (y, x) points in the retina, uniform over area within a radius band (optionally one quadrant)."""
    c = fov_c if center is None else center
    r = fov_r * np.sqrt(rng.uniform(r_range[0] ** 2, r_range[1] ** 2, n))
    if quadrant is None:
        a = rng.uniform(0, 2 * math.pi, n)
    else:
        a = rng.uniform(quadrant * math.pi / 2 + 0.08, (quadrant + 1) * math.pi / 2 - 0.08, n)
    return np.stack([c[0] + r * np.sin(a), c[1] + r * np.cos(a)], axis=1).astype(np.float32)


def _away_from_disc(points, disc, disc_r):
    d = np.sqrt(((points - np.asarray(disc, np.float32)) ** 2).sum(1))
    return points[d > disc_r * 1.3]


def _draw_lesions(grade, rng, img, size, px, fov_r, fov_c, fovea, disc, disc_r, tree, lesions):
    """Paint the findings of ``grade`` into ``img`` in place; returns new-vessel coverage or None."""
    if grade == 0:
        return None
    H = (size, size)
    dot_min = 0.75 * px                                      # a lesion never shrinks below ~1.5 px across

    # microaneurysms: small round red dots, mostly around the posterior pole (every grade >= 1)
    n_ma = int(rng.integers(*((5, 13), (6, 16), (8, 21), (8, 21))[grade - 1]))
    pts = _away_from_disc(_random_points(rng, n_ma, fov_r * 0.75, fovea, (0.05, 1.0)), disc, disc_r)
    ma = np.zeros(H, np.float32)
    common.stamp_blobs(ma, pts, np.maximum(rng.uniform(0.008, 0.014, len(pts)), dot_min), size, edge=0.25)
    img *= 1.0 - 0.9 * ma[..., None] * (1.0 - BLOOD_TINT * np.array([0.9, 0.6, 0.6], np.float32))
    lesions["microaneurysm"] = ma > 0.5
    if grade == 1:
        return None

    # dot/blot (and a few flame) haemorrhages: moderate = a handful; severe = many in all 4 quadrants
    if grade == 2:
        pts = _random_points(rng, int(rng.integers(3, 11)), fov_r, fov_c, (0.1, 0.8))
    else:
        per_quadrant = (10, 19)
        pts = np.concatenate([_random_points(rng, int(rng.integers(*per_quadrant)), fov_r, fov_c, (0.12, 0.88), q)
                              for q in range(4)])
    pts = _away_from_disc(pts, disc, disc_r)
    n = len(pts)
    flame = rng.random(n) < 0.2
    haem = np.zeros(H, np.float32)
    common.stamp_blobs(haem, pts, np.maximum(rng.uniform(0.014, 0.04, n), 1.1 * px), size,
                       aspect=np.where(flame, rng.uniform(0.3, 0.5, n), rng.uniform(0.75, 1.0, n)),
                       angles=rng.uniform(0, math.pi, n), edge=0.3, wobble=rng.uniform(0, 0.12, (n, 3)))
    img *= 1.0 - 0.85 * haem[..., None] * (1.0 - BLOOD_TINT)
    lesions["haemorrhage"] = haem > 0.5

    # hard exudates: clusters of small, sharp, waxy yellow spots (often ring-like near the macula)
    n_clusters = int(rng.integers(0, 4)) if grade >= 3 else int(rng.integers(0, 4))
    n_cws = int(rng.integers(0, 4)) if grade == 2 else int(rng.integers(1, 6))
    if grade == 2 and n_clusters + n_cws == 0:
        n_clusters = 1
    he = np.zeros(H, np.float32)
    for c in _away_from_disc(_random_points(rng, n_clusters, fov_r * 0.6, fovea, (0.1, 1.0)), disc, disc_r):
        k = int(rng.integers(4, 14))
        ring = rng.uniform(0.02, 0.08)
        a = rng.uniform(0, 2 * math.pi, k)
        rad = ring * rng.uniform(0.5, 1.2, k)
        spots = np.stack([c[0] + rad * np.sin(a), c[1] + rad * np.cos(a)], 1)
        common.stamp_blobs(he, spots, np.maximum(rng.uniform(0.005, 0.012, k), 0.6 * px), size, edge=0.15,
                           wobble=rng.uniform(0, 0.15, (k, 3)))
    common.blend(img, 0.9 * he, np.array([1.0, 0.88, 0.42], np.float32) * rng.uniform(0.9, 1.05))
    lesions["hard_exudate"] = he > 0.5

    # cotton-wool spots: fluffy, pale, soft-edged patches near the arcades
    pts = np.stack([disc[0] + rng.choice((-1, 1), n_cws) * rng.uniform(0.15, 0.4, n_cws),
                    disc[1] + (fovea[1] - disc[1]) * rng.uniform(0.1, 0.8, n_cws)], 1).astype(np.float32)
    cws = np.zeros(H, np.float32)
    common.stamp_blobs(cws, pts, np.maximum(rng.uniform(0.025, 0.05, n_cws), 1.5 * px), size,
                       aspect=rng.uniform(0.6, 1.0, n_cws), angles=rng.uniform(0, math.pi, n_cws), edge=0.55,
                       wobble=rng.uniform(0.05, 0.2, (n_cws, 3)))
    common.blend(img, 0.75 * cws, np.array([0.96, 0.93, 0.84], np.float32))
    lesions["cotton_wool"] = cws > 0.5
    if grade == 2:
        return None

    # IRMA: short tortuous intraretinal vessels in 1+ quadrants
    new_vessels: list[Vessel] = []
    irma_pts = _random_points(rng, int(rng.integers(1, 4)), fov_r, fov_c, (0.25, 0.75))
    irma: list[Vessel] = []
    for c in irma_pts:
        irma += grow_tangle(rng, (float(c[0]), float(c[1])), 0.03, int(rng.integers(2, 5)), 0.006,
                            kind="irma", curl=0.5, steps=(4, 9))
    new_vessels += irma
    if grade == 4:
        # neovascularisation at the disc (NVD) and/or elsewhere along the arcades (NVE)
        nvd = rng.random() < 0.7
        nve = (not nvd) or rng.random() < 0.5
        if nvd:
            new_vessels += grow_tangle(rng, disc, disc_r * 1.5, int(rng.integers(20, 34)), 0.008)
        if nve:
            big = [v for v in tree if len(v.points) > 12]
            for _ in range(int(rng.integers(1, 3))):
                v = big[int(rng.integers(len(big)))] if big else None
                c = v.points[int(rng.integers(5, len(v.points)))] if v else fovea
                new_vessels += grow_tangle(rng, c, rng.uniform(0.05, 0.09), int(rng.integers(12, 22)), 0.0075)
    cov = draw_vessels(new_vessels, size)
    irma_cov = draw_vessels(irma, size)
    img *= 1.0 - 0.95 * cov[..., None] * (1.0 - NEW_VESSEL_TINT)
    lesions["irma"] = irma_cov > 0.3
    lesions["neovascular"] = (cov > 0.3) & ~lesions["irma"]

    if grade == 4 and rng.random() < 0.5:
        # preretinal (subhyaloid) haemorrhage: a large boat-shaped pool with a flat upper level
        c = (fov_c[0] + rng.uniform(-0.4, 0.4), fov_c[1] + rng.uniform(-0.5, 0.5))
        r = rng.uniform(0.08, 0.16)
        y, x = common.grid(size)
        pool = common.soft_ellipse(y, x, c[0], c[1], r * 0.8, r * 1.2, edge=0.08) * (y > c[0] - 0.1 * r)
        img *= 1.0 - 0.8 * pool[..., None] * (1.0 - BLOOD_TINT * np.array([0.8, 0.6, 0.6], np.float32))
        lesions["preretinal"] = pool > 0.5
    if grade == 4 and rng.random() < 0.7:
        # vitreous haemorrhage: a large, soft, dark-red haze (often settled inferiorly)
        c = (fov_c[0] + rng.uniform(-0.1, 0.5), fov_c[1] + rng.uniform(-0.4, 0.4))
        r = rng.uniform(0.25, 0.5)
        y, x = common.grid(size)
        d = np.sqrt((y - c[0]) ** 2 + (x - c[1]) ** 2) / r
        haze = (1.0 - common.smoothstep(0.4, 1.3, d)) * (0.8 + 0.25 * common.lowfreq_noise(rng, size, 6))
        haze = np.clip(haze, 0, 1) * rng.uniform(0.7, 0.9)
        img *= 1.0 - haze[..., None] * np.array([0.55, 0.85, 0.8], np.float32)
        lesions["vitreous_haze"] = haze > 0.25
    return cov


# ----------------------------------------------------------------------------- data set
def generate_fundus_dataset(out: str | Path, n: int = 1000, size: int = 128, seed: int = 0,
                            proportions: str | Sequence[float] | None = None, overwrite: bool = False,
                            workers: int = 1, progress: bool = False) -> Path:
    """Write a labelled fundus phantom in medisynth's image-folder layout and return its path.

    ``DIR/images/<id>.png`` (RGB), ``DIR/masks/<id>.png`` (vessels 0/255), ``DIR/fov/<id>.png``,
    ``DIR/labels.csv`` (image,label,mask,fov,patient), ``DIR/README.txt``, ``DIR/phantom.json``.
    Image ``i`` depends only on (seed, i, its grade): a larger ``n`` re-draws the same eyes
    (and keeps most of them in the same grade, see ``common.assign_labels``).
    """
    out = Path(out)
    size = common.check_size(size)
    seed = common.check_seed(seed)
    workers = common.check_workers(workers)
    props = common.parse_proportions(proportions, EYEPACS_PROPORTIONS, GRADES)
    counts = common.class_counts(n, props, GRADES)
    labels = common.assign_labels(counts, seed)
    rows = [_row(i, int(g)) for i, g in enumerate(labels)]
    with atomic_dir(out, overwrite, kind="phantom") as tmp:
        for sub in ("images", "masks", "fov"):
            (tmp / sub).mkdir()
        chunks = [rows[i:i + common.CHUNK] for i in range(0, len(rows), common.CHUNK)]
        job = partial(_render_chunk, str(tmp), seed, size)
        for _ in common.progress_jobs(job, chunks, workers, progress, "phantom fundus"):
            pass
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["image", "label", "mask", "fov", "patient"])
        for r in rows:
            writer.writerow([r["id"], GRADES[r["grade"]], f"masks/{r['id']}.png", f"fov/{r['id']}.png", r["patient"]])
        atomic_write_text(tmp / "labels.csv", buf.getvalue())
        params = {"kind": "fundus", "n": int(n), "size": size, "seed": seed,
                  "proportions": dict(zip(GRADES, props)), "counts": dict(zip(GRADES, counts)),
                  "class_names": dict(zip(GRADES, GRADE_NAMES))}
        write_json(tmp / "phantom.json", params)
        atomic_write_text(tmp / "README.txt", _readme(params))
    return out


def _row(index: int, grade: int) -> dict:
    # consecutive ids are the two eyes of one patient (split by patient keeps them together)
    return {"index": index, "grade": grade, "id": f"phantom_{index:06d}",
            "patient": f"patient_{index // 2:06d}", "eye": "left" if index % 2 == 0 else "right"}


def _render_chunk(tmp: str, seed: int, size: int, rows: list[dict]) -> int:
    root = Path(tmp)
    for r in rows:
        res = render_fundus_layers(r["grade"], size, common.image_rng(seed, 2, r["index"]), eye=r["eye"])
        write_png(root / "images" / f"{r['id']}.png", res.image, atomic=False)
        write_png(root / "masks" / f"{r['id']}.png", res.vessel_mask, atomic=False)
        write_png(root / "fov" / f"{r['id']}.png", res.fov, atomic=False)
    return len(rows)


def _readme(p: dict) -> str:
    counts = "\n".join(f"  grade {g} ({GRADE_NAMES[int(g)]}): {c} images" for g, c in p["counts"].items())
    return f"""medisynth fundus phantom -- SYNTHETIC, procedurally drawn; not real patient data.

Colour fundus photographs drawn by medisynth.phantom.fundus, labelled with a diabetic
retinopathy grade 0-4 (Table 1 of the DR grading scheme):
  0 no DR: no lesions
  1 mild NPDR: microaneurysms only (small red dots)
  2 moderate NPDR: microaneurysms, dot/blot haemorrhages, hard exudates, cotton-wool spots
  3 severe NPDR: many haemorrhages in all 4 quadrants, venous beading, IRMA
  4 proliferative DR: severe features + neovascularisation (disc/elsewhere), often vitreous haze

Parameters: n={p['n']} size={p['size']} seed={p['seed']}
proportions (percent or weights, in grade order 0..4): {','.join(str(v) for v in p['proportions'].values())}
{counts}

Layout (medisynth image-folder convention, readable by `medisynth prepare`):
  images/<id>.png  RGB fundus, black outside the circular field of view
  masks/<id>.png   ground-truth vessel mask (0/255, includes new vessels)
  fov/<id>.png     field-of-view mask (0/255)
  labels.csv       image,label,mask,fov,patient (ids 2k and 2k+1 are the left/right eye of one patient)
  phantom.json     the parameters above, machine-readable
Re-create with: medisynth phantom fundus --out DIR --n {p['n']} --size {p['size']} --seed {p['seed']} \\
  --proportions {','.join(str(v) for v in p['proportions'].values())}
"""
