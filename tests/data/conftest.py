"""Fixtures for the data-layer tests: tiny image files in the layouts ``medisynth prepare`` reads."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def write_image(path: Path, array: np.ndarray, **save_kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save_kwargs)
    return path


def noise_image(seed: int, size: tuple[int, int] = (24, 20), channels: int = 3) -> np.ndarray:
    """A random uint8 image (different seeds give different pixels, so no accidental duplicates)."""
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], channels) if channels > 1 else (size[1], size[0])
    return rng.integers(0, 256, shape, dtype=np.uint8)


def fundus_like(seed: int, width: int = 200, height: int = 160, centre=(70, 90), radius: int = 40) -> np.ndarray:
    """A black image with a bright textured disc (the field of view) and text-like noise in a corner."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:height, :width]
    disc = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 <= radius**2
    image[disc] = rng.integers(60, 200, (int(disc.sum()), 3), dtype=np.uint8)
    # "text" in the top-right corner: thin bright strokes, as scanners stamp on fundus photos
    for k in range(4):
        image[6 + 4 * k, width - 40 : width - 8] = 255
        image[5:22, width - 30 + 5 * k] = 255
    return image


def hash_tree(root: Path) -> str:
    """One hash of every file's path and bytes below ``root`` (to show inputs are not modified)."""
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*")):
        h.update(str(p.relative_to(root)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """medisynth's own image-folder layout: images/<id>.png + labels.csv (image,label), 3 classes."""
    root = tmp_path / "imgs"
    rows = ["image,label"]
    for i in range(30):
        label = ["a", "b", "c"][i % 3]
        write_image(root / "images" / f"im{i:02d}.png", noise_image(i))
        rows.append(f"im{i:02d},{label}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture
def class_folders(tmp_path) -> Path:
    """Training/<Class>/<Class>- (N).jpg like the CT kidney set (grayscale)."""
    root = tmp_path / "ct"
    for c, name in enumerate(["Cyst", "Normal", "Stone"]):
        for n in range(1, 9):
            write_image(root / "Training" / name / f"{name}- ({n}).png", noise_image(100 * c + n, channels=1))
    return root


@pytest.fixture(scope="session")
def helpers():
    """The helper functions above, for test modules (pytest's importlib mode cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(write_image=write_image, noise_image=noise_image, fundus_like=fundus_like,
                           hash_tree=hash_tree)
