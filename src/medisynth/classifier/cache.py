"""Saving classifiers (safetensors + JSON) and the cached domain classifier of a prepared data set."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from medisynth.classifier.networks import SmallResNet
from medisynth.classifier.training import train_classifier
from medisynth.device import resolve_device
from medisynth.errors import MedisynthError

#: bump when SmallResNet or domain_classifier's training recipe changes, so stale caches are not reused
#: (2: the stem stride depends on the image size)
CLASSIFIER_VERSION = 4  # 3: the domain classifier samples classes evenly; 4: early stopping waits for above chance


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
    try:
        model = SmallResNet(**meta["config"])
        model.load_state_dict(load_file(str(weights)))
    except Exception as e:  # noqa: BLE001  (safetensors, torch and a bad config raise many kinds; all mean "damaged")
        raise MedisynthError(f"{weights} is damaged ({type(e).__name__}: {e}); delete it and its .json, "
                             f"or retrain") from None
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
        try:
            model, meta = load_classifier(stem)
        except MedisynthError as e:  # a cache is ours to rebuild, never a reason to fail
            print(f"warning: cached domain classifier unusable ({e}); training it again", file=sys.stderr)
            meta = {}
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
