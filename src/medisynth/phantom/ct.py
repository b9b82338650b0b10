"""Procedurally drawn axial kidney CT slices in four classes: Normal, Cyst, Tumor, Stone.

Like the CT KIDNEY data set (Islam et al. 2022), one grayscale slice per image, displayed in a
soft-tissue window: air black, fat dark gray, soft tissue mid gray, contrast-enhanced renal
cortex and vessels brighter, bone and calcifications white.

What is drawn: an irregular body outline with skin and a subcutaneous fat layer of varying
thickness, the abdominal wall, intra-abdominal fat, the vertebra (cortex, marrow, canal,
spinous process) with paraspinal and psoas muscles, aorta and IVC, the liver, bowel loops
with gas and fluid, lower ribs, sometimes the CT table, and two bean-shaped kidneys (bright
cortex, darker medullary pyramids, renal sinus fat around the collecting system). Then the
class finding in one kidney:

* Cyst: round, homogeneous, sharply marginated fluid-density (dark) lesion, often bulging out;
* Tumor: larger heterogeneous, lobulated mass with necrotic patches that distorts the contour;
* Stone: one to three small, very bright calcifications in the collecting system.

Correlated noise and scanner blur come from one Gaussian filter over noisy pixels. Anatomy,
finding and noise have separate random streams: one generator state gives the same patient
in every class.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy.ndimage import gaussian_filter

from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir, atomic_write_text, write_json, write_png
from medisynth.phantom import common

CT_CLASSES = ("Normal", "Cyst", "Tumor", "Stone")
DEFAULT_CT_PROPORTIONS = (40.0, 25.0, 20.0, 15.0)

AIR = -0.3        # below the window: noise in air still clips to black
FAT = 0.2
FLUID = 0.36
SOFT = 0.50
BONE = 1.15       # above the soft-tissue window: cortical bone saturates white


@dataclass
class CTRender:
    image: np.ndarray          # uint8 HxW
    class_name: str
    body: np.ndarray           # bool HxW
    kidneys: np.ndarray        # bool HxW, both kidneys including any lesion
    lesion: np.ndarray         # bool HxW footprint of the finding (empty for Normal)
    lesion_side: str           # "left" | "right" of the image ("" for Normal)


def render_ct(class_name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One grayscale axial slice (uint8 HxW) showing ``class_name`` (Normal, Cyst, Tumor, Stone)."""
    return render_ct_layers(class_name, size, rng).image


class _Canvas:
    """A float image plus rotated/scaled coordinates; ``paint`` composites soft shapes."""

    def __init__(self, size: int, angle: float, scale: float, shift: tuple[float, float]):
        y, x = common.grid(size)
        ca, sa = math.cos(angle), math.sin(angle)
        yy, xx = (y - shift[0]) / scale, (x - shift[1]) / scale
        self.y = (yy * ca + xx * sa).astype(np.float32)
        self.x = (xx * ca - yy * sa).astype(np.float32)
        self.size = size
        self.px = 2.0 / size / scale                      # one pixel in body units
        self.img = np.full((size, size), AIR, np.float32)

    def ellipse(self, cy, cx, ry, rx, angle=0.0, soft_px=0.8) -> np.ndarray:
        edge = soft_px * self.px / min(ry, rx)
        return common.soft_ellipse(self.y, self.x, cy, cx, ry, rx, angle, edge)

    def paint(self, cover: np.ndarray, value, within: np.ndarray | None = None) -> None:
        if within is not None:
            cover = cover * within
        self.img += cover * (value - self.img)


