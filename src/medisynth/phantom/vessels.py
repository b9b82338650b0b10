"""Branching retinal vessel trees: grown as random walks from the optic disc, drawn with PIL.

A tree is a list of ``Vessel`` polylines in [-1, 1] image units (y down). Main vessels leave
the disc vertically and bend towards the macula (the temporal arcades) or run nasally; each
step tapers the width and may spawn a thinner child at an angle, recursively. Drawing is
done with PIL at twice the output resolution and averaged down, so sub-pixel vessels come
out as faint anti-aliased lines instead of vanishing or turning into staircase blocks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

STEP = 0.022           # walk step in image units (image width = 2)
MIN_WIDTH = 0.0045     # vessels thinner than this stop growing
FOVEAL_FREE = 0.09     # radius of the vessel-free zone around the fovea
MAX_VESSELS = 160      # hard cap that keeps the cost per image bounded


@dataclass
class Vessel:
    kind: str                       # "artery" | "vein" | "new" (neovascular / IRMA)
    points: list[tuple[float, float]] = field(default_factory=list)   # (y, x)
    widths: list[float] = field(default_factory=list)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(self.points, dtype=np.float32), np.asarray(self.widths, dtype=np.float32)


def grow_tree(rng: np.random.Generator, disc: tuple[float, float], side: int, fov_radius: float,
              fov_center: tuple[float, float], fovea: tuple[float, float]) -> list[Vessel]:
    """Arteries and veins from the disc: 2 temporal arcades + 2 nasal pairs, branching recursively.

    ``side`` is +1 when the disc is on the right of the image (right eye), -1 on the left.
    """
    vessels: list[Vessel] = []
    stack = []
    for v in (-1, 1):                                   # superior, inferior
        for kind, w0, offset in (("vein", 0.030, 0.0), ("artery", 0.023, 0.22)):
            # temporal arcade: leaves the disc vertically, relaxes towards the macula side
            start = math.atan2(v, -side * rng.uniform(0.15, 0.45)) + v * side * offset * rng.uniform(0.5, 1.2)
            target = math.atan2(v * rng.uniform(0.35, 0.6), -side)
            stack.append((kind, disc, start, target, w0 * rng.uniform(0.85, 1.15), rng.uniform(0.05, 0.08), 0, 80))
            # nasal vessels are thinner and run away from the macula
            start_n = math.atan2(v, side * rng.uniform(0.3, 0.9))
            target_n = math.atan2(v * rng.uniform(0.1, 0.6), side)
            stack.append((kind, disc, start_n, target_n, w0 * rng.uniform(0.55, 0.7), 0.05, 0, 40))
    while stack and len(vessels) < MAX_VESSELS:
        kind, start_pt, heading, target, width, relax, depth, max_steps = stack.pop()
        vessel = _walk(rng, kind, start_pt, heading, target, width, relax, max_steps, fov_radius, fov_center,
                       fovea, depth, stack)
        if len(vessel.points) >= 2:
            vessels.append(vessel)
    return vessels


def _walk(rng, kind, start_pt, heading, target, width, relax, max_steps, fov_radius, fov_center, fovea, depth, stack):
    y, x = start_pt
    vessel = Vessel(kind)
    vessel.points.append((y, x))
    vessel.widths.append(width)
    branch_p = (0.11, 0.09, 0.06, 0.0)[min(depth, 3)]
    wiggle = 0.05 + 0.04 * depth
    # draw this walk's random numbers in three vector calls: per-step calls to rng dominate otherwise
    noise = rng.normal(0.0, wiggle, max_steps).tolist()
    branch = (rng.random(max_steps) < branch_p).tolist()
    fovea_free2 = FOVEAL_FREE ** 2
    fov_limit2 = (fov_radius * 1.02) ** 2
    for step in range(max_steps):
        # the pull towards the target grows over the first steps: arcades leave the disc vertically
        heading += relax * min(1.0, step / 8.0) * _angle_diff(target, heading) + noise[step]
        y += STEP * math.sin(heading)
        x += STEP * math.cos(heading)
        width *= 0.988
        if (y - fov_center[0]) ** 2 + (x - fov_center[1]) ** 2 > fov_limit2 or width < MIN_WIDTH:
            break
        if (y - fovea[0]) ** 2 + (x - fovea[1]) ** 2 < fovea_free2:
            break                                           # the foveal avascular zone
        vessel.points.append((y, x))
        vessel.widths.append(width)
        if step > 2 and branch[step]:
            u = rng.random(3)
            child_w = width * (0.5 + 0.25 * u[0])
            width *= 0.92                                   # the parent thins after giving off a branch
            turn = (1.0 if u[1] < 0.5 else -1.0) * (0.45 + 0.65 * u[2])
            child_heading = heading + turn
            stack.append((kind, (y, x), child_heading, child_heading + turn * 0.3, child_w, 0.04,
                          depth + 1, int(18 + 900 * child_w)))
    return vessel


def grow_tangle(rng: np.random.Generator, center: tuple[float, float], radius: float, count: int,
                width: float, kind: str = "new", curl: float = 0.7, steps: tuple[int, int] = (6, 16)) -> list[Vessel]:
    """Fine, highly tortuous vessel loops around ``center`` (neovascularisation, IRMA)."""
    out = []
    for _ in range(count):
        r = radius * math.sqrt(rng.random())
        a = rng.uniform(0, 2 * math.pi)
        y, x = center[0] + r * math.sin(a), center[1] + r * math.cos(a)
        heading = rng.uniform(0, 2 * math.pi)
        turn = rng.normal(0, curl * 0.5)
        vessel = Vessel(kind, [(y, x)], [width])
        for _ in range(int(rng.integers(*steps))):
            turn = 0.7 * turn + rng.normal(0, curl * 0.5)       # curvature that drifts: loops and coils
            heading += turn
            y += 0.45 * STEP * math.sin(heading)
            x += 0.45 * STEP * math.cos(heading)
            vessel.points.append((y, x))
            vessel.widths.append(width * rng.uniform(0.8, 1.1))
        out.append(vessel)
    return out


def draw_vessels(vessels: list[Vessel], size: int, width_scale=None) -> np.ndarray:
    """Coverage (float32 HxW in [0, 1]) of the given vessels at ``size`` px, drawn at 2x and averaged.

    ``width_scale(vessel) -> array`` may modulate widths along a vessel (venous beading).
    """
    ss = 2 * size
    canvas = Image.new("L", (ss, ss), 0)
    draw = ImageDraw.Draw(canvas)
    for vessel in vessels:
        pts, widths = vessel.arrays()
        if width_scale is not None:
            widths = widths * width_scale(vessel)
        px = (pts[:, 1] + 1.0) * size - 0.5       # x, y on the 2x canvas
        py = (pts[:, 0] + 1.0) * size - 0.5
        wpx = widths * size                        # diameter in 2x pixels
        # thin vessels: 1-px line with partial intensity, so they fade out instead of disappearing
        w_int = np.maximum(np.rint(wpx), 1).astype(int)
        # intensity in 8 levels, so a tapering vessel is a few long polylines, not one call per step
        fill = np.clip(np.rint(8 * np.minimum(wpx, 1.0)) * 32, 40, 255).astype(int)
        # one polyline per run of segments with the same (width, intensity): few PIL calls per vessel
        n_seg = len(px) - 1
        start = 0
        for j in range(1, n_seg + 1):
            if j == n_seg or w_int[j] != w_int[start] or fill[j] != fill[start]:
                seg = list(zip(px[start:j + 1].tolist(), py[start:j + 1].tolist()))
                draw.line(seg, fill=int(fill[start]), width=int(w_int[start]), joint="curve")
                start = j
    cover = np.asarray(canvas, dtype=np.float32).reshape(size, 2, size, 2).mean(axis=(1, 3))
    return cover / 255.0


def _angle_diff(a: float, b: float) -> float:
    return (a - b + math.pi) % (2 * math.pi) - math.pi
