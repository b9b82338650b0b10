"""Copy detection: every planted edit of a training image is flagged and traced to it, distinct images are not,
units count once, bad layouts raise a clear error, only what is used is built, and the cache is reused."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from medisynth.errors import MedisynthError
from medisynth.features.ssl import SSLRecipe, train_ssl_encoder
from medisynth.metrics import copy_detection
from medisynth.metrics.copy_detection import CopyDetector, describe_transform, near_copies_table
from medisynth.phantom import render_fundus

SIZE = 64


def _fundus(n: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.stack([render_fundus(i % 5, SIZE, rng)[0] for i in range(n)])).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def reference():
    return _fundus(12, seed=0)


@pytest.fixture(scope="module")
def detector(reference):
    # 20 steps: at 5 the descriptors barely tell the 12 images apart and a source can miss the 8 candidates
    encoder, _ = train_ssl_encoder(reference, SSLRecipe(steps=20, batch_size=12))
    return CopyDetector(reference, encoder)  # threshold calibrated on the reference's units


def _bright(x):
    return (x.float() * 1.1).round().clamp(0, 255).to(torch.uint8)


def _noise(x):
    return (x.float() + torch.randn(x.shape, generator=torch.Generator().manual_seed(0)) * 5).round().clamp(0, 255).to(torch.uint8)


EDITS = {
    "exact": lambda x: x.clone(),
    "brightness": _bright,
    "jpeg70": lambda x: TF.jpeg(x, 70),
    "noise5": _noise,
    "hflip": lambda x: x.flip(-1),
    "shift2": lambda x: TF.affine(x, angle=0.0, translate=[2, -1], scale=1.0, shear=[0.0, 0.0]),
    "crop90": lambda x: TF.resized_crop(x, 3, 3, 58, 58, [SIZE, SIZE], antialias=True),
    "rotate5": lambda x: TF.affine(x, angle=5.0, translate=[0, 0], scale=1.0, shear=[0.0, 0.0],
                                   interpolation=TF.InterpolationMode.BILINEAR),
    "colour_cast": lambda x: (x.float() * torch.tensor([1.1, 0.95, 0.9])[:, None, None]).round().clamp(0, 255).to(torch.uint8),
    "blur": lambda x: TF.gaussian_blur(x, [5, 5], [1.0, 1.0]),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_each_planted_edit_is_flagged_and_traced_to_its_source(detector, reference, edit):
    sources = [1, 6, 10]
    copies = torch.stack([EDITS[edit](reference[i]) for i in sources])
    m = detector.match(copies)
    assert m.flagged.all(), (edit, m.similarity, detector.threshold)
    assert list(m.nearest) == sources
    assert not detector.keep(copies).any()  # the sampler's fast path (descriptor floor) misses none of them


def test_the_transform_found_is_reported(detector, reference):
    m = detector.match(reference[3:4].flip(-1))
    assert "mirror" in m.transform[0] and m.similarity[0] > 0.99
    assert detector.match(reference[3:4]).transform == ["identity"]
    assert describe_transform(True, 1 / 0.9, 5.0, 2.0, -1.0) == "mirror, zoom 1.11, rotate +5 deg, shift (+2, -1) px"


def test_distinct_images_are_not_flagged(detector):
    m = detector.match(_fundus(10, seed=99))
    assert not m.flagged.any(), (m.similarity, detector.threshold)
    assert detector.keep(_fundus(4, seed=98)).all()


def test_threshold_is_calibrated_between_units_and_given_threshold_is_used(detector, reference):
    cal = detector.calibration
    assert cal["units"] == 12 and cal["queries"] == 12
    assert cal["between_units_max"] < detector.threshold <= 0.999
    fixed = CopyDetector(reference, detector.extractor, threshold=0.5)
    assert fixed.threshold == 0.5 and fixed.calibration["method"] == "given"


def test_images_of_one_unit_are_never_each_others_false_flags(reference):
    # two near-identical "slices" in one unit: calibration must not count them against each other
    ref = torch.cat([reference[:6], reference[:1].roll(1, dims=-1)])
    units = np.array([0, 1, 2, 3, 4, 5, 0])
    encoder, _ = train_ssl_encoder(ref, SSLRecipe(steps=2, batch_size=7))
    together = CopyDetector(ref, encoder, units=units)
    apart = CopyDetector(ref, encoder)  # every image its own unit: the neighbour counts as a distinct image
    assert apart.calibration["between_units_max"] > 0.95 > together.calibration["between_units_max"]


@pytest.mark.parametrize("bad, message", [
    (lambda r: r.permute(0, 2, 3, 1).contiguous(), "channels last"),  # N x H x W x C: the reference's old layout
    (lambda r: r.float() / 255, "uint8"),
    (lambda r: r[:, :1], "channel"),
    (lambda r: r[..., :32, :32], "px"),
])
def test_wrong_layout_dtype_channels_or_size_raise_a_clear_error(detector, reference, bad, message):
    with pytest.raises(MedisynthError, match=message):
        detector.match(bad(reference[:2]))


def test_near_copies_table_lists_every_query_with_its_unit(detector, reference):
    queries = torch.cat([reference[:2].flip(-1), _fundus(3, seed=7)])
    m = detector.match(queries)
    table = near_copies_table(m, [f"syn{i}" for i in range(5)], [f"train{i}" for i in range(12)], np.arange(12))
    assert list(table["image"]) == [f"syn{i}" for i in range(5)]
    assert list(table.columns) == ["image", "nearest_train", "train_unit", "unit_size", "similarity",
                                   "descriptor_similarity", "transform", "flagged"]
    assert table["flagged"].tolist()[:2] == [True, True] and table["nearest_train"].tolist()[:2] == ["train0", "train1"]


def test_blur_without_torchvision_matches_torchvision():
    x = torch.rand(3, 3, 20, 24)
    assert torch.allclose(copy_detection._smoothed(x), TF.gaussian_blur(x, [5, 5], [1.0, 1.0]), atol=1e-5)


def test_the_sampler_path_does_not_import_torchvision():
    # torchvision's import takes seconds: more than sample --max-similarity may add to a GAN's sampling
    code = ("import sys, medisynth.sampling.sampler, medisynth.sampling.filters, medisynth.metrics.copy_detection; "
            "print(sorted(m for m in ('torchvision', 'torch_fidelity') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _refuse(what):
    def refuse(*_, **__):
        raise AssertionError(f"{what} was built")
    return refuse


def test_a_given_threshold_builds_no_calibration_and_match_no_floor(detector, reference, monkeypatch):
    monkeypatch.setattr(CopyDetector, "_calibrate", _refuse("the calibration"))
    monkeypatch.setattr(CopyDetector, "_measure_floor", _refuse("the descriptor floor"))
    fixed = CopyDetector(reference, detector.extractor, threshold=0.9)
    m = fixed.match(reference[:2].flip(-1))
    assert m.flagged.all() and fixed.threshold == 0.9 and fixed.calibration == {"method": "given", "threshold": 0.9}
    with pytest.raises(AssertionError, match="floor was built"):
        fixed.keep(reference[:2])  # keep needs the floor (and only the floor)


def test_descriptors_floor_and_calibration_are_cached_by_pixels(detector, reference, tmp_path, monkeypatch):
    first = CopyDetector(reference, detector.extractor, cache_dir=tmp_path)
    floor, threshold = first.descriptor_floor, first.threshold
    assert len(list((tmp_path / "copy_detection").iterdir())) == 3  # descriptors, floor, calibration
    monkeypatch.setattr(CopyDetector, "_calibrate", _refuse("the calibration"))
    monkeypatch.setattr(CopyDetector, "_measure_floor", _refuse("the descriptor floor"))
    monkeypatch.setattr(first.extractor, "descriptors", _refuse("the reference descriptors"))
    again = CopyDetector(reference, first.extractor, cache_dir=tmp_path)
    assert (again.descriptor_floor, again.threshold) == (floor, threshold)
    assert torch.equal(again._ref_desc, first._ref_desc)
    monkeypatch.undo()
    # other pixels (one changed image) or other units: not the cached figures
    changed = reference.clone()
    changed[0, 0, 0, 0] ^= 1
    monkeypatch.setattr(CopyDetector, "_measure_floor", _refuse("the descriptor floor"))
    with pytest.raises(AssertionError, match="floor was built"):
        CopyDetector(changed, detector.extractor, cache_dir=tmp_path, threshold=0.9).descriptor_floor
    monkeypatch.undo()
    regrouped = CopyDetector(reference, detector.extractor, units=np.arange(12) // 2, cache_dir=tmp_path)
    assert regrouped.calibration["units"] == 6
    # a damaged cache file is rebuilt, never trusted
    for path in (tmp_path / "copy_detection").glob("*.safetensors"):
        path.write_bytes(b"damaged")
    for path in (tmp_path / "copy_detection").glob("*-floor.json"):
        path.write_text("{}")
    rebuilt = CopyDetector(reference, detector.extractor, cache_dir=tmp_path)
    assert torch.allclose(rebuilt._ref_desc, first._ref_desc) and rebuilt.descriptor_floor == floor


def test_candidates_resized_on_the_spot_equal_the_whole_set_resized(detector, reference):
    fresh = CopyDetector(reference, detector.extractor, threshold=0.9)
    few = torch.tensor([3, 1])
    assert torch.equal(fresh._reference_at(32, few), copy_detection._resized(reference, 32)[few])
    assert fresh._resized_reference == {}  # two candidates: the whole set was not resized
    assert torch.equal(fresh._reference_at(32, torch.arange(12)), copy_detection._resized(reference, 32))


@pytest.mark.parametrize("shape, t", [((2, 3, 32, 32), 26), ((1, 1, 64, 64), 52), ((4, 2, 9, 9), 1), ((1, 3, 8, 8), 8)])
def test_box_sums_are_the_sums_of_every_window(shape, t):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    got = copy_detection._box_sum(x, t)
    n = shape[-1] - t + 1
    want = torch.stack([torch.stack([x.double()[..., i:i + t, j:j + t].sum((-2, -1)) for j in range(n)], -1)
                        for i in range(n)], -2)
    assert got.shape == want.shape == (*shape[:2], n, n)
    assert torch.allclose(got.double(), want, atol=1e-4)