def render_ct_layers(class_name: str, size: int, rng: np.random.Generator) -> CTRender:
    if class_name not in CT_CLASSES:
        raise MedisynthError(f"CT class {class_name!r} is not one of {', '.join(CT_CLASSES)}")
    size = common.check_size(size)
    anat, find_rng, noise_rng = common.split_rng(rng, 3)
    cv = _Canvas(size, anat.uniform(-0.08, 0.08), anat.uniform(0.95, 1.12),
                 (anat.uniform(-0.1, -0.02), anat.uniform(-0.04, 0.04)))
    y, x = cv.y, cv.x

    # --- body outline: an ellipse whose radius wobbles with a few low angular harmonics
    a, b = anat.uniform(0.76, 0.88), anat.uniform(0.5, 0.62)
    theta = np.arctan2(y / b, x / a)
    wob = 1.0 + sum(anat.uniform(0, amp) * np.cos(k * theta + anat.uniform(0, 2 * math.pi))
                    for k, amp in ((2, 0.04), (3, 0.03), (4, 0.02)))
    rho = np.sqrt((y / b) ** 2 + (x / a) ** 2) / wob
    edge = cv.px / b
    body = 1.0 - common.smoothstep(1.0 - edge, 1.0 + edge, rho)
    cv.paint(body, SOFT + 0.06)                                   # skin
    fat_t = anat.uniform(0.06, 0.22)
    cv.paint(1.0 - common.smoothstep(1.0 - 2.5 * edge - 0.01, 1.0 - 0.01, rho), FAT + anat.uniform(-0.03, 0.03))
    wall = 1.0 - common.smoothstep(1.0 - fat_t - edge, 1.0 - fat_t + edge, rho)
    cv.paint(wall, SOFT)                                          # abdominal wall muscle
    inner = 1.0 - common.smoothstep(1.0 - fat_t - 0.06 - edge, 1.0 - fat_t - 0.06 + edge, rho)
    cv.paint(inner, FAT + 0.03)                                   # intra-abdominal fat

    # --- spine, muscles, great vessels
    vy = b * anat.uniform(0.3, 0.4)
    vr = anat.uniform(0.085, 0.11)
    for s in (-1, 1):
        cv.paint(cv.ellipse(vy + 0.2, s * 0.16, 0.12, 0.11, s * 0.2), SOFT, inner)   # paraspinal (erector)
        cv.paint(cv.ellipse(vy - 0.02, s * (vr + 0.05), 0.07, 0.05, -s * 0.3), SOFT)  # psoas
    cv.paint(cv.ellipse(vy, 0.0, vr * 0.9, vr), BONE)                                 # cortical bone
    cv.paint(cv.ellipse(vy, 0.0, vr * 0.72, vr * 0.8), 0.72 + anat.uniform(-0.05, 0.05))  # marrow
    cv.paint(cv.ellipse(vy + vr + 0.05, 0.0, 0.05, 0.045), BONE)                     # neural arch
    cv.paint(cv.ellipse(vy + vr + 0.05, 0.0, 0.035, 0.03), 0.42)                     # canal
    cv.paint(cv.ellipse(vy + vr + 0.15, 0.0, 0.06, 0.018), BONE)                     # spinous process
    contrast = anat.uniform(0.0, 1.0)                          # arterial/portal phase vs. plain
    cv.paint(cv.ellipse(vy - vr - 0.04, 0.05, 0.045, 0.045), 0.55 + 0.3 * contrast)  # aorta
    cv.paint(cv.ellipse(vy - vr - 0.03, -0.09, 0.04, 0.055), 0.52 + 0.15 * contrast)  # IVC

    # --- liver on the patient's right (image left), variable extent at kidney level
    if anat.random() < 0.85:
        ly, lx = anat.uniform(-0.15, 0.1) * b, -a * anat.uniform(0.45, 0.6)
        liver = cv.ellipse(ly, lx, b * anat.uniform(0.4, 0.75), a * anat.uniform(0.25, 0.42), anat.uniform(-0.4, 0.4))
        cv.paint(liver, 0.56 + 0.08 * contrast, inner)

    # --- bowel loops in the anterior abdomen: wall, contents, gas
    for _ in range(int(anat.integers(6, 13))):
        cy = anat.uniform(-b * 0.75, b * 0.3)
        cx = anat.uniform(-a * 0.5, a * 0.7)
        r = anat.uniform(0.05, 0.1)
        cv.paint(cv.ellipse(cy, cx, r, r * anat.uniform(0.8, 1.3), anat.uniform(0, math.pi)), SOFT - 0.02, inner)
        inside = cv.ellipse(cy, cx, r * 0.7, r * 0.7)
        kind = anat.random()
        if kind < 0.45:
            cv.paint(inside, AIR, inner)                                  # gas-filled
        elif kind < 0.75:
            g = cv.ellipse(cy - r * 0.3, cx, r * 0.35, r * 0.6)           # air-fluid level
            cv.paint(inside, FLUID + 0.05, inner)
            cv.paint(g, AIR, inner)
        else:
            cv.paint(inside, 0.42, inner)                                 # collapsed / fluid

    # --- mesenteric vessels: small enhancing dots in the fat
    for _ in range(int(anat.integers(3, 9))):
        r = anat.uniform(0.008, 0.018)
        cv.paint(cv.ellipse(anat.uniform(-b * 0.6, b * 0.2), anat.uniform(-a * 0.3, a * 0.5), r, r), 0.6 + 0.2 * contrast,
                 inner)

    # --- lower ribs near the flanks
    for s in (-1, 1):
        for _ in range(int(anat.integers(0, 3))):
            t = anat.uniform(-0.2, 0.6)
            ry, rx = b * (1.0 - fat_t - 0.03) * math.sin(t), a * (1.0 - fat_t - 0.03) * math.cos(t)
            cv.paint(cv.ellipse(ry, s * rx, 0.025, 0.015, anat.uniform(0, math.pi)), BONE * 0.85)

    # --- kidneys: bean shapes either side of the spine
    kidneys = np.zeros((size, size), np.float32)
    kid_geo = []
    for s in (-1, 1):
        ky = vy - anat.uniform(0.0, 0.08)
        kx = s * anat.uniform(0.28, 0.36)
        kry, krx = anat.uniform(0.13, 0.17), anat.uniform(0.085, 0.11)
        kang = s * anat.uniform(0.3, 0.7)                 # long axis tilted, hilum anteromedial
        outer = cv.ellipse(ky, kx, kry, krx, kang)
        # the hilum: a notch facing the spine and slightly forward
        hy, hx = ky - 0.25 * krx, kx - s * krx * 0.95
        notch = cv.ellipse(hy, hx, kry * 0.35, krx * 0.45, kang)
        kidney = np.clip(outer - notch, 0, 1)
        cortex_v = 0.62 + 0.22 * contrast + anat.uniform(-0.03, 0.03)
        cv.paint(kidney, cortex_v)
        # medullary pyramids: darker lobes inside the cortex, visible with contrast
        phi = np.arctan2(y - ky, x - kx)
        lobes = 0.5 + 0.5 * np.cos(5 * phi + anat.uniform(0, 2 * math.pi))
        med = cv.ellipse(ky, kx, kry * 0.7, krx * 0.62, kang) * (lobes > 0.35)
        cv.paint(med * kidney, cortex_v - 0.1 - 0.12 * contrast)
        sinus = cv.ellipse(ky - 0.15 * krx, kx - s * krx * 0.45, kry * 0.42, krx * 0.4, kang)
        cv.paint(sinus * kidney, FAT + 0.06)                          # renal sinus fat
        pelvis = cv.ellipse(ky - 0.15 * krx, kx - s * krx * 0.5, kry * 0.2, krx * 0.2, kang)
        cv.paint(pelvis, 0.46)                                        # collecting system (unopacified)
        kidneys = np.maximum(kidneys, kidney)
        kid_geo.append((ky, kx, kry, krx, kang, s))

    # --- the class finding in one kidney
    lesion = np.zeros((size, size), np.float32)
    side = ""
    if class_name != "Normal":
        k = int(find_rng.integers(2))
        ky, kx, kry, krx, kang, s = kid_geo[k]
        side = "left" if s < 0 else "right"
        lesion = _FINDINGS[class_name](cv, find_rng, ky, kx, kry, krx, kang, s)
        if class_name != "Stone":
            kidneys = np.maximum(kidneys, lesion)

    # --- optional CT table below the patient
    if anat.random() < 0.6:
        ty = b * anat.uniform(1.08, 1.16)
        curve = ty - anat.uniform(0.1, 0.3) * x ** 2             # a cradle: edges curve up
        d = np.abs(y - curve)
        cv.paint((1.0 - common.smoothstep(0.5 * cv.px, 1.5 * cv.px, d)) * (np.abs(x) < a * 1.05), 0.8)

    # --- scanner noise, blurred into CT-like correlated texture
    # white noise of std n blurred by sigma keeps std ~ n / (2 sqrt(pi) sigma): scale n so the
    # visible noise level is the same at every image size
    sigma = max(0.6, size / 200.0)
    level = anat.uniform(0.015, 0.03) * 2.0 * math.sqrt(math.pi) * sigma
    img = cv.img + noise_rng.normal(0.0, level, size=cv.img.shape).astype(np.float32)
    img = gaussian_filter(img, sigma=sigma, mode="nearest")
    return CTRender(image=common.to_uint8(img), class_name=class_name, body=body > 0.5,
                    kidneys=kidneys > 0.5, lesion=lesion > 0.5, lesion_side=side)


