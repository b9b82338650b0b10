"""Per-image preprocessing: fundus field-of-view crop, Graham contrast normalisation, CT windowing,
channel conversion and antialiased resizing to a square.

``preprocess`` is applied to one image and its masks together, so every geometric step
(crop, pad, resize) lands identically on the image, the vessel mask and the FOV mask.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
from PIL import Image
from scipy import ndimage

from medisynth.errors import MedisynthError
from medisynth.io import convert_channels

PREPROCESS_KINDS = ("auto", "none", "fundus", "ct")
MIN_SIZE, MAX_SIZE = 16, 1024


# Source image geometry. Refused (an error naming the file; skipped and counted with --skip-bad): a side
# under MIN_SOURCE_SIDE pixels, or longer than MAX_ASPECT times the other side; either becomes a flat or
# near-black square. Warned and counted: the picture enlarged more than MAX_UPSCALE times (blurry), or longer
# than WARN_ASPECT times its width, so padding to square leaves most of the output black.
MIN_SOURCE_SIDE = 4
MAX_ASPECT = 20
MAX_UPSCALE = 4
WARN_ASPECT = 3


def check_geometry(shape: tuple[int, ...], size: int) -> tuple[str, ...]:
    """The warnings (``"upscaled"``, ``"elongated"``) an image of ``shape`` (H x W[...]) earns when
    prepared at ``size``; MedisynthError when it is refused."""
    h, w = int(shape[0]), int(shape[1])
    short, long = min(h, w), max(h, w)
    if short < MIN_SOURCE_SIDE:
        raise MedisynthError(f"is {w}x{h} px; a side under {MIN_SOURCE_SIDE} px holds no picture: "
                             "replace or remove the file")
    if long > MAX_ASPECT * short:
        raise MedisynthError(f"is {w}x{h} px, {long / short:.0f}:1; beyond {MAX_ASPECT}:1 it becomes a thin "
                             "strip in a black square: crop it or remove the file")
    notes = ()
    if size > MAX_UPSCALE * long:
        notes += ("upscaled",)
    if long > WARN_ASPECT * short:
        notes += ("elongated",)
    return notes


@dataclass
class PrepOptions:
    size: int = 128
    channels: Optional[int] = None  # None: keep the source's (1 or 3)
    kind: str = "none"  # none | fundus | ct (auto is resolved before this)
    graham: bool = False  # Graham's local contrast normalisation (fundus)
    graham_sigma_fraction: float = 1 / 30  # Gaussian sigma as a fraction of the FOV diameter
    fov_threshold: int = 10  # luma above this counts as inside the field of view
    window_level: float = 40.0  # CT window, HU
    window_width: float = 400.0

    def check(self) -> None:
        if not (MIN_SIZE <= self.size <= MAX_SIZE):
            raise MedisynthError(f"--size {self.size} is out of range; use {MIN_SIZE}..{MAX_SIZE}")
        if self.channels not in (None, 1, 3):
            raise MedisynthError(f"--channels {self.channels}: use 1 (grayscale) or 3 (RGB)")
        if self.kind not in PREPROCESS_KINDS[1:]:
            raise MedisynthError(f"--preprocess {self.kind}: choose one of {', '.join(PREPROCESS_KINDS)}")
        if self.window_width <= 0:
            raise MedisynthError("--window-width must be positive")

    def to_dict(self) -> dict:
        return asdict(self)


def window_ct(hu: np.ndarray, level: float, width: float) -> np.ndarray:
    """Map Hounsfield units to uint8 through the window [level - width/2, level + width/2]."""
    lo = level - width / 2.0
    scaled = (np.asarray(hu, dtype=np.float32) - lo) / width * 255.0
    return np.round(np.clip(scaled, 0, 255)).astype(np.uint8)


FOV_DETECT_SIDE = 512  # the FOV is found on a copy at most this large: the disc is big, detail does not matter


def find_fov(image: np.ndarray, threshold: int = 10) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The circular field of view of a fundus photograph: (bounding box (top, left, bottom, right), uint8 mask).

    The FOV is the largest connected region brighter than ``threshold`` after a small opening
    that removes text and noise in the black border; dark spots inside it are filled. Large
    photographs are searched on a subsampled copy (every ``step``-th pixel), so the box is exact
    to ``step`` pixels, far below one output pixel."""
    h, w = image.shape[:2]
    step = max(1, -(-max(h, w) // FOV_DETECT_SIDE))
    small = image[::step, ::step]
    # brightest channel (np.maximum over channel planes: much faster than .max(axis=-1) on HxWx3)
    luma = np.maximum.reduce([small[..., c] for c in range(small.shape[-1])]) if small.ndim == 3 else small
    inside = ndimage.binary_opening(luma > threshold, iterations=2)
    labels, n = ndimage.label(inside)
    if n == 0:  # nothing bright: keep the whole image
        return (0, 0, h, w), np.full((h, w), 255, dtype=np.uint8)
    sizes = ndimage.sum_labels(inside, labels, index=np.arange(1, n + 1))
    largest = ndimage.binary_fill_holes(labels == (1 + int(np.argmax(sizes))))
    rows, cols = np.nonzero(largest.any(axis=1))[0], np.nonzero(largest.any(axis=0))[0]
    box = (int(rows[0]) * step, int(cols[0]) * step, min(h, (int(rows[-1]) + 1) * step), min(w, (int(cols[-1]) + 1) * step))
    mask = largest.astype(np.uint8) * 255
    if step > 1:
        mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.BILINEAR))
        mask = np.where(mask >= 128, 255, 0).astype(np.uint8)
    return box, mask


