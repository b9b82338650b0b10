"""prepare end to end on tiny sets: bad input, atomic output, untouched input, the pool, the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medisynth.data.manifest import Manifest
from medisynth.data.prepare import PrepareConfig, format_summary, prepare
from medisynth.errors import MedisynthError


def run(source, out, **kw):
    kw.setdefault("size", 16)
    kw.setdefault("workers", 1)
    return prepare(PrepareConfig(source=source, out=out, **kw), progress=False)


def corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])  # a truncated file


@pytest.mark.parametrize("damage", ["truncated", "not_an_image"])
def test_bad_image_is_one_clear_error_or_a_counted_skip(image_folder, tmp_path, helpers, damage):
    bad = image_folder / "images" / "im07.png"
    if damage == "truncated":
        corrupt(bad)
    else:
        bad.write_text("this is text, not a PNG")
    before = helpers.hash_tree(image_folder)
    with pytest.raises(MedisynthError, match=r"im07\.png.*(cannot decode|--skip-bad)") as err:
        run(image_folder, tmp_path / "out")
    assert "--skip-bad" in str(err.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))  # whole or not at all
    result = run(image_folder, tmp_path / "out", skip_bad=True)
    assert result.manifest.num_images == 29
    assert len(result.manifest.skipped) == 1 and "im07.png" in result.manifest.skipped[0]["item"]
    assert "skipped 1 bad item" in format_summary(result.manifest)
    assert helpers.hash_tree(image_folder) == before  # inputs never modified


@pytest.mark.parametrize("mode", ["RGBA", "I;16", "P", "LA", "1"])
def test_unusual_image_modes_are_converted(tmp_path, mode):
    root = tmp_path / "modes"
    (root / "images").mkdir(parents=True)
    lines = ["image,label"]
    for i in range(4):
        if mode == "RGBA":
            a = np.zeros((16, 16, 4), np.uint8)
            a[..., 0], a[..., 3] = 200, 255 if i % 2 else 0  # transparent pixels become black
            img = Image.fromarray(a, "RGBA")
        elif mode == "I;16":
            img = Image.fromarray(np.full((16, 16), 257 * (50 + i), np.uint16))
        elif mode == "P":
            img = Image.fromarray(np.full((16, 16, 3), (10 * i, 100, 200), np.uint8)).convert("P", palette=Image.ADAPTIVE)
        elif mode == "LA":
            img = Image.fromarray(np.full((16, 16), 100 + i, np.uint8)).convert("LA")
        else:
            img = Image.fromarray(np.eye(16, dtype=bool) if i % 2 else ~np.eye(16, dtype=bool))
        img.save(root / "images" / f"m{i}.png")
        lines.append(f"m{i},{i % 2}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    result = run(root, tmp_path / "out", channels=3)
    images = np.load(tmp_path / "out" / "images-00000.npy")
    assert images.dtype == np.uint8 and images.shape == (4, 16, 16, 3)
    assert result.manifest.channels == 3
    ids = [line.split(",")[1] for line in (tmp_path / "out" / "index.csv").read_text().splitlines()[1:]]
    pixel = {i: images[k, 8, 8] for k, i in enumerate(ids)}
    if mode == "RGBA":
        assert pixel["m0"].max() == 0 and pixel["m1"][0] == 200
    elif mode == "I;16":
        assert pixel["m2"][0] == 52  # 16-bit divided by 257
    elif mode == "P":
        assert tuple(pixel["m1"]) == (10, 100, 200)
    elif mode == "LA":
        assert pixel["m3"][0] == 103
    else:
        assert {int(pixel["m0"][0]), int(pixel["m1"][0])} == {0, 255}


def test_mixed_channels_need_the_channels_flag(image_folder, tmp_path, helpers):
    helpers.write_image(image_folder / "images" / "im05.png", helpers.noise_image(5, channels=1))
    with pytest.raises(MedisynthError, match="im05.*--channels"):
        run(image_folder, tmp_path / "out")
    assert run(image_folder, tmp_path / "out", channels=1).manifest.channels == 1


def test_output_exists_and_overlapping_paths(image_folder, tmp_path):
    run(image_folder, tmp_path / "out")
    with pytest.raises(MedisynthError, match="--overwrite"):
        run(image_folder, tmp_path / "out")
    run(image_folder, tmp_path / "out", overwrite=True, size=32)
    assert Manifest.load(tmp_path / "out").image_size == 32
    with pytest.raises(MedisynthError, match="overlaps the source"):
        run(image_folder, image_folder / "prepared")
    with pytest.raises(MedisynthError, match="overlaps the source"):
        run(image_folder, image_folder.parent, overwrite=True)
    with pytest.raises(MedisynthError, match="does not exist"):
        run(tmp_path / "nowhere", tmp_path / "out3")


def test_exact_duplicates_are_counted_and_kept_on_one_side(tmp_path, helpers):
    root = tmp_path / "dups"
    lines = ["image,label"]
    for i in range(60):
        helpers.write_image(root / "images" / f"d{i:02d}.png", helpers.noise_image(i % 20))  # each image 3 times
        lines.append(f"d{i:02d},{i % 2}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    result = run(root, tmp_path / "out")
    assert result.manifest.duplicates == 40
    assert "exact duplicate images" in format_summary(result.manifest)
    import pandas as pd

    index = pd.read_csv(tmp_path / "out" / "index.csv")
    assert (index.groupby("sha1")["split"].nunique() == 1).all()


def test_manifest_index_and_shards_agree(image_folder, tmp_path):
    result = run(image_folder, tmp_path / "out", seed=5)
    out = tmp_path / "out"
    raw = json.loads((out / "manifest.json").read_text())
    assert raw["num_images"] == 30 and raw["class_names"] == ["a", "b", "c"]
    assert sum(sum(c.values()) for c in raw["counts"].values()) == 30
    images = np.load(out / raw["shards"][0]["images"], mmap_mode="r")
    assert images.shape == (30, 16, 16, 3) and images.dtype == np.uint8
    again = run(image_folder, tmp_path / "out2", seed=5)
    assert again.manifest.content_hash == result.manifest.content_hash
    assert (out / "index.csv").read_text() == (tmp_path / "out2" / "index.csv").read_text()


def test_limit(image_folder, tmp_path):
    assert run(image_folder, tmp_path / "out", limit=7).manifest.num_images == 7


def test_spawn_pool_gives_the_same_result_and_stops_cleanly(tmp_path, helpers):
    root = tmp_path / "many"
    lines = ["image,label"]
    for i in range(80):
        helpers.write_image(root / "images" / f"p{i:02d}.png", helpers.noise_image(i, size=(12, 12)))
        lines.append(f"p{i:02d},{i % 2}")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    one = run(root, tmp_path / "one", workers=1)
    two = run(root, tmp_path / "two", workers=2)
    assert one.manifest.content_hash == two.manifest.content_hash
    corrupt(root / "images" / "p40.png")  # an error in the middle of the stream: the pool must not hang
    with pytest.raises(MedisynthError, match="p40.png"):
        run(root, tmp_path / "three", workers=2)


def test_cli_prepare_prints_the_summary_and_exits_2_on_bad_input(image_folder, tmp_path):
    cli = Path(sys.executable).parent / "medisynth"
    if not cli.exists():
        pytest.skip("medisynth console script not installed beside this python")
    ok = subprocess.run([str(cli), "prepare", str(image_folder), "--out", str(tmp_path / "out"), "--size", "16",
                         "--workers", "2", "--classes", "a,b,c"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "imbalance ratio" in ok.stdout and "30 images" in ok.stdout
    bad = subprocess.run([str(cli), "prepare", str(image_folder), "--out", str(tmp_path / "out2"), "--channels", "2"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--channels 2" in bad.stderr and "Traceback" not in bad.stderr


def test_cli_prepare_renames_classes_and_refuses_a_malformed_rename(image_folder, tmp_path):
    import json

    cli = Path(sys.executable).parent / "medisynth"
    if not cli.exists():
        pytest.skip("medisynth console script not installed beside this python")
    ok = subprocess.run([str(cli), "prepare", str(image_folder), "--out", str(tmp_path / "out"), "--size", "16",
                         "--workers", "1", "--classes", "a,b,c", "--rename-classes", "a=alpha, c=gamma"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["class_names"] == ["alpha", "b", "gamma"]
    for bad, says in (("a:alpha", "'a:alpha' is not OLD=NEW"), ("a=x,a=y", "'a' is renamed twice"),
                      ("z=x", "no class 'z'")):
        run = subprocess.run([str(cli), "prepare", str(image_folder), "--out", str(tmp_path / "bad"), "--size", "16",
                              "--rename-classes", bad], capture_output=True, text=True, timeout=120)
        assert run.returncode == 2 and says in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()


def test_limit_takes_a_seeded_subset_from_every_class(tmp_path):
    from medisynth.phantom import generate_ct_dataset

    source = generate_ct_dataset(tmp_path / "ct", n=40, size=32, seed=0, proportions=(1, 1, 1, 1))
    first = run(source, tmp_path / "a", limit=12).manifest
    again = run(source, tmp_path / "b", limit=12).manifest
    assert first.num_images == 12 and first.counts == again.counts
    totals = [sum(first.counts[s][c] for s in first.counts) for c in first.class_names]
    assert sum(1 for t in totals if t > 0) >= 3  # the class folders are listed one after another
