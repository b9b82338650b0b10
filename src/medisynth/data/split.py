"""Seeded, stratified, grouped train/val/test split.

Images that must stay together form one unit: those of one source group (both
eyes of a patient) and exact duplicates (same pixels after preprocessing).
Units are shuffled by seed within their class (a unit's class is its most
common label) and dealt to test, val and train so each class keeps the
requested fractions as closely as whole units allow.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from medisynth.errors import MedisynthError


def _units(index: pd.DataFrame) -> np.ndarray:
    """Union-find over shared group and shared content hash; returns a unit id per row."""
    parent = list(range(len(index)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for column in ("group", "sha1"):
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
    """Returns (split per row, number of rows that duplicate an earlier row's content)."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise MedisynthError("--val-fraction and --test-fraction must be in [0, 1) and sum to less than 1")
    duplicates = int(index["sha1"].duplicated().sum())
    units = _units(index)
    split = pd.Series([None] * len(index), dtype=object)
    fixed = index["fixed_split"] if "fixed_split" in index else pd.Series([None] * len(index))
    if fixed.notna().all():
        return fixed.astype(str).reset_index(drop=True), duplicates

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"unit": units, "label": index["label"].to_numpy()})
    unit_label = frame.groupby("unit")["label"].agg(lambda s: s.value_counts().idxmax())
    unit_size = frame.groupby("unit").size()
    for label in sorted(unit_label.unique()):
        members = unit_label.index[unit_label == label].to_numpy()
        members = members[rng.permutation(len(members))]
        total = int(unit_size[members].sum())
        targets = {"test": test_fraction * total, "val": val_fraction * total}
        filled = {"test": 0, "val": 0}
        for unit in members:
            size = int(unit_size[unit])
            # the split furthest below its target takes the unit; train takes the rest
            gaps = {s: targets[s] - filled[s] for s in ("test", "val")}
            best = max(gaps, key=gaps.get)
            if gaps[best] >= size / 2 and len(members) > 2:
                filled[best] += size
                chosen = best
            else:
                chosen = "train"
            split[units == unit] = chosen
    return split, duplicates
