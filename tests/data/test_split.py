"""The split: seeded, stratified, grouped, duplicates on one side, fixed splits kept, tiny classes."""
from __future__ import annotations

import pandas as pd
import pytest

from medisynth.data.split import assign_splits, largest_unit_shares
from medisynth.errors import MedisynthError


def make_index(labels, groups=None, sha1=None, fixed=None) -> pd.DataFrame:
    n = len(labels)
    return pd.DataFrame({
        "label": labels,
        "group": groups if groups is not None else [f"g{i}" for i in range(n)],
        "sha1": sha1 if sha1 is not None else [f"h{i}" for i in range(n)],
        **({"fixed_split": fixed} if fixed is not None else {}),
    })


def test_same_seed_same_split_other_seed_other_split():
    index = make_index([i % 3 for i in range(300)])
    a, _ = assign_splits(index, seed=1)
    b, _ = assign_splits(index, seed=1)
    c, _ = assign_splits(index, seed=2)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_each_class_keeps_the_fractions():
    labels = [0] * 200 + [1] * 60 + [2] * 20
    split, _ = assign_splits(make_index(labels), val_fraction=0.15, test_fraction=0.15, seed=0)
    frame = pd.DataFrame({"label": labels, "split": split})
    for label, n in ((0, 200), (1, 60), (2, 20)):
        part = frame[frame["label"] == label]["split"].value_counts()
        for s in ("val", "test"):
            assert abs(part.get(s, 0) / n - 0.15) <= 1.0 / n + 0.01


def test_groups_stay_together():
    # EyePACS: <patient>_left and <patient>_right share a group
    labels = [i % 5 for i in range(200)]
    groups = [f"p{i // 2}" for i in range(200)]
    split, _ = assign_splits(make_index(labels, groups=groups), seed=3)
    frame = pd.DataFrame({"group": groups, "split": split})
    assert (frame.groupby("group")["split"].nunique() == 1).all()
    assert set(split) == {"train", "val", "test"}


def test_exact_duplicates_never_straddle_the_split():
    sha1 = [f"h{i % 40}" for i in range(120)]  # every image three times
    split, duplicates = assign_splits(make_index([0] * 120, sha1=sha1), seed=0)
    assert duplicates == 80
    frame = pd.DataFrame({"sha1": sha1, "split": split})
    assert (frame.groupby("sha1")["split"].nunique() == 1).all()


def test_fixed_split_is_respected():
    fixed = ["train"] * 10 + ["val"] * 3 + ["test"] * 4
    split, _ = assign_splits(make_index([i % 2 for i in range(17)], fixed=fixed), seed=0)
    assert split.tolist() == fixed


def test_partly_fixed_split_keeps_fixed_rows_and_their_duplicates():
    fixed = ["test", None, None] + [None] * 40
    sha1 = ["same", "same"] + [f"h{i}" for i in range(41)]
    split, _ = assign_splits(make_index([0] * 43, sha1=sha1, fixed=fixed), seed=0)
    assert split[0] == "test" and split[1] == "test"


@pytest.mark.parametrize("sizes", [[1], [2], [1, 50], [2, 1, 30], [3, 3]])
def test_tiny_classes_do_not_crash(sizes):
    labels = [c for c, n in enumerate(sizes) for _ in range(n)]
    split, _ = assign_splits(make_index(labels), seed=0)
    assert len(split) == len(labels)
    frame = pd.DataFrame({"label": labels, "split": split})
    for c, n in enumerate(sizes):
        if n <= 2:  # a class of one or two images goes to train whole
            assert (frame[frame["label"] == c]["split"] == "train").all()


@pytest.mark.parametrize("val,test", [(-0.1, 0.1), (0.5, 0.5), (1.0, 0.0)])
def test_bad_fractions(val, test):
    with pytest.raises(MedisynthError, match="fraction"):
        assign_splits(make_index([0, 1]), val_fraction=val, test_fraction=test)


def test_zero_fractions_put_everything_in_train():
    split, _ = assign_splits(make_index([0, 1] * 20), val_fraction=0, test_fraction=0)
    assert set(split) == {"train"}


def test_near_groups_stay_together_and_chain_with_exact_duplicates():
    # near_group (from prepare's near-duplicate search) joins units like group and sha1 do
    n = 120
    index = make_index([0] * n)
    index["near_group"] = [i - i % 4 for i in range(n)]  # runs of four neighbouring slices
    index.loc[3, "sha1"] = index.loc[4, "sha1"] = "same"  # a copy links the first two runs
    split, _ = assign_splits(index, seed=0)
    frame = pd.DataFrame({"near": index["near_group"], "split": split})
    assert (frame.groupby("near")["split"].nunique() == 1).all()
    assert split[0] == split[7]
    assert set(split) == {"train", "val", "test"}
    shares = largest_unit_shares(index)
    assert shares == {"0": pytest.approx(8 / n)}
