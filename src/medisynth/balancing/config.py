"""What ``medisynth balance`` is asked (``BalanceConfig``), how many images each class gets
(``class_targets``) and what it did (``BalanceResult``)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from medisynth.defaults import BALANCE
from medisynth.errors import MedisynthError


@dataclass
class BalanceConfig:
    """A rebalancing request (``medisynth balance``): top up each class of the train split with synthetic images."""

    data: Path  # prepared data set
    run: Path  # trained run (medisynth train)
    out: Path  # the balanced image folder to create (images/, labels.csv, balance.json)
    target: Optional[int] = None  # bring every class to this many train images
    ratio: Optional[float] = None  # or to ratio x the largest class (default: the largest class)
    min_d_score: Optional[float] = None  # sampler filter: keep images the discriminator scores >= this
    max_similarity: Optional[float] = None  # sampler filter: drop near-copies of training images
    seed: int = BALANCE["seed"]  # fixes the synthetic images
    device: str = BALANCE["device"]  # "auto", "cpu", "cuda", ...
    batch_size: int = BALANCE["batch_size"]  # images per generation batch
    overwrite: bool = False  # replace ``out`` when it exists
    progress: bool = True  # progress bars on a terminal


@dataclass
class BalanceResult:
    out: Path
    class_names: list[str]
    real: list[int]  # train split, per class
    requested: list[int]
    added: list[int]
    real_val: list[int] = field(default_factory=list)
    real_test: list[int] = field(default_factory=list)

    @property
    def total(self) -> list[int]:
        return [r + a for r, a in zip(self.real, self.added)]

    @property
    def shortfall(self) -> list[int]:
        return [q - a for q, a in zip(self.requested, self.added)]

    def table(self) -> list[dict]:
        return [{"class": c, "real": r, "requested": q, "added": a, "total": t, "shortfall": s}
                for c, r, q, a, t, s in zip(self.class_names, self.real, self.requested, self.added, self.total,
                                            self.shortfall)]

    def summary(self) -> str:
        lines = [f"balanced train split written to {self.out}",
                 f"{'class':>14} {'real':>7} {'added':>7} {'total':>7}"]
        for row in self.table():
            short = f"  (short by {row['shortfall']})" if row["shortfall"] else ""
            lines.append(f"{row['class']:>14} {row['real']:>7} {row['added']:>7} {row['total']:>7}{short}")
        lines.append(f"val and test splits: real only ({sum(self.real_val)} and {sum(self.real_test)} images), unchanged")
        return "\n".join(lines)


def class_targets(real_counts: list[int], target: int | None = None, ratio: float | None = None) -> list[int]:
    """Per-class train-split size to reach; never below the real count (real images are not removed)."""
    if target is not None and ratio is not None:
        raise MedisynthError("pass --target-count or --ratio, not both")
    majority = max(real_counts)
    if target is not None:
        if target < 1:
            raise MedisynthError(f"--target-count must be at least 1 (got {target})")
        goal = int(target)
    elif ratio is not None:
        if not ratio > 0:
            raise MedisynthError(f"--ratio must be positive (got {ratio})")
        goal = math.ceil(ratio * majority)
    else:
        goal = majority
    return [max(goal, n) for n in real_counts]
