"""Training and using a classifier on uint8 image tensors: ``train_classifier`` (classic augmentation,
class-balanced sampling, time budget, early stopping on validation balanced accuracy),
``predict_proba`` and ``extract_features`` (batched, converting to [-1, 1] per batch)."""
from __future__ import annotations

import copy
import math
import time
import warnings
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medisynth.classifier.networks import SmallResNet, stem_stride_for, torchvision_resnet18
from medisynth.data.images import uint8_to_float
from medisynth.device import resolve_device
from medisynth.errors import MedisynthError
from medisynth.progress import make_progress
from medisynth.training import distributed

AUGMENTATIONS = ("none", "classic")


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


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA (faster cuDNN convolutions); the default layout on the CPU, where channels_last
    corrupts the heap in the convolution backward of narrow networks (torch 2.14.1: "corrupted size vs.
    prev_size" or a hang, reproduced with a width-4 SmallResNet at 16 px)."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


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
    class_weighted: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    epoch_size: int | None = None,
    draw_weights: np.ndarray | None = None,
) -> tuple[nn.Module, dict]:
    """Train a classifier on uint8 N x C x H x W images; returns (model in eval mode, history).

    With ``val`` the weights of the epoch with the best validation balanced accuracy are
    kept and training stops after ``patience`` epochs without improvement, counted only once
    the best is above chance (1 / the classes in ``val``): a classifier often sits at chance
    for its first epochs (always the majority class) before it learns, and stopping it there
    scores a classifier that never trained. Without ``val`` the last epoch's weights are kept.
    ``time_budget_s`` stops training between batches once exceeded (at least one batch always runs). ``model`` defaults to a fresh
    ``SmallResNet(C, num_classes, width, image_size=min(H, W))`` initialised from ``seed``.
    On CUDA, model and batches use the channels_last memory format (faster convolutions with cuDNN; the
    same numbers up to rounding); see ``memory_format`` for why not on the CPU.

    history: {"epochs": [{"epoch", "loss", "val_balanced_accuracy", "val_accuracy", "seconds"}],
    "best_epoch", "best_val_balanced_accuracy", "stopped": "epochs"|"patience"|"time_budget",
    "seconds", "steps"}.

    ``class_weighted`` weights the cross-entropy by n / (K * n_c) per class (sklearn's "balanced");
    ``on_epoch(record)`` is called after each epoch (a caller's own progress display).
    ``epoch_size`` is the number of images an epoch draws (default: all of them, each once); fewer
    draws a different random subset each epoch, so runs on sets of different sizes can train for
    the same number of steps. ``draw_weights`` (one non-negative weight per image) draws with
    replacement in those proportions; ``class_balanced`` is the case 1 / (its class's count).

    In a torch.distributed process group (``medisynth.training.distributed``, torchrun) the
    training is data-parallel: ``batch_size`` is the global batch, every rank takes its slice of
    each batch of the shared (seed, epoch) order, the gradients are averaged, BatchNorm is synced,
    and the augmentation is drawn for the global batch, so N ranks train what one process trains
    (up to the order of floating-point sums). Validation and early stopping run on every rank
    alike; the time budget stops every rank at the same batch. Every rank returns the same model.
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
    dev = distributed.setup(dev) if distributed.active() else dev  # this rank's GPU under torchrun
    model = model.to(dev, memory_format=memory_format(dev))
    images = train_images.to(dev)
    labels = labels.to(dev)
    n = len(images)
    if epoch_size is not None and epoch_size < 1:
        raise MedisynthError(f"epoch_size={epoch_size}: an epoch draws at least one image")
    if class_balanced and draw_weights is not None:
        raise MedisynthError("train_classifier: pass class_balanced or draw_weights, not both")
    if draw_weights is not None:
        draw_weights = np.asarray(draw_weights, dtype=np.float64)
        if draw_weights.shape != (n,) or not np.isfinite(draw_weights).all() or (draw_weights < 0).any() \
                or draw_weights.sum() <= 0:
            raise MedisynthError(f"draw_weights: need {n} finite, non-negative weights, not all 0")
    weighted_draws = class_balanced or draw_weights is not None
    # without replacement an epoch holds each image at most once; weighted draws (with replacement) may hold more
    draws = n if epoch_size is None else (min(epoch_size, n) if not weighted_draws else epoch_size)
    batch_size = max(1, min(batch_size, draws))
    local_batch = distributed.local_batch_size(batch_size)  # the global batch must divide over the ranks
    distributed.broadcast_module(model)
    model = distributed.sync_batchnorm(model, dev)
    steps_per_epoch = max(1, draws // batch_size)  # the ragged last batch is dropped; the order is reshuffled each epoch
    gen_cpu = torch.Generator().manual_seed(seed)
    gen_dev = torch.Generator(device=dev).manual_seed(seed)
    if class_balanced:
        counts = torch.bincount(labels.cpu(), minlength=num_classes).double()
        weights = (1.0 / counts.clamp(min=1))[labels.cpu()]
    elif draw_weights is not None:
        weights = torch.from_numpy(draw_weights)

    loss_weight = None
    if class_weighted:
        counts = torch.bincount(labels.cpu(), minlength=num_classes).float()
        loss_weight = (n / (num_classes * counts.clamp(min=1))).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    distributed.average_gradients([optimizer])
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * steps_per_epoch))
    history: dict = {"epochs": [], "best_epoch": None, "best_val_balanced_accuracy": None, "stopped": "epochs", "steps": 0}
    best_state, best_score, since_best = None, -1.0, 0
    chance = None if val is None else 1.0 / len(np.unique(np.asarray(val[1])))
    amp = dev.type == "cuda"

    bar = make_progress(transient=True)
    bar.disable = bar.disable or not progress or not distributed.is_main()
    with bar:
        task = bar.add_task(description, total=epochs * steps_per_epoch, status="")
        for epoch in range(epochs):
            model.train()
            if weighted_draws:
                order = torch.multinomial(weights, draws, replacement=True, generator=gen_cpu)
            else:
                order = torch.randperm(n, generator=gen_cpu)[:draws]
            order = order.to(dev)
            loss_sum, batches = torch.zeros((), device=dev), 0
            for step in range(steps_per_epoch):
                batch_idx = order[step * batch_size:(step + 1) * batch_size]
                idx = distributed.shard(batch_idx)
                with distributed.global_batch_draws(local_batch):
                    x = uint8_to_float(images[idx])
                    if augment == "classic":
                        x = classic_augment(x, gen_dev)
                x = x.contiguous(memory_format=memory_format(dev))
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                    loss = _cross_entropy(model(x), labels, idx, batch_idx, loss_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.detach().float()  # summed on the device: no host sync per step
                batches += 1
                history["steps"] += 1
                bar.advance(task)
                over_budget = time_budget_s is not None and time.monotonic() - start > time_budget_s
                if distributed.any_rank(over_budget, dev):  # every rank stops at the same batch
                    history["stopped"] = "time_budget"
                    break
            mean_loss = distributed.mean_over_ranks({"loss": float(loss_sum) / max(batches, 1)})["loss"]
            record = {"epoch": epoch + 1, "loss": mean_loss, "seconds": round(time.monotonic() - start, 2)}
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
                elif best_score > chance:
                    since_best += 1
            history["epochs"].append(record)
            if on_epoch is not None:
                on_epoch(record)
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


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor, idx: torch.Tensor, batch_idx: torch.Tensor,
                   weight: torch.Tensor | None) -> torch.Tensor:
    """The cross-entropy of this rank's slice ``idx`` of the batch ``batch_idx``, scaled so that the mean
    over the ranks is the whole batch's loss. Weighted: divided by the whole batch's weight sum (each
    rank knows it), not the slice's, so the ranks' average equals one process's weighted mean."""
    if weight is None or len(idx) == len(batch_idx):
        return F.cross_entropy(logits, labels[idx], weight=weight)
    total = weight[labels[batch_idx]].sum()
    share = len(batch_idx) / len(idx)  # the ranks' gradients are averaged: undo the 1 / world
    return F.cross_entropy(logits, labels[idx], weight=weight, reduction="sum") * share / total


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
    model.to(dev, memory_format=memory_format(dev))
    out = []
    with torch.inference_mode():
        for i in range(0, len(images_uint8), batch_size):
            x = uint8_to_float(images_uint8[i:i + batch_size].to(dev)).contiguous(memory_format=memory_format(dev))
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
    model.eval().to(dev, memory_format=memory_format(dev))  # outside inference_mode, see predict_proba
    with torch.inference_mode():
        out = [model.features(uint8_to_float(images_uint8[i:i + batch_size].to(dev))
                              .contiguous(memory_format=memory_format(dev))).float().cpu()
               for i in range(0, len(images_uint8), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, model.feature_dim), dtype=np.float32)
