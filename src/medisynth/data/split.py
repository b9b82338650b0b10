"""Seeded, stratified, grouped train/val/test split.

Images that must stay together form one unit: those of one source group (both
eyes of a patient, the slices of one volume), exact duplicates (same pixels
after preprocessing) and, when the index has a ``near_group`` column, near
duplicates (neighbouring CT slices; see ``near_duplicates.py``). Units are shuffled by seed within their class (a unit's
class is its most common label) and dealt to test, val and train so each class
keeps the requested fractions as closely as whole units allow. Classes with
fewer than three units go to train whole (a 1-image class cannot be split).

Records whose source fixes the split (MedMNIST's official split) keep it; a unit
that contains a fixed record follows that record.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from medisynth.errors import MedisynthError


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise MedisynthError("--val-fraction and --test-fraction must be in [0, 1) and sum to less than 1")


UNIT_COLUMNS = ("group", "sha1", "near_group")  # rows sharing a value in any of these stay together


def split_units(index: pd.DataFrame) -> np.ndarray:
    """Union-find over shared group, content hash and near-duplicate group (the columns of
    UNIT_COLUMNS present); returns a unit id per row (rows of one unit share it)."""
    parent = list(range(len(index)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for column in (c for c in UNIT_COLUMNS if c in index):
        first: dict[str, int] = {}
        for i, key in enumerate(index[column].astype(str)):
            if key in first:
                a, b = find(i), find(first[key])
                if a != b:
                    parent[a] = b
            else:
                first[key] = i
    return np.array([find(i) for i in range(len(index))])


def assign_splits(
    index: pd.DataFrame, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> tuple[pd.Series, int]:
    """Returns (split per row, number of rows that duplicate an earlier row's content).

    ``index`` needs the columns ``label``, ``group`` and ``sha1``; an optional ``fixed_split``
    column (None where free) pins rows to a split."""
    check_fractions(val_fraction, test_fraction)
    duplicates = int(index["sha1"].duplicated().sum())
    units = split_units(index)
    column = index["fixed_split"] if "fixed_split" in index else pd.Series([None] * len(index))
    fixed = [None if pd.isna(f) else str(f) for f in column]
    if all(f is not None for f in fixed):  # the source fixes every row (MedMNIST): keep it exactly
        return pd.Series(fixed, dtype=object), duplicates

    unit_split: dict[int, str] = {}
    for unit, split in zip(units, fixed):
        if split is not None:
            unit_split.setdefault(int(unit), str(split))

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"unit": units, "label": index["label"].to_numpy()})
    free = frame[~frame["unit"].isin(list(unit_split))]
    unit_label = free.groupby("unit")["label"].agg(lambda s: s.value_counts().idxmax())
    unit_size = free.groupby("unit").size()
    for label in sorted(unit_label.unique()):
        members = unit_label.index[unit_label == label].to_numpy()
        members = members[rng.permutation(len(members))]
        # big units first (stable: the seeded order decides among equal sizes), small ones then fill the gaps;
        # dealt in random order, a few large units (runs of neighbouring CT slices) can leave val or test empty
        members = members[np.argsort(-unit_size[members].to_numpy(), kind="stable")]
        total = int(unit_size[members].sum())
        targets = {"test": test_fraction * total, "val": val_fraction * total}
        filled = {"test": 0, "val": 0}
        for unit in members:
            size = int(unit_size[unit])
            # the split furthest below its target takes the unit (if at least half of it fits); train takes the rest
            gaps = {s: targets[s] - filled[s] for s in ("test", "val")}
            best = max(gaps, key=gaps.get)
            if len(members) > 2 and gaps[best] >= size / 2:
                filled[best] += size
                unit_split[int(unit)] = best
            else:
                unit_split[int(unit)] = "train"
    return pd.Series([unit_split[int(u)] for u in units], dtype=object), duplicates


def largest_unit_shares(index: pd.DataFrame, units: np.ndarray | None = None) -> dict[str, float]:
    """Per class name (``class_name`` column, else ``label``): the share of the class's images in its
    largest unit. Near 1 means the class cannot be split (one chain of near-identical images)."""
    units = split_units(index) if units is None else units
    names = index["class_name"] if "class_name" in index else index["label"]
    frame = pd.DataFrame({"unit": units, "cls": names.astype(str).to_numpy()})
    largest = frame.groupby(["cls", "unit"]).size().groupby("cls").max()
    return {c: float(largest[c] / n) for c, n in frame["cls"].value_counts().items()}