def find_fov_box(image: np.ndarray, threshold: int = 10) -> tuple[int, int, int, int]:
    """Bounding box (top, left, bottom, right) of the field of view (see ``find_fov``)."""
    return find_fov(image, threshold)[0]


def crop(array: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    top, left, bottom, right = box
    return array[top:bottom, left:right]


def pad_to_square(array: np.ndarray, value: int = 0) -> np.ndarray:
    h, w = array.shape[:2]
    side = max(h, w)
    pad_h, pad_w = side - h, side - w
    pads = [(pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pads, constant_values=value)


def resize(array: np.ndarray, size: int, is_mask: bool = False) -> np.ndarray:
    """Antialiased resize to size x size (Lanczos for images; area then threshold for binary masks)."""
    squeeze = array.ndim == 3 and array.shape[-1] == 1
    img = Image.fromarray(array[..., 0] if squeeze else array)
    if img.size == (size, size):
        out = np.asarray(img)
    elif is_mask:
        out = np.asarray(img.resize((size, size), Image.BOX))
        out = np.where(out >= 128, 255, 0).astype(np.uint8)
    else:
        out = np.asarray(img.resize((size, size), Image.LANCZOS))
    return out[..., None] if squeeze else out


def graham_normalise(image: np.ndarray, fov: np.ndarray | None, sigma: float) -> np.ndarray:
    """Ben Graham's local contrast normalisation: 4*I - 4*Gaussian(I) + 128, outside the FOV black."""
    img = image.astype(np.float32)
    blurred = ndimage.gaussian_filter(img, sigma=(sigma, sigma, 0) if img.ndim == 3 else sigma)
    out = np.clip(4 * img - 4 * blurred + 128, 0, 255)
    if fov is not None:
        out = out * (fov[..., None] > 0 if out.ndim == 3 else fov > 0)
    return np.round(out).astype(np.uint8)


def preprocess(
    image: np.ndarray,
    options: PrepOptions,
    mask: np.ndarray | None = None,
    fov: np.ndarray | None = None,
    raw_intensity: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Image (uint8 HxWxC, or raw intensities for CT) and its masks -> square uint8 at options.size."""
    if raw_intensity:
        if options.kind == "ct":
            image = window_ct(image, options.window_level, options.window_width)
        else:
            lo, hi = float(np.min(image)), float(np.max(image))
            image = np.round((image - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(image)).astype(np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    for name, m in (("mask", mask), ("fov", fov)):
        if m is not None and m.shape[:2] != image.shape[:2]:
            raise MedisynthError(
                f"{name} size {m.shape[1]}x{m.shape[0]} differs from image size {image.shape[1]}x{image.shape[0]}"
            )
    if options.kind == "fundus":
        if fov is not None and fov.any():  # the source's own FOV mask (DRIVE, HRF) gives the box
            rows, cols = np.nonzero(fov.any(axis=1))[0], np.nonzero(fov.any(axis=0))[0]
            box = int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1
        else:
            box, fov = find_fov(image, options.fov_threshold)
        image, mask, fov = crop(image, box), _opt(crop, mask, box), crop(fov, box)
    image = pad_to_square(image)
    mask, fov = _opt(pad_to_square, mask), _opt(pad_to_square, fov)
    image = resize(image, options.size)
    mask = _opt(resize, mask, options.size, True)
    fov = _opt(resize, fov, options.size, True)
    if options.graham:
        image = graham_normalise(image, fov, sigma=max(options.size * options.graham_sigma_fraction, 0.5))
    if options.channels is not None:
        image = convert_channels(image, options.channels)
    return image, mask, fov


def _opt(fn, array, *args):
    return None if array is None else fn(array, *args)
