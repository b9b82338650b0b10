"""Image classifiers for the downstream-utility protocols and for evaluation.

- ``SmallResNet``: a small ResNet trained from scratch (no pretrained weights are
  available offline); ``features(x)`` is the penultimate embedding, ``forward(x)``
  the logits. Its stem downsamples by ``stem_stride_for(image_size)`` (1 up to 32 px,
  2 from 64 px, 4 from 256 px), so the residual stages see at most ~32-64 px maps.
- ``torchvision_resnet18``: torchvision's ResNet-18 with weights from a LOCAL file
  (safetensors, or a torch file read with ``weights_only=True``), adapted to the
  channel count and class count of the data.
- ``train_classifier``: cross-entropy training on uint8 image tensors with
  optional on-the-fly "classic" augmentation, class-balanced sampling, a time
  budget, and early stopping on validation balanced accuracy (best weights kept).
- ``predict_proba``: softmax probabilities, batched.
- ``domain_classifier``: a SmallResNet trained on a prepared data set's train split,
  cached on disk (safetensors + JSON) keyed by the manifest's content hash.

Every network here takes float N x C x H x W images in [-1, 1] (medisynth's
convention, ``medisynth.data.dataset.uint8_to_float``); the helpers that take
uint8 tensors convert per batch.
"""
from __future__ import annotations

import copy
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medisynth.data.dataset import uint8_to_float
from medisynth.device import resolve_device
from medisynth.errors import MedisynthError

#: bump when SmallResNet or domain_classifier's training recipe changes, so stale caches are not reused
#: (2: the stem stride depends on the image size)
CLASSIFIER_VERSION = 3  # 3: the domain classifier samples classes evenly
AUGMENTATIONS = ("none", "classic")


# --------------------------------------------------------------------------- networks
def _norm(channels: int) -> nn.GroupNorm:
    """GroupNorm rather than BatchNorm: the short trainings on small data sets that medisynth runs
    leave BatchNorm's running statistics far from the trained weights' (a model at 100 % training
    accuracy scored chance in eval mode), and GroupNorm behaves the same in train and eval mode
    and with batches of any size."""
    return nn.GroupNorm(min(8, channels), channels)


class _BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut (He et al. 2016), summed then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _norm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _norm(cout)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x), inplace=True)


STEM_STRIDES = (1, 2, 4)


def stem_stride_for(image_size: int) -> int:
    """SmallResNet's stem stride for square images of ``image_size`` px: 1 below 64 px, 2 from 64 px, 4 from 256 px.

    Full-resolution stems made the first stage the bulk of the cost (at 128 px, 16x the
    activations of 32 px); downsampling early keeps the residual stages at 32-64 px, where
    the small data sets medisynth trains on carry their class evidence anyway (the same
    trade-off as ResNet's stride-4 stem at 224 px).
    """
    if image_size >= 256:
        return 4
    if image_size >= 64:
        return 2
    return 1