def _cyst(cv: _Canvas, rng, ky, kx, kry, krx, kang, s) -> np.ndarray:
    """Round, homogeneous, sharply marginated fluid: often exophytic (bulges out of the contour)."""
    r = min(kry, krx) * rng.uniform(0.8, 1.3)
    a = rng.uniform(0, 2 * math.pi)
    off = rng.uniform(0.3, 0.9)
    cy, cx = ky + off * kry * math.sin(a), kx + off * krx * math.cos(a)
    cyst = cv.ellipse(cy, cx, r, r * rng.uniform(0.9, 1.1), soft_px=0.6)
    cv.paint(cyst, FLUID + rng.uniform(-0.04, 0.04))
    return cyst


def _tumor(cv: _Canvas, rng, ky, kx, kry, krx, kang, s) -> np.ndarray:
    """Heterogeneous, lobulated solid mass with necrosis that enlarges and deforms the kidney."""
    r = max(kry, krx) * rng.uniform(0.8, 1.2)
    a = rng.uniform(0, 2 * math.pi)
    off = rng.uniform(0.4, 0.9)
    cy, cx = ky + off * kry * math.sin(a), kx + off * krx * math.cos(a)
    dy, dx = cv.y - cy, cv.x - cx
    phi = np.arctan2(dy, dx)
    lobulation = 1.0 + sum(rng.uniform(0.05, 0.14) * np.cos(k * phi + rng.uniform(0, 2 * math.pi)) for k in (2, 3, 5))
    d = np.sqrt(dy * dy + dx * dx) / (r * lobulation)
    edge = 0.8 * cv.px / r
    mass = 1.0 - common.smoothstep(1.0 - edge, 1.0 + edge, d)
    # texture on a ~6-px scale in image pixels and at mass scale, plus necrotic (non-enhancing) parts
    texture = common.lowfreq_noise(rng, cv.size, max(6, cv.size // 6))
    blotch = common.lowfreq_noise(rng, cv.size, 6)
    value = 0.56 + 0.16 * texture + 0.05 * rng.standard_normal()
    inside = blotch[mass > 0.5]
    cut = np.quantile(inside, rng.uniform(0.6, 0.8)) if inside.size else np.inf   # 20-40 % necrotic
    value = np.where(blotch > cut, FLUID - 0.02 + 0.05 * texture, value)
    cv.paint(mass, value)
    # a central necrotic cavity, so every tumour is heterogeneous, not only where the noise says so
    nr = r * rng.uniform(0.3, 0.5)
    core = cv.ellipse(cy + rng.uniform(-0.3, 0.3) * r, cx + rng.uniform(-0.3, 0.3) * r, nr, nr * rng.uniform(0.6, 1.0),
                      rng.uniform(0, math.pi), soft_px=1.5)
    cv.paint(core * mass, FLUID - 0.04)
    return mass


def _stone(cv: _Canvas, rng, ky, kx, kry, krx, kang, s) -> np.ndarray:
    """One to three small, very bright calcifications in the renal pelvis / calyces."""
    stones = np.zeros_like(cv.img)
    for i in range(int(rng.integers(1, 4))):
        r = max(rng.uniform(0.01, 0.025), 1.0 * cv.px)
        cy = ky - 0.15 * krx + rng.uniform(-0.35, 0.35) * kry
        cx = kx - s * krx * rng.uniform(0.2, 0.6)
        stones = np.maximum(stones, cv.ellipse(cy, cx, r, r * rng.uniform(0.7, 1.3), rng.uniform(0, math.pi), 0.5))
    cv.paint(stones, 1.25)                                   # saturates white even after blur
    return stones


_FINDINGS = {"Cyst": _cyst, "Tumor": _tumor, "Stone": _stone}


# ----------------------------------------------------------------------------- data set
def generate_ct_dataset(out: str | Path, n: int = 400, size: int = 128, seed: int = 0,
                        proportions: str | Sequence[float] | None = None, overwrite: bool = False,
                        workers: int = 1, progress: bool = False) -> Path:
    """Write a kidney-CT phantom laid out like the CT KIDNEY set and return its path.

    ``DIR/<Class>/<Class>- (N).png`` (N from 1, single-channel), ``DIR/README.txt``, ``DIR/phantom.json``.
    Image ``<Class>- (N)`` depends only on (seed, class, N): a larger ``n`` keeps the smaller set's files.
    """
    out = Path(out)
    size = common.check_size(size)
    seed = common.check_seed(seed)
    workers = common.check_workers(workers)
    props = common.parse_proportions(proportions, DEFAULT_CT_PROPORTIONS, CT_CLASSES)
    counts = common.class_counts(n, props, CT_CLASSES)
    items = [(ci, k) for ci, c in enumerate(counts) for k in range(1, c + 1)]
    with atomic_dir(out, overwrite, kind="phantom") as tmp:
        for name, c in zip(CT_CLASSES, counts):
            if c:
                (tmp / name).mkdir()
        chunks = [items[i:i + common.CHUNK] for i in range(0, len(items), common.CHUNK)]
        for _ in common.progress_jobs(partial(_render_chunk, str(tmp), seed, size), chunks, workers, progress,
                                      "phantom ct"):
            pass
        params = {"kind": "ct", "n": int(n), "size": size, "seed": seed,
                  "proportions": dict(zip(CT_CLASSES, props)), "counts": dict(zip(CT_CLASSES, counts))}
        write_json(tmp / "phantom.json", params)
        atomic_write_text(tmp / "README.txt", _readme(params))
    return out


def _render_chunk(tmp: str, seed: int, size: int, items: list[tuple[int, int]]) -> int:
    for ci, k in items:
        name = CT_CLASSES[ci]
        image = render_ct(name, size, common.image_rng(seed, 3, ci, k))
        write_png(Path(tmp) / name / f"{name}- ({k}).png", image, atomic=False)
    return len(items)


def _readme(p: dict) -> str:
    counts = "\n".join(f"  {c}: {k} images" for c, k in p["counts"].items())
    return f"""medisynth kidney CT phantom -- SYNTHETIC, procedurally drawn; not real patient data.

Grayscale axial abdominal CT slices at kidney level drawn by medisynth.phantom.ct
(body, fat, spine, muscles, aorta/IVC, liver, bowel gas, ribs, two kidneys), in four classes:
  Normal  no renal finding
  Cyst    round, homogeneous, dark fluid-density lesion in one kidney
  Tumor   heterogeneous, lobulated mass distorting one kidney's contour
  Stone   small, very bright calcification(s) in a collecting system

Parameters: n={p['n']} size={p['size']} seed={p['seed']}
proportions (in class order {','.join(CT_CLASSES)}): {','.join(str(v) for v in p['proportions'].values())}
{counts}

Layout (like the CT KIDNEY data set, Islam et al. 2022): <Class>/<Class>- (N).png, N from 1,
single-channel 8-bit PNG. phantom.json holds the parameters above.
Re-create with: medisynth phantom ct --out DIR --n {p['n']} --size {p['size']} --seed {p['seed']} \\
  --proportions {','.join(str(v) for v in p['proportions'].values())}
"""
