"""What each utility protocol trains, validates and tests on.

The one rule that makes the utility numbers honest: validation uses only the real
VAL split and testing only the real TEST split; synthetic images go into TRAIN
and nowhere else. ``protocol_data`` builds the three sets for a protocol and
``check_no_leak`` asserts the rule on the result (ids are namespaced ``real/...``
and ``synthetic/...``, and every set carries a per-image ``synthetic`` flag),
so the rule is checked at run time and in the tests rather than trusted.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from medisynth.data import image_folder
from medisynth.data.dataset import PreparedDataset
from medisynth.data.image_folder import ImageSet
from medisynth.data.manifest import Manifest
from medisynth.defaults import UTILITY
from medisynth.errors import MedisynthError
from medisynth.io import read_json

#: protocol name -> (uses real train, uses synthetic, augmentation, class-balanced sampling)
PROTOCOLS: dict[str, tuple[bool, bool, str, bool]] = {
    "real": (True, False, "none", False),
    "real-aug": (True, False, "classic", False),
    "real-balanced": (True, False, "none", True),  # oversampling baseline: is synthetic better than repeating?
    # oversampling with classic augmentation: is synthetic better than repeating the real images, moved?
    "real-balanced-aug": (True, False, "classic", True),
    "real-weighted": (True, False, "none", False),  # class-weighted loss (CLASS_WEIGHTED_LOSS): the other cheap fix
    "real+synthetic": (True, True, "none", False),
    # class-balanced draws, SYNTHETIC_SHARE of every class's draws synthetic (draw weights, not class_balanced)
    "real-balanced+synthetic": (True, True, "none", False),
    "synthetic": (False, True, "none", False),
}
#: the protocols that train on synthetic images, in PROTOCOLS order
WITH_SYNTHETIC = tuple(name for name, (_, synthetic, _, _) in PROTOCOLS.items() if synthetic)
#: protocols trained with a class-weighted cross-entropy (weights n / (K * n_c), as sklearn's "balanced")
CLASS_WEIGHTED_LOSS = frozenset({"real-weighted"})
#: the share of each class's draws that real-balanced+synthetic takes from the class's synthetic images. The
#: same share in every class, so "looks synthetic" tells the classifier nothing about the class (a top-up adds
#: synthetic images to the small classes only, and a classifier learns that cue); one half, not tuned
SYNTHETIC_SHARE = 0.5
#: the protocol the utility verdict judges against the best baseline, unless the study names another
SYNTHETIC_PROTOCOL = UTILITY["verdict_protocol"]
#: the real-only baselines a generative model has to beat, then the two that use synthetic images
DEFAULT_PROTOCOLS = ("real", "real-balanced", "real-weighted", "real+synthetic", "synthetic")


@dataclass
class RealData:
    train: ImageSet
    val: ImageSet
    test: ImageSet
    class_names: list[str]
    image_size: int
    channels: int


@dataclass
class ProtocolData:
    protocol: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    augment: str
    class_balanced: bool
    added_per_class: list[int]  # synthetic images added to train, per class
    shortfall_per_class: list[int]  # synthetic images wanted but not available, per class
    class_weighted: bool = False  # class-weighted loss (CLASS_WEIGHTED_LOSS)
    draw_weights: np.ndarray | None = None  # per train image, drawn with replacement in these proportions


def load_split(root: Path, split: Optional[str], namespace: str = "real") -> ImageSet:
    """One split of a prepared set (None: every image) as the study's ImageSet, ids namespaced ``NAMESPACE/...``
    (another namespace keeps a second set's ids apart from the first's in the leak check)."""
    ds = PreparedDataset(root, split)
    images, labels = ds.to_tensor()
    return ImageSet(images, labels.numpy().copy(), [f"{namespace}/{i}" for i in ds.index["id"]],
                    np.zeros(len(ds), dtype=bool))


def load_real(root: Path) -> RealData:
    manifest = Manifest.load(root)
    sets = {split: load_split(root, split) for split in ("train", "val", "test")}
    if len(sets["test"]) == 0:
        raise MedisynthError(f"{root}: the test split is empty; re-run `medisynth prepare` with --test-fraction > 0")
    if len(sets["val"]) == 0:
        raise MedisynthError(f"{root}: the val split is empty; re-run `medisynth prepare` with --val-fraction > 0")
    return RealData(sets["train"], sets["val"], sets["test"], manifest.class_names, manifest.image_size, manifest.channels)


def with_external_test(real: RealData, root: Path) -> RealData:
    """``real`` with every image of the prepared set ``root`` as its test split (an external test set: another site,
    or more held-out images than the real set's own test split holds); training and validation stay ``real``'s."""
    manifest = Manifest.load(root)
    if (manifest.class_names, manifest.image_size, manifest.channels) != (real.class_names, real.image_size, real.channels):
        raise MedisynthError(
            f"--test-data {root}: classes {manifest.class_names} at {manifest.image_size} px x {manifest.channels} "
            f"channel(s), the real set classes {real.class_names} at {real.image_size} px x {real.channels}; prepare "
            f"it with --size {real.image_size} --channels {real.channels} --classes {','.join(real.class_names)}")
    test = load_split(root, None, namespace="external")
    copies = exact_copies(test, real.train)
    if copies:
        raise MedisynthError(f"--test-data {root}: {copies} of its {len(test)} images are pixel-identical to training "
                             "images of the real set; an external test set must hold images no classifier trains on")
    return RealData(real.train, real.val, test, real.class_names, real.image_size, real.channels)


def load_synthetic(folder: Path, class_names: list[str], image_size: int, channels: int) -> ImageSet:
    """An image-folder set (``images/<id>.png`` + ``labels.csv`` with image,label) mapped to ``class_names``,
    ids namespaced ``synthetic/...``. Of a ``medisynth balance`` folder only the synthetic rows are read."""
    images, _ = image_folder.load_image_folder(folder, class_names, image_size, channels, labelled=True)
    images.ids = [f"synthetic/{i}" for i in images.ids]
    return images


def top_up_counts(real_counts: np.ndarray, available: np.ndarray, target: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(added, shortfall) per class so that each class reaches ``target`` (default: the majority count)."""
    target = int(real_counts.max()) if target is None else int(target)
    wanted = np.maximum(target - real_counts, 0)
    added = np.minimum(wanted, available)
    return added, wanted - added


def recorded_top_up(folder: Path, real: RealData) -> tuple[np.ndarray, np.ndarray] | None:
    """(added, shortfall) per class as ``medisynth balance`` recorded them in ``folder/balance.json``;
    None for a folder that balance did not write.

    Utility tops up with these counts rather than re-deriving balance's rule, which may have been
    run with --target-count or --ratio. The record must be of this real train split."""
    path = Path(folder) / "balance.json"
    if not path.is_file():
        return None
    record = read_json(path)
    rows = {str(row.get("class")): row for row in record.get("per_class") or [] if isinstance(row, dict)}
    if sorted(rows) != sorted(real.class_names):
        raise MedisynthError(f"{path}: per_class lists classes {sorted(rows)}, but the real data set has "
                             f"{real.class_names}; pass the data set this folder was balanced from")
    try:
        recorded_real = [int(rows[c]["real"]) for c in real.class_names]
        added = np.array([int(rows[c]["added"]) for c in real.class_names], dtype=np.int64)
        shortfall = np.array([int(rows[c]["shortfall"]) for c in real.class_names], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        raise MedisynthError(f"{path}: per_class rows need real, added and shortfall counts; "
                             "re-run `medisynth balance`") from None
    actual = np.bincount(real.train.labels, minlength=len(real.class_names)).tolist()
    if recorded_real != actual:
        made_from = (record.get("data") or {}).get("path", "the data set it names")
        raise MedisynthError(f"{path}: balanced for a train split of {recorded_real} images per class, but --real "
                             f"has {actual}; pass --real {made_from}")
    return added, shortfall


def protocol_data(protocol: str, real: RealData, synthetic: ImageSet | None, seed: int = 0,
                  top_up: tuple[np.ndarray, np.ndarray] | None = None) -> ProtocolData:
    """Train/val/test sets of one protocol. Val and test are ALWAYS the real val and test splits.

    ``top_up``: (added, shortfall) per class for real+synthetic, as ``medisynth balance`` recorded
    them (``recorded_top_up``); without it each class is topped up to the majority count."""
    if protocol not in PROTOCOLS:
        raise MedisynthError(f"unknown protocol {protocol!r}; choose from {', '.join(PROTOCOLS)}")
    use_real, use_synthetic, augment, balanced = PROTOCOLS[protocol]
    k = len(real.class_names)
    added = np.zeros(k, dtype=np.int64)
    shortfall = np.zeros(k, dtype=np.int64)
    draw_weights = None
    if use_synthetic and (synthetic is None or len(synthetic) == 0):
        raise MedisynthError(f"protocol {protocol!r} needs synthetic images; pass --synthetic DIR")
    if protocol == "real+synthetic":
        real_counts = np.bincount(real.train.labels, minlength=k)
        available = np.bincount(synthetic.labels, minlength=k)
        added, shortfall = top_up if top_up is not None else top_up_counts(real_counts, available)
        if (added > available).any():
            raise MedisynthError(f"the balanced folder records {added.tolist()} synthetic images per class but holds "
                                 f"{available.tolist()}; re-run `medisynth balance`")
        rng = np.random.default_rng(seed)
        chosen = [rng.permutation(np.nonzero(synthetic.labels == c)[0])[: added[c]] for c in range(k)]
        train = ImageSet.concat(real.train, synthetic.subset(np.concatenate(chosen)))
    elif protocol == "real-balanced+synthetic":
        check_synthetic_classes([protocol], real, synthetic)
        train = ImageSet.concat(real.train, synthetic)
        added = np.bincount(synthetic.labels, minlength=k)
        draw_weights = balanced_mix_weights(train.labels, train.synthetic, k, SYNTHETIC_SHARE)
    elif protocol == "synthetic":
        train = synthetic
        added = np.bincount(synthetic.labels, minlength=k)
    else:
        train = real.train
    data = ProtocolData(protocol, train, real.val, real.test, augment, balanced, added.tolist(), shortfall.tolist(),
                        class_weighted=protocol in CLASS_WEIGHTED_LOSS,
                        draw_weights=draw_weights)
    check_no_leak(data, expect_synthetic_train=use_synthetic, expect_real_train=use_real)
    return data


def check_synthetic_classes(protocols: list[str], real: RealData, synthetic: ImageSet) -> None:
    """The balanced mix draws synthetic images of every class: refuse a set without some class (checked by
    ``run_utility`` before any classifier trains, and by ``protocol_data``)."""
    if "real-balanced+synthetic" not in protocols:
        return
    available = np.bincount(synthetic.labels, minlength=len(real.class_names))
    if (available == 0).any():
        missing = [real.class_names[c] for c in np.nonzero(available == 0)[0]]
        raise MedisynthError("protocol 'real-balanced+synthetic' draws synthetic images of every class, but the "
                             f"synthetic set has none of {', '.join(missing)}; sample every class (`medisynth sample "
                             "--per-class`) or leave this protocol out")


def balanced_mix_weights(labels: np.ndarray, synthetic: np.ndarray, num_classes: int, share: float) -> np.ndarray:
    """Draw weights that give every class 1/K of the draws and, within a class, ``share`` of them to its
    synthetic images and the rest to its real ones (each image of a part equally likely). A class with
    images of one part only gives that part all its draws."""
    labels, synthetic = np.asarray(labels), np.asarray(synthetic, dtype=bool)
    weights = np.zeros(len(labels), dtype=np.float64)
    for c in range(num_classes):
        parts = [(members, part_share) for members, part_share in
                 (((labels == c) & synthetic, share), ((labels == c) & ~synthetic, 1.0 - share)) if members.any()]
        for members, part_share in parts:
            weights[members] = (part_share if len(parts) == 2 else 1.0) / (num_classes * members.sum())
    return weights


def check_no_leak(data: ProtocolData, expect_synthetic_train: bool, expect_real_train: bool) -> None:
    """Raise if a synthetic image reached val/test or the train set's make-up contradicts the protocol."""
    for name, part in (("val", data.val), ("test", data.test)):
        if part.synthetic.any() or any(i.startswith("synthetic/") for i in part.ids):
            raise AssertionError(f"{data.protocol}: a synthetic image reached the {name} set")
    train_ids = set(data.train.ids)
    if train_ids & (set(data.val.ids) | set(data.test.ids)):
        raise AssertionError(f"{data.protocol}: an image is in train and in val/test")
    if not expect_real_train and (~data.train.synthetic).any():
        raise AssertionError(f"{data.protocol}: real images in a synthetic-only train set")
    if not expect_synthetic_train and data.train.synthetic.any():
        raise AssertionError(f"{data.protocol}: synthetic images in a real-only train set")


def exact_copies(synthetic: ImageSet, real: ImageSet) -> int:
    """How many synthetic images are pixel-identical to an image of ``real`` (memorised or leaked copies)."""
    def digests(s: ImageSet) -> set[str]:
        return {hashlib.sha1(im.numpy().tobytes()).hexdigest() for im in s.images}

    real_hashes = digests(real)
    return sum(hashlib.sha1(im.numpy().tobytes()).hexdigest() in real_hashes for im in synthetic.images)