class SmallResNet(nn.Module):
    """stem (3x3 conv, stride ``stem_stride``) + 4 residual stages (width, 2w, 4w, 8w; strides 1, 2, 2, 2)
    + global pooling + linear, with GroupNorm (see ``_norm``).

    ``stem_stride`` is 1, 2 (a stride-2 conv) or 4 (stride-2 conv + 3x3 stride-2 max pool, as in
    ResNet); leave it None and pass ``image_size`` to get ``stem_stride_for(image_size)``, or
    neither for 1 (the layout of CLASSIFIER_VERSION 1 checkpoints, whose config lacks the key).
    It is part of ``config``, so ``save_classifier``/``load_classifier`` rebuild the same network.

    About 2.8 M parameters at width 32 whatever the stride; works from 16 px up (pooling is adaptive).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32, stem_stride: int | None = None,
                 *, image_size: int | None = None):
        super().__init__()
        if in_channels < 1 or num_classes < 1 or width < 1:
            raise MedisynthError("SmallResNet needs in_channels, num_classes and width >= 1")
        if stem_stride is None:
            stem_stride = stem_stride_for(image_size) if image_size is not None else 1
        if stem_stride not in STEM_STRIDES:
            raise MedisynthError(f"SmallResNet stem_stride={stem_stride!r}: choose one of {STEM_STRIDES}")
        self.config = {"in_channels": int(in_channels), "num_classes": int(num_classes), "width": int(width),
                       "stem_stride": int(stem_stride)}
        w = width
        stem = [nn.Conv2d(in_channels, w, 3, min(stem_stride, 2), 1, bias=False), _norm(w), nn.ReLU(inplace=True)]
        if stem_stride == 4:
            stem.append(nn.MaxPool2d(3, 2, 1))  # no parameters: the state-dict keys are the same for every stride
        self.stem = nn.Sequential(*stem)
        stages, cin = [], w
        for cout, stride in ((w, 1), (2 * w, 2), (4 * w, 2), (8 * w, 2)):
            stages.append(nn.Sequential(_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        self.feature_dim = cin

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding, N x feature_dim (8 * width)."""
        return self.pool(self.stages(self.stem(x))).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class ResNet18Classifier(nn.Module):
    """torchvision ResNet-18 with the same ``features`` / ``forward`` interface as SmallResNet."""

    def __init__(self, net: nn.Module, in_channels: int, num_classes: int):
        super().__init__()
        self.net = net
        self.config = {"in_channels": int(in_channels), "num_classes": int(num_classes), "arch": "resnet18"}
        self.feature_dim = net.fc.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return n.avgpool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.features(x))


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a local ``.safetensors`` file or a torch file (read with ``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise MedisynthError(
            f"--weights {path}: file not found; pass a local ResNet-18 state dict (.safetensors or .pth), "
            "e.g. one saved with torchvision.models.resnet18(weights='DEFAULT').state_dict() on a machine with internet"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except MedisynthError:
        raise
    except Exception as e:  # damaged file, pickled objects refused by weights_only, ...
        raise MedisynthError(f"--weights {path}: cannot read it as a state dict ({e}); re-export it as .safetensors") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MedisynthError(f"--weights {path}: does not hold a state dict of tensors")
    return state


def torchvision_resnet18(num_classes: int, in_channels: int = 3, weights_path: str | Path | None = None) -> ResNet18Classifier:
    """torchvision ResNet-18, optionally initialised from LOCAL pretrained weights.

    The weights' 1000-class head is dropped (a new ``num_classes`` head is initialised);
    for 1-channel data the first convolution's RGB filters are summed (the usual
    grayscale adaptation), so the pretrained filters still respond to luminance.
    """
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    if weights_path is not None:
        state = load_state_dict_file(weights_path)
        state = {k.removeprefix("module."): v for k, v in state.items()}
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise MedisynthError(
                f"--weights {weights_path}: not a torchvision ResNet-18 state dict "
                f"(missing {missing[:3]}, unexpected {list(unexpected)[:3]})"
            )
    if in_channels != 3:
        old = net.conv1
        net.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
        with torch.no_grad():
            if in_channels == 1:
                net.conv1.weight.copy_(old.weight.sum(dim=1, keepdim=True))
            else:
                net.conv1.weight.copy_(old.weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1))
    net.fc = nn.Linear(net.fc.in_features, num_classes)
    return ResNet18Classifier(net, in_channels, num_classes)


# --------------------------------------------------------------------------- augmentation
def classic_augment(x: torch.Tensor, generator: torch.Generator, max_degrees: float = 15.0, jitter: float = 0.2) -> torch.Tensor:
    """Random flips (h and v), rotations up to ``max_degrees`` and brightness/contrast/saturation jitter.

    Parameters are drawn PER IMAGE on ``x``'s device (torchvision.transforms.v2 draws one set of
    parameters per call, which on a batch would flip or rotate every image the same way).
    ``x`` is float N x C x H x W in [-1, 1]; the result is too.
    """
    n, c = x.shape[:2]
    dev = x.device

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return torch.rand(n, *shape, device=dev, generator=generator) * (hi - lo) + lo

    flip_h = torch.rand(n, device=dev, generator=generator) < 0.5
    flip_v = torch.rand(n, device=dev, generator=generator) < 0.5
    x = torch.where(flip_h[:, None, None, None], x.flip(-1), x)
    x = torch.where(flip_v[:, None, None, None], x.flip(-2), x)
    # rotation about the centre; the corners are filled with -1 (black), like a fundus background
    angle = uniform(-max_degrees, max_degrees) * (math.pi / 180)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    # colour jitter in [0, 1] space
    y = (x + 1) / 2
    y = y * uniform(1 - jitter, 1 + jitter, 1, 1, 1)  # brightness
    mean = y.mean(dim=(1, 2, 3), keepdim=True)
    y = (y - mean) * uniform(1 - jitter, 1 + jitter, 1, 1, 1) + mean  # contrast
    if c == 3:
        gray = (0.299 * y[:, 0:1] + 0.587 * y[:, 1:2] + 0.114 * y[:, 2:3])
        y = (y - gray) * uniform(1 - jitter, 1 + jitter, 1, 1, 1) + gray  # saturation
    return y.clamp(0, 1) * 2 - 1


# --------------------------------------------------------------------------- training
def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true" on tiny val splits
        return float(balanced_accuracy_score(y_true, y_pred))


def build_classifier(arch: str, in_channels: int, num_classes: int, width: int = 32, weights_path=None,
                     image_size: int | None = None) -> nn.Module:
    """``image_size`` picks SmallResNet's stem stride (``stem_stride_for``); None keeps full resolution."""
    if arch in ("small-resnet", "small_resnet"):
        return SmallResNet(in_channels, num_classes, width, image_size=image_size)
    if arch == "resnet18":
        return torchvision_resnet18(num_classes, in_channels, weights_path)
    raise MedisynthError(f"--model {arch!r}: choose small-resnet or resnet18")


def train_classifier(
    train_images: torch.Tensor,
    train_labels: torch.Tensor | np.ndarray,
    num_classes: int,
    *,
    val: tuple[torch.Tensor, torch.Tensor | np.ndarray] | None = None,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: str | torch.device = "auto",
    augment: str = "none",
    time_budget_s: float | None = None,
    class_balanced: bool = False,
    patience: int | None = 10,
    model: nn.Module | None = None,
    width: int = 32,
    progress: bool = True,
    description: str = "classifier",
) -> tuple[nn.Module, dict]:
    """Train a classifier on uint8 N x C x H x W images; returns (model in eval mode, history).

    With ``val`` the weights of the epoch with the best validation balanced accuracy are
    kept and training stops after ``patience`` epochs without improvement; without it
    the last epoch's weights are kept. ``time_budget_s`` stops training between batches
    once exceeded (at least one batch always runs). ``model`` defaults to a fresh
    ``SmallResNet(C, num_classes, width, image_size=min(H, W))`` initialised from ``seed``.
    Model and batches use the channels_last memory format (faster convolutions with oneDNN on
    the CPU and cuDNN on the GPU; the same numbers up to rounding).

    history: {"epochs": [{"epoch", "loss", "val_balanced_accuracy", "val_accuracy", "seconds"}],
    "best_epoch", "best_val_balanced_accuracy", "stopped": "epochs"|"patience"|"time_budget",
    "seconds", "steps"}.
    """
    if augment not in AUGMENTATIONS:
        raise MedisynthError(f"augment={augment!r}: choose one of {', '.join(AUGMENTATIONS)}")
    if train_images.dtype != torch.uint8 or train_images.ndim != 4:
        raise MedisynthError("train_classifier expects uint8 N x C x H x W images")
    labels = torch.from_numpy(np.array(train_labels, dtype=np.int64))  # a copy: inputs may be read-only views
    if len(labels) != len(train_images) or len(labels) == 0:
        raise MedisynthError(f"train_classifier got {len(train_images)} images and {len(labels)} labels")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise MedisynthError(f"labels must lie in [0, {num_classes}); got {int(labels.min())}..{int(labels.max())}")
    dev = resolve_device(device)
    start = time.monotonic()

    if model is None:
        with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching the caller's RNG
            torch.manual_seed(seed)
            model = SmallResNet(train_images.shape[1], num_classes, width, image_size=min(train_images.shape[-2:]))
    model = model.to(dev, memory_format=torch.channels_last)
    images = train_images.to(dev)
    labels = labels.to(dev)
    n = len(images)
    batch_size = max(1, min(batch_size, n))
    steps_per_epoch = max(1, n // batch_size)  # the ragged last batch is dropped; the order is reshuffled each epoch
    gen_cpu = torch.Generator().manual_seed(seed)
    gen_dev = torch.Generator(device=dev).manual_seed(seed)
    if class_balanced:
        counts = torch.bincount(labels.cpu(), minlength=num_classes).double()
        weights = (1.0 / counts.clamp(min=1))[labels.cpu()]

    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * steps_per_epoch))
    history: dict = {"epochs": [], "best_epoch": None, "best_val_balanced_accuracy": None, "stopped": "epochs", "steps": 0}
    best_state, best_score, since_best = None, -1.0, 0
    amp = dev.type == "cuda"

    from medisynth.progress import make_progress

    with make_progress(transient=True) if progress else _NullProgress() as bar:
        task = bar.add_task(description, total=epochs * steps_per_epoch, status="")
        for epoch in range(epochs):
            model.train()
            if class_balanced:
                order = torch.multinomial(weights, n, replacement=True, generator=gen_cpu)
            else:
                order = torch.randperm(n, generator=gen_cpu)
            order = order.to(dev)
            loss_sum, batches = torch.zeros((), device=dev), 0
            for step in range(steps_per_epoch):
                idx = order[step * batch_size:(step + 1) * batch_size]
                x = uint8_to_float(images[idx])
                if augment == "classic":
                    x = classic_augment(x, gen_dev)
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    loss = F.cross_entropy(model(x), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach().float()  # summed on the device: no host sync per step
                batches += 1
                history["steps"] += 1
                bar.advance(task)
                if time_budget_s is not None and time.monotonic() - start > time_budget_s:
                    history["stopped"] = "time_budget"
                    break
            record = {"epoch": epoch + 1, "loss": float(loss_sum) / max(batches, 1), "seconds": round(time.monotonic() - start, 2)}
            if val is not None:
                probs = predict_proba(model, val[0], batch_size=max(batch_size, 128), device=dev)
                y_val = np.asarray(val[1])
                score = _balanced_accuracy(y_val, probs.argmax(1))
                record["val_balanced_accuracy"] = score
                record["val_accuracy"] = float((probs.argmax(1) == y_val).mean())
                if score > best_score:
                    best_score, since_best = score, 0
                    best_state = copy.deepcopy(model.state_dict())
                    history["best_epoch"] = epoch + 1
                else:
                    since_best += 1
            history["epochs"].append(record)
            bar.update(task, status=f"loss {record['loss']:.3f}" + (
                f" val bacc {record['val_balanced_accuracy']:.3f}" if val is not None else ""))
            if history["stopped"] == "time_budget":
                break
            if val is not None and patience is not None and since_best >= patience:
                history["stopped"] = "patience"
                break
    if best_state is not None:
        model.load_state_dict(best_state)
        history["best_val_balanced_accuracy"] = best_score
    else:
        history["best_epoch"] = len(history["epochs"])
    history["seconds"] = round(time.monotonic() - start, 2)
    return model.eval(), history


class _NullProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def advance(self, *a, **k):
        pass

    def update(self, *a, **k):
        pass


def predict_proba(model: nn.Module, images_uint8: torch.Tensor | np.ndarray, batch_size: int = 256,
                  device: str | torch.device = "auto") -> np.ndarray:
    """Softmax probabilities N x K for uint8 N x C x H x W images (numpy N x H x W x C is accepted too)."""
    if isinstance(images_uint8, np.ndarray):
        images_uint8 = torch.from_numpy(images_uint8)
        if images_uint8.ndim == 4 and images_uint8.shape[-1] in (1, 3) and images_uint8.shape[1] not in (1, 3):
            images_uint8 = images_uint8.permute(0, 3, 1, 2)
    dev = resolve_device(device)
    was_training = model.training
    model.eval()
    # moved OUTSIDE inference_mode: parameters created inside it could never be trained again
    model.to(dev, memory_format=torch.channels_last)
    out = []
    with torch.inference_mode():
        for i in range(0, len(images_uint8), batch_size):
            x = uint8_to_float(images_uint8[i:i + batch_size].to(dev)).contiguous(memory_format=torch.channels_last)
            out.append(torch.softmax(model(x).float(), dim=1).cpu())
    model.train(was_training)
    if not out:
        k = model.config["num_classes"] if hasattr(model, "config") else 0
        return np.zeros((0, k), dtype=np.float32)
    return torch.cat(out).numpy()


def extract_features(model: nn.Module, images_uint8: torch.Tensor, batch_size: int = 256,
                     device: str | torch.device = "auto") -> np.ndarray:
    """Penultimate features N x D of uint8 N x C x H x W images."""
    dev = resolve_device(device)
    model.eval().to(dev, memory_format=torch.channels_last)  # outside inference_mode, see predict_proba
    with torch.inference_mode():
        out = [model.features(uint8_to_float(images_uint8[i:i + batch_size].to(dev))
                              .contiguous(memory_format=torch.channels_last)).float().cpu()
               for i in range(0, len(images_uint8), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.feature_dim), dtype=np.float32)


# --------------------------------------------------------------------------- saving / the cached domain classifier
def save_classifier(model: SmallResNet, stem: str | Path, meta: dict | None = None) -> None:
    """``stem.safetensors`` (weights) then ``stem.json`` (config + meta), each written atomically.

    The JSON is written last, so its presence means the pair is complete.
    """
    from safetensors.torch import save

    from medisynth.io import atomic_write_bytes, write_json

    stem = Path(stem)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(stem.with_suffix(".safetensors"), save(state))
    write_json(stem.with_suffix(".json"), {"config": model.config, "classifier_version": CLASSIFIER_VERSION, **(meta or {})})


def load_classifier(stem: str | Path) -> tuple[SmallResNet, dict]:
    """Inverse of ``save_classifier`` (SmallResNet only); returns (model in eval mode, meta)."""
    from safetensors.torch import load_file

    from medisynth.io import read_json

    stem = Path(stem)
    meta = read_json(stem.with_suffix(".json"))
    weights = stem.with_suffix(".safetensors")
    if not weights.is_file():
        raise MedisynthError(f"{weights} is missing (its {stem.with_suffix('.json').name} is there); delete both and retrain")
    model = SmallResNet(**meta["config"])
    model.load_state_dict(load_file(str(weights)))
    return model.eval(), meta


def default_cache_dir() -> Path:
    """``$MEDISYNTH_CACHE`` or ``~/.cache/medisynth``: outside the user's data, so inputs are never modified."""
    return Path(os.environ.get("MEDISYNTH_CACHE") or Path.home() / ".cache" / "medisynth")


def domain_classifier(
    prepared_root: str | Path,
    cache_dir: str | Path | None = None,
    device: str | torch.device = "auto",
    seed: int = 0,
    epochs: int = 30,
    width: int = 32,
    batch_size: int = 64,
    augment: str = "classic",
    time_budget_s: float | None = None,
    progress: bool = True,
) -> SmallResNet:
    """A SmallResNet trained on the prepared set's train split (val for early stopping), cached.

    The cache lives in ``cache_dir`` (default ``default_cache_dir()``) under
    ``classifiers/<content_hash[:16]>-<recipe>.safetensors/.json``: the manifest's content
    hash names the exact pixels, the recipe (seed, epochs, width, batch size, augmentation,
    CLASSIFIER_VERSION) the training. A second call with the same arguments loads it.
    A time-budgeted run is not cached (its result depends on the machine's speed).
    """
    from medisynth.data.dataset import PreparedDataset
    from medisynth.data.manifest import Manifest

    root = Path(prepared_root)
    manifest = Manifest.load(root)
    if not manifest.content_hash:
        raise MedisynthError(f"{root}/manifest.json has no content_hash; re-create the data set with `medisynth prepare`")
    recipe = f"v{CLASSIFIER_VERSION}-s{seed}-e{epochs}-w{width}-b{batch_size}-{augment}"
    stem = Path(cache_dir or default_cache_dir()) / "classifiers" / f"{manifest.content_hash[:16]}-{recipe}"
    if stem.with_suffix(".json").is_file():
        model, meta = load_classifier(stem)
        if meta.get("content_hash") == manifest.content_hash:
            return model.to(resolve_device(device))
    train = PreparedDataset(root, "train")
    if len(train) == 0:
        raise MedisynthError(f"{root}: the train split is empty; a domain classifier needs training images")
    val_set = PreparedDataset(root, "val")
    val = val_set.to_tensor() if len(val_set) else None
    images, labels = train.to_tensor()
    model, history = train_classifier(
        images, labels, manifest.num_classes, val=val, epochs=epochs, batch_size=batch_size, seed=seed,
        device=device, augment=augment, time_budget_s=time_budget_s, width=width, progress=progress,
        # even class sampling: on EyePACS-like imbalance plain sampling learns "always grade 0", whose
        # features cannot tell the rare grades apart, and the rare grades are what evaluation is about
        class_balanced=True,
        description="domain classifier",
    )
    if time_budget_s is None:
        save_classifier(model, stem, {
            "content_hash": manifest.content_hash, "class_names": manifest.class_names,
            "image_size": manifest.image_size, "recipe": recipe, "history": history,
        })
    return model
