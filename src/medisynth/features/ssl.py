"""``ssl``: a small convolutional encoder trained self-supervised on the real training images.

Needs no labels and no downloaded weights. It is trained with a contrastive loss (InfoNCE,
as in SimCLR) plus the KoLeo entropy regulariser of SSCD (Pizzi et al., CVPR 2022, "A
self-supervised descriptor for image copy detection"): two random views of one training image
are a positive pair, views of the other images in the batch are negatives. The views are what a
generator could do to a training image (``copy_augment``): flips, shifts, crops and rescaling,
small rotations, brightness/contrast/colour changes, noise, blur and JPEG re-compression. So the
encoder learns to map a training image and its edited copies close together and distinct images
apart: a copy-detection descriptor (``medisynth.metrics.copy_detection``) and a label-free
feature space for FID/KID/PRDC (``build_extractor("ssl", context)``).

Images are area-resized to ``SSL_SIDE`` (64) px whatever the data set's size. Training takes
about a minute on two CPU cores; the result is cached per data set (keyed by the manifest's
content hash and the recipe) beside the domain classifier's cache, as safetensors + JSON, and
retrained when the cache is unreadable.

API::

    enc = ssl_encoder(prepared_root)                 # trained once, then loaded from the cache
    ext = build_extractor("ssl", ExtractorContext(real_root=prepared_root))
    ext.extract(uint8_nchw).features                 # N x 128 pooled features (distribution metrics)
    ext.descriptors(uint8_nchw)                      # N x 128 L2-normalised copy descriptors
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medisynth.data.images import uint8_to_float
from medisynth.errors import MedisynthError
from medisynth.features.base import ExtractorContext, FeatureExtractor, Features, FeatureSpaceUnavailable, register_feature_space

#: bump when the encoder or the training recipe changes, so stale caches are not reused
SSL_VERSION = 1
SSL_SIDE = 64  # every image is compared at this size


# --------------------------------------------------------------------------- input checks
def check_images(images, what: str = "images", channels: int | None = None) -> torch.Tensor:
    """A CPU uint8 N x C x H x W tensor (C = 1 or 3, square or not), or a MedisynthError naming the problem.

    Catches the silent traps: channels-last arrays (N x H x W x C), float images, a single image
    without the batch axis, and (with ``channels``) a channel count other than the reference's.
    """
    t = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(images))
    if t.ndim != 4:
        raise MedisynthError(f"{what}: expected a batch N x C x H x W, got shape {tuple(t.shape)}; add the batch axis")
    if t.dtype != torch.uint8:
        raise MedisynthError(f"{what}: expected uint8 pixels 0-255, got {t.dtype}; convert with medisynth.data.dataset.float_to_uint8")
    if t.shape[1] not in (1, 3):
        hint = " (channels last? permute N x H x W x C to N x C x H x W)" if t.shape[-1] in (1, 3) else ""
        raise MedisynthError(f"{what}: expected 1 or 3 channels on axis 1, got shape {tuple(t.shape)}{hint}")
    if min(t.shape[-2:]) < 8:
        raise MedisynthError(f"{what}: images of {tuple(t.shape[-2:])} px are too small (at least 8 x 8)")
    if channels is not None and t.shape[1] != channels:
        raise MedisynthError(f"{what}: {t.shape[1]} channel(s), but the reference images have {channels}; convert them first")
    return t


def to_model_input(images: torch.Tensor, side: int = SSL_SIDE) -> torch.Tensor:
    """uint8 N x C x H x W -> float N x C x side x side in [-1, 1] (area-resized when the size differs)."""
    x = uint8_to_float(images)
    if tuple(x.shape[-2:]) != (side, side):
        x = F.interpolate(x, size=(side, side), mode="area" if min(x.shape[-2:]) >= side else "bilinear",
                          **({} if min(x.shape[-2:]) >= side else {"align_corners": False}))
    return x


# --------------------------------------------------------------------------- the network
def _conv(cin: int, cout: int, stride: int) -> nn.Sequential:
    # GroupNorm, not BatchNorm: the same behaviour in train and eval mode and for any batch size
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(min(8, cout), cout), nn.ReLU(inplace=True))


class SSLEncoder(nn.Module):
    """Six 3x3 convolutions (64 -> 4 px), GeM pooling, a linear projection.

    ``features(x)``: the pooled N x 8w backbone features; ``forward(x)``: the L2-normalised
    N x ``dim`` descriptor. About 5 M multiply-adds per 64 px image at width 16, so a thousand
    images take a fraction of a second on a CPU.
    """

    def __init__(self, in_channels: int, width: int = 16, dim: int = 128):
        super().__init__()
        w = width
        self.config = {"in_channels": int(in_channels), "width": int(width), "dim": int(dim)}
        self.body = nn.Sequential(
            _conv(in_channels, w, 2),  # 32 px
            _conv(w, 2 * w, 2), _conv(2 * w, 2 * w, 1),  # 16 px
            _conv(2 * w, 4 * w, 2), _conv(4 * w, 4 * w, 1),  # 8 px
            _conv(4 * w, 8 * w, 2),  # 4 px
        )
        self.gem_p = 3.0  # generalised-mean pooling (SSCD): between average (1) and max pooling
        self.projection = nn.Linear(8 * w, dim)
        self.feature_dim = 8 * w

    def features(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x).clamp(min=1e-6).pow(self.gem_p)
        return y.mean(dim=(-2, -1)).pow(1.0 / self.gem_p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(self.features(x)), dim=1)


# --------------------------------------------------------------------------- views
@dataclass(frozen=True)
class EditRange:
    """How far ``copy_augment`` edits an image: each parameter is drawn uniformly within these bounds."""

    max_angle: float = 8.0  # degrees either way
    zoom: tuple[float, float] = (0.85, 1.2)  # > 1: a crop resized back; < 1: a shrink
    max_shift: float = 4.0  # px either way, at the image's own size
    vflip: float = 0.1  # probability of a vertical flip (the horizontal one is always p 0.5)
    intensity: float = 0.2  # brightness and contrast gains in 1 +- this
    colour: float = 0.1  # per-channel gains in 1 +- this (RGB)
    max_noise: float = 8 / 255  # Gaussian noise sigma (on half the images)
    blur_sigma: tuple[float, float] = (0.3, 1.5)
    jpeg_quality: tuple[int, int] = (50, 95)


#: the encoder's training views: stronger than the edits copy detection is asked to see through
TRAINING_VIEWS = EditRange()


def copy_augment(x: torch.Tensor, generator: torch.Generator, edits: EditRange = TRAINING_VIEWS) -> torch.Tensor:
    """A random "edited copy" of each image of float N x C x H x W in [-1, 1], parameters drawn per image.

    Geometry (one affine warp): horizontal flip (p 0.5), vertical flip, rotation, zoom (a crop resized
    back, or a shrink), shift. Intensity: brightness and contrast, a per-channel colour cast (RGB),
    Gaussian noise (p 0.5), then, on random halves of the batch, Gaussian blur and JPEG re-compression
    through torchvision.transforms.v2; ``edits`` bounds each (default: the training views, up to 8
    degrees, zoom 0.85-1.2, 4 px, JPEG 50). The output is in [-1, 1].
    """
    from torchvision.transforms.v2 import functional as TF

    n, c, h, w = x.shape
    e = edits

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.rand(n, *shape, generator=generator) * (hi - lo) + lo

    def coin(p: float) -> torch.Tensor:
        return torch.rand(n, generator=generator) < p

    # the draws come in a fixed order whatever the range, so the training views (and cached encoders) do not change
    angle = uniform(-e.max_angle, e.max_angle) * (math.pi / 180)
    zoom = uniform(*e.zoom)
    sx = torch.where(coin(0.5), -1.0, 1.0) / zoom
    sy = torch.where(coin(e.vflip), -1.0, 1.0) / zoom
    tx, ty = uniform(-e.max_shift, e.max_shift) * 2 / w, uniform(-e.max_shift, e.max_shift) * 2 / h  # px -> normalised
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos * sx, -sin * sy, tx], 1), torch.stack([sin * sx, cos * sy, ty], 1)], 1)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    # sampled in [0, 2] so that outside the image is 0 = black, like a CT or fundus background
    y = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) / 2

    y = y * uniform(1 - e.intensity, 1 + e.intensity, 1, 1, 1)
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - mean) * uniform(1 - e.intensity, 1 + e.intensity, 1, 1, 1) + mean
    if c == 3:
        y = y * uniform(1 - e.colour, 1 + e.colour, 3, 1, 1)
    y = y + torch.randn(y.shape, generator=generator) * uniform(0, e.max_noise, 1, 1, 1) * coin(0.5)[:, None, None, None]
    y = y.clamp(0, 1)

    blur = torch.nonzero(coin(0.5)).flatten()
    if len(blur):
        sigma = float(uniform(*e.blur_sigma)[0])
        y[blur] = TF.gaussian_blur(y[blur], [5, 5], [sigma, sigma])
    jpeg = torch.nonzero(coin(0.5)).flatten()
    if len(jpeg):
        quality = int(torch.randint(e.jpeg_quality[0], e.jpeg_quality[1] + 1, (1,), generator=generator))
        y[jpeg] = TF.jpeg(y[jpeg].mul(255).round().to(torch.uint8), quality).float().div(255)
    return y * 2 - 1


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class SSLRecipe:
    """Everything that decides the trained weights besides the images (part of the cache key)."""

    steps: int = 300
    batch_size: int = 64  # images per step; each gives two views
    lr: float = 2e-3
    temperature: float = 0.1
    koleo_weight: float = 0.1  # SSCD's entropy regulariser: spreads descriptors over the sphere
    width: int = 16
    dim: int = 128
    seed: int = 0

    def key(self) -> str:
        return (f"v{SSL_VERSION}-s{self.seed}-t{self.steps}-b{self.batch_size}-w{self.width}-d{self.dim}"
                f"-lr{self.lr:g}-T{self.temperature:g}-k{self.koleo_weight:g}")


#: the recipe ``ssl_encoder`` and ``build`` use (tests swap in a shorter one)
DEFAULT_RECIPE = SSLRecipe()


def _info_nce(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent over 2N normalised descriptors: each view's positive is the other view of its image."""
    z = torch.cat([z1, z2])
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    n = len(z1)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(logits, target)


def _koleo(z: torch.Tensor) -> torch.Tensor:
    """Kozachenko-Leonenko entropy estimate (negated): -mean log(distance to the nearest other descriptor)."""
    with torch.no_grad():
        sims = z @ z.T
        sims.fill_diagonal_(-2)
        nearest = sims.argmax(dim=1)
    return -torch.log((z - z[nearest]).norm(dim=1) + 1e-8).mean()


def train_ssl_encoder(images: torch.Tensor, recipe: SSLRecipe | None = None, progress: bool = False) -> tuple[SSLEncoder, dict]:
    """Train an ``SSLEncoder`` on uint8 N x C x H x W images (CPU); returns (encoder in eval mode, history)."""
    recipe = recipe or DEFAULT_RECIPE
    images = check_images(images, "training images")
    if len(images) < 2:
        raise MedisynthError(f"the self-supervised encoder needs at least 2 training images, got {len(images)}")
    start = time.monotonic()
    with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching the caller's RNG
        torch.manual_seed(recipe.seed)
        model = SSLEncoder(images.shape[1], recipe.width, recipe.dim)
    data = to_model_input(images)
    gen = torch.Generator().manual_seed(recipe.seed)
    batch = min(recipe.batch_size, len(data))
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.steps, pct_start=0.1)
    losses = []
    from medisynth.progress import make_progress

    bar = make_progress(transient=True)
    bar.disable = bar.disable or not progress
    model.train()
    with bar:
        task = bar.add_task("self-supervised encoder", total=recipe.steps, status="")
        order = torch.randperm(len(data), generator=gen)
        pos = 0
        for step in range(recipe.steps):
            if pos + batch > len(order):
                order, pos = torch.randperm(len(data), generator=gen), 0
            x = data[order[pos:pos + batch]]
            pos += batch
            z1, z2 = model(copy_augment(x, gen)), model(copy_augment(x, gen))
            loss = _info_nce(z1, z2, recipe.temperature) + recipe.koleo_weight * _koleo(torch.cat([z1, z2]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            bar.advance(task)
    history = {"loss_first": losses[0], "loss_last": float(np.mean(losses[-20:])), "steps": recipe.steps,
               "images": len(data), "seconds": round(time.monotonic() - start, 1)}
    return model.eval(), history


# --------------------------------------------------------------------------- the per-data-set cache
def _save(model: SSLEncoder, stem: Path, meta: dict) -> None:
    """``stem.safetensors`` then ``stem.json`` (written last: its presence means the pair is complete)."""
    from safetensors.torch import save

    from medisynth.io import atomic_write_bytes, write_json

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(stem.with_suffix(".safetensors"), save(state))
    write_json(stem.with_suffix(".json"), {"config": model.config, "ssl_version": SSL_VERSION, **meta})


def _load(stem: Path, content_hash: str) -> SSLEncoder | None:
    """The cached encoder, or None when absent, for other pixels, or unreadable (then it is retrained)."""
    from safetensors.torch import load_file

    from medisynth.io import read_json

    if not stem.with_suffix(".json").is_file():
        return None
    try:
        meta = read_json(stem.with_suffix(".json"))
        if meta.get("content_hash") != content_hash or meta.get("ssl_version") != SSL_VERSION:
            return None
        model = SSLEncoder(**meta["config"])
        model.load_state_dict(load_file(str(stem.with_suffix(".safetensors"))))
    except Exception:  # noqa: BLE001 - a damaged or half-written cache is rebuilt, never trusted
        return None
    return model.eval()


def ssl_cache_stem(content_hash: str, recipe: SSLRecipe, cache_dir: str | Path | None = None) -> Path:
    """Where the encoder of these pixels and this recipe is cached (beside the domain classifier's cache)."""
    from medisynth.classifier import default_cache_dir

    return Path(cache_dir or default_cache_dir()) / "ssl" / f"{content_hash[:16]}-{recipe.key()}"


def ssl_encoder(prepared_root: str | Path, cache_dir: str | Path | None = None, recipe: SSLRecipe | None = None,
                progress: bool = True) -> SSLEncoder:
    """The encoder of a prepared data set, trained on its train split on first use, then loaded from the cache."""
    from medisynth.data.dataset import PreparedDataset
    from medisynth.data.manifest import Manifest

    recipe = recipe or DEFAULT_RECIPE
    root = Path(prepared_root)
    manifest = Manifest.load(root)
    if not manifest.content_hash:
        raise MedisynthError(f"{root}/manifest.json has no content_hash; re-create the data set with `medisynth prepare`")
    stem = ssl_cache_stem(manifest.content_hash, recipe, cache_dir)
    model = _load(stem, manifest.content_hash)
    if model is not None:
        return model
    train = PreparedDataset(root, "train")
    if len(train) < 2:
        raise MedisynthError(f"{root}: the train split has {len(train)} image(s); the self-supervised encoder needs at least 2")
    images = torch.from_numpy(train.images_uint8()).permute(0, 3, 1, 2).contiguous()
    model, history = train_ssl_encoder(images, recipe, progress=progress)
    stem.parent.mkdir(parents=True, exist_ok=True)
    _save(model, stem, {"content_hash": manifest.content_hash, "recipe": asdict(recipe), "history": history})
    return model


# --------------------------------------------------------------------------- the feature space
class SSLExtractor(FeatureExtractor):
    name = "ssl"
    description = (f"self-supervised conv encoder trained on the real train split (InfoNCE + KoLeo, copy-style views, "
                   f"{SSL_SIDE} px), GeM-pooled features")

    def __init__(self, model: SSLEncoder, batch_size: int = 512, meta: dict | None = None):
        self.model = model.eval()
        self.batch_size = batch_size
        self.meta = meta or {}

    def _run(self, images, fn) -> torch.Tensor:
        images = check_images(images, f"{self.name} feature space input", self.model.config["in_channels"])
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), self.batch_size):
                out.append(fn(to_model_input(images[i:i + self.batch_size])).float())
        return torch.cat(out) if out else torch.zeros(0, self.model.feature_dim)

    def extract(self, images: torch.Tensor) -> Features:
        """N x 128 pooled backbone features of uint8 N x C x H x W images (for FID/KID/PRDC)."""
        return Features(self._run(images, self.model.features).numpy().astype(np.float32))

    def descriptors(self, images, flip: bool = False) -> torch.Tensor:
        """L2-normalised N x 128 copy descriptors (cosine = dot product); ``flip`` mirrors the images first."""
        return self._run(images, (lambda x: self.model(x.flip(-1))) if flip else self.model)

    def info(self) -> dict:
        return {**super().info(), **self.meta}


@register_feature_space("ssl")
def build(context: ExtractorContext) -> SSLExtractor:
    if context.real_root is None:
        raise FeatureSpaceUnavailable("ssl skipped: it needs a prepared real data set (--real DATA) to train on")
    from dataclasses import replace

    recipe = replace(DEFAULT_RECIPE, seed=context.seed,
                     **({"steps": int(context.options["ssl_steps"])} if context.options.get("ssl_steps") else {}))
    model = ssl_encoder(context.real_root, cache_dir=context.cache_dir, recipe=recipe,
                        progress=context.options.get("progress", True))
    return SSLExtractor(model, meta={"ssl_recipe": recipe.key()})
