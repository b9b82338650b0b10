"""The verdict end to end on tiny toy sets: real vs other real images, noise, a domain classifier at
chance, a class of 6 images; the report's verdict on the first screen of headless Chromium."""
from __future__ import annotations

import json
import shutil
import subprocess
from typing import Optional

import numpy as np
import pytest

from medisynth.evaluation import EvaluateConfig, evaluate, summary_lines
from medisynth.downstream.toy import toy_images, write_image_folder, write_prepared
from medisynth.evaluation.verdict import CANNOT_TELL, DOUBTFUL, GOOD, POOR, THRESHOLDS, choose_primary_space, decide, level_of

CLASSES = ["healthy", "sick", "rare"]
TRAIN, VAL, TEST = [0] * 24 + [1] * 24 + [2] * 6, [0, 0, 1, 1, 2], [0] * 6 + [1] * 6 + [2] * 2


def _answers(metrics: dict) -> dict:
    return {a["question"]: a for a in metrics["verdict"]["answers"]}


def _config(root, fake, out, **kw):
    base = dict(real=root / "real", fake=root / fake, out=out, feature_spaces=("pixels",), cache_dir=root / "cache",
                kid_subsets=5, diversity_pairs=30, yardstick_repeats=3, bootstrap=50, progress=False, device="cpu")
    base.update(kw)
    return EvaluateConfig(**base)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("verdict")
    labels = TRAIN + VAL + TEST
    splits = ["train"] * len(TRAIN) + ["val"] * len(VAL) + ["test"] * len(TEST)
    write_prepared(root / "real", toy_images(labels, size=32, channels=3, seed=0), labels, splits, CLASSES)
    # the same classes drawn afresh: real images the data set does not contain
    write_image_folder(root / "other-real", toy_images(TRAIN, size=32, channels=3, seed=11), [CLASSES[k] for k in TRAIN])
    noise = np.random.default_rng(5).integers(0, 256, size=(len(TRAIN), 32, 32, 3), dtype=np.uint8)
    write_image_folder(root / "noise", noise, [CLASSES[k] for k in TRAIN])
    return root


@pytest.fixture(scope="module")
def real_report(toy):
    lines: list[str] = []
    metrics = evaluate(_config(toy, "other-real", toy / "report-real"), log=lines.append)
    return toy / "report-real", metrics


def test_other_real_images_are_faithful_and_diverse(real_report):
    _, metrics = real_report
    answers = _answers(metrics)
    assert answers["faithful"]["level"] == GOOD, answers["faithful"]
    assert answers["diverse"]["level"] == GOOD, answers["diverse"]
    assert answers["private"]["level"] == GOOD
    y = metrics["distribution"]["pixels"]["yardstick"]
    assert y["method"] == "heldout" and y["n_per_set"] == len(VAL) + len(TEST)
    assert answers["faithful"]["number"] == pytest.approx(y["ratio"]["fid"])
    assert answers["faithful"]["yardstick_label"].endswith(f"{y['n_per_set']} images a set, held-out real")


def test_noise_is_poor(toy, tmp_path):
    metrics = evaluate(_config(toy, "noise", tmp_path / "r"), log=lambda s: None)
    answers = _answers(metrics)
    assert answers["faithful"]["level"] == POOR and answers["faithful"]["number"] > THRESHOLDS["fid_ratio"][2]
    assert answers["diverse"]["level"] == POOR


def test_class_of_six_images_gets_an_interval(real_report):
    out, metrics = real_report
    rare = metrics["per_class"]["rare"]
    assert rare["n_real"] == 6 and rare["distribution"]["pixels"] is None  # too few for FID...
    iv = rare["interval"]  # ...but KID and coverage with an interval
    assert iv["space"] == "pixels" and iv["n_real"] == 6 and iv["n_fake"] == 6
    assert iv["kid_ci"][0] <= iv["kid"] <= iv["kid_ci"][1] and iv["kid_ci"][0] < iv["kid_ci"][1]
    assert 0 <= iv["coverage_ci"][0] <= iv["coverage"] <= iv["coverage_ci"][1] <= 1
    page = (out / "report.html").read_text()
    assert "KID [95% CI] (pixels)" in page and "(k=2)" in page


def test_verdict_in_metrics_json_terminal_and_report(real_report):
    out, metrics = real_report
    on_disk = json.loads((out / "metrics.json").read_text())
    assert [a["question"] for a in on_disk["verdict"]["answers"]] == ["faithful", "diverse", "private", "class-true"]
    assert on_disk["verdict"]["primary_space"] == "pixels"
    lines = summary_lines(metrics)
    assert lines[0].startswith("Verdict") and "Faithful" in lines[1] and "GOOD" in lines[1]
    # no domain space ran: class-true cannot tell, and says why
    assert "CANNOT TELL" in lines[4] and "domain" in lines[4]
    page = (out / "report.html").read_text()
    assert page.index('id="verdict"') < page.index('id="overview"')


def test_domain_classifier_at_chance_is_said_and_not_used(toy, tmp_path):
    # labels shuffled against the images: no classifier can beat chance on held-out images
    root = tmp_path / "shuffled"
    labels = TRAIN + VAL + TEST
    splits = ["train"] * len(TRAIN) + ["val"] * len(VAL) + ["test"] * len(TEST)
    images = toy_images(np.random.default_rng(1).permutation(labels), size=32, channels=3, seed=0)
    write_prepared(root / "real", images, labels, splits, CLASSES)
    shutil.copytree(toy / "other-real", root / "other-real")
    lines: list[str] = []
    metrics = evaluate(_config(root, "other-real", tmp_path / "r", feature_spaces=("domain", "pixels"), domain_epochs=1,
                                   ssl_steps=20),
                       log=lines.append)
    chance = metrics["cas"]["domain_chance"]
    assert chance["split"] == "test" and not chance["better_than_chance"] and chance["p_value"] >= 0.05
    assert metrics["feature_spaces"]["domain"]["informative"] is False
    answers = _answers(metrics)
    assert answers["class-true"]["level"] == CANNOT_TELL and "chance" in answers["class-true"]["reason"]
    # the label-free ssl space joined the requested ones, and the verdict reads it
    assert metrics["feature_spaces"]["ssl"]["status"] == "ok" and metrics["verdict"]["primary_space"] == "ssl"
    assert any("adding the label-free ssl space" in line for line in lines)
    assert metrics["distribution"]["ssl"]["yardstick"]["available"]
    assert "domain" not in answers["faithful"]["number_label"]
    text = "\n".join(summary_lines(metrics))
    assert "UNINFORMATIVE" in text and "no better than chance" in text
    page = (tmp_path / "r" / "report.html").read_text()
    assert 'class="uninformative"' in page and "Uninformative: the domain classifier is no better than chance on 14 held-out test images" in page


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


def test_verdict_is_on_the_first_screen_in_chromium(real_report, tmp_path):
    chromium = _chromium()
    out, _ = real_report
    common = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--hide-scrollbars",
              f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,800"]
    # 1. a screenshot of the first screen, as a reader sees it
    shot = tmp_path / "first-screen.png"
    subprocess.run(common + [f"--screenshot={shot}", (out / "report.html").resolve().as_uri()], capture_output=True, timeout=120)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (800, 1280)
    good_green = np.all(np.abs(pixels - [0x1B, 0x7F, 0x3B]) < 12, axis=-1)  # the verdict cards' "good" colour
    assert good_green.sum() > 500, "no verdict card colour on the first screen"
    # 2. where the verdict block is: a copy of the page with a probe that writes its bounding box into the DOM
    probe = tmp_path / "probe.html"
    script = ('<script>var r=document.getElementById("verdict").getBoundingClientRect();'
              'document.body.setAttribute("data-probe",JSON.stringify([r.top,r.bottom,innerHeight]));</script></body>')
    probe.write_text((out / "report.html").read_text().replace("</body>", script))
    dom = subprocess.run(common + ["--dump-dom", probe.resolve().as_uri()], capture_output=True, text=True, timeout=120).stdout
    import html
    import re

    top, bottom, height = json.loads(html.unescape(re.search(r'data-probe="([^"]+)"', dom).group(1)))
    assert 0 < top < bottom <= min(height, 800), (top, bottom, height)


@pytest.mark.parametrize("check,value,level", [
    ("fid_ratio", 1.0, GOOD), ("fid_ratio", 2.0, DOUBTFUL), ("fid_ratio", 30.0, POOR),
    ("coverage_ratio", 0.9, GOOD), ("coverage_ratio", 0.6, DOUBTFUL), ("coverage_ratio", 0.1, POOR),
    ("near_copy_excess", 0.0, GOOD), ("near_copy_excess", 0.2, POOR), ("cas_ratio", None, None),
])
def test_levels_follow_the_threshold_table(check, value, level):
    assert level_of(check, value) == level


def test_primary_space_skips_an_uninformative_domain_space():
    assert choose_primary_space(["domain", "pixels"], True)[0] == "domain"
    assert choose_primary_space(["domain", "ssl", "pixels"], False)[0] == "ssl"
    assert choose_primary_space(["domain", "pixels"], False)[0] == "pixels"
    assert choose_primary_space([], None)[0] is None
    space, reason = choose_primary_space(["domain"], False)
    assert space is None and "uninformative" in reason


def test_too_few_images_cannot_tell():
    y = {"available": True, "n_per_set": 4, "ratio": {"fid": 1.0, "coverage": 1.0}}
    metrics = {"distribution": {"pixels": {"yardstick": y}}, "diversity": {},
               "memorization": {"pixel": {"fraction_flagged": 0.0, "heldout_fraction_flagged": None}}, "cas": {"available": False, "reason": "x"}}
    answers = {a["question"]: a for a in decide(metrics, "pixels", "label-free")["answers"]}
    assert all(a["level"] == CANNOT_TELL for a in answers.values())
    assert "too few images: 4 a set" in answers["faithful"]["reason"] and "held-out" in answers["private"]["reason"]


@pytest.mark.parametrize("n_per_set,dim,level", [
    (21, 128, CANNOT_TELL),  # a 1-minute run's blobs on a 45-image set read "good" from two biased FIDs
    (128, 128, CANNOT_TELL),  # n <= dim: the covariances are singular (the FID warning's rule)
    (129, 128, GOOD),
    (21, 11, GOOD),  # the pixel space's few PCA components
])
def test_faithful_cannot_tell_from_fids_with_singular_covariances(n_per_set, dim, level):
    y = {"available": True, "n_per_set": n_per_set, "method": "halves", "ratio": {"fid": 1.2, "coverage": 1.0},
         "real_vs_real": {"fid": 9.0, "coverage": 0.9}, "synthetic": {"fid": 10.8, "coverage": 0.9}}
    metrics = {"distribution": {"ssl": {"yardstick": y}}, "feature_spaces": {"ssl": {"status": "ok", "dim": dim}},
               "diversity": {}, "memorization": {"pixel": {"fraction_flagged": 0.0, "heldout_fraction_flagged": None}},
               "cas": {"available": False, "reason": "x"}}
    faithful = {a["question"]: a for a in decide(metrics, "ssl", "label-free")["answers"]}["faithful"]
    assert faithful["level"] == level
    if level == CANNOT_TELL:
        assert f"{n_per_set} images a set, real halves in {dim} feature dimensions" in faithful["reason"]


def _diverse(coverage: Optional[dict], within_ratio: Optional[float]) -> dict:
    """The diverse answer of a yardstick with real-vs-real coverage 0.9 and ``coverage`` = {"synthetic", "one_point"}
    (None: no yardstick), and a within-class MS-SSIM ratio (None: not computed)."""
    distribution = {}
    if coverage is not None:
        y = {"available": True, "n_per_set": 21, "method": "halves", "ratio": {"fid": 1.2, "coverage": coverage["synthetic"] / 0.9},
             "real_vs_real": {"fid": 9.0, "coverage": 0.9}, "synthetic": {"fid": 10.8, "coverage": coverage["synthetic"]}}
        if coverage.get("one_point") is not None:
            y["partner_only"] = {"one_point_coverage": coverage["one_point"]}
        distribution = {"ssl": {"yardstick": y}}
    within = {"available": False, "reason": "no class has 2 images in both sets"}
    if within_ratio is not None:
        within = {"available": True, "ratio": within_ratio, "mean_real": 0.5, "mean_fake": 1 - 0.5 * within_ratio}
    metrics = {"distribution": distribution, "diversity": {"within_class": within}, "cas": {"available": False, "reason": "x"},
               "memorization": {"pixel": {"fraction_flagged": 0.0, "heldout_fraction_flagged": None}}}
    return {a["question"]: a for a in decide(metrics, "ssl", "label-free")["answers"]}["diverse"]


@pytest.mark.parametrize("coverage, within_ratio, level, reason", [
    ({"synthetic": 0.9, "one_point": 0.3}, 1.0, GOOD, None),  # one average image covers little: coverage is read
    ({"synthetic": 0.9}, 1.0, GOOD, None),  # a yardstick made before the probe: read as before
    # a 1-minute fastgan's noise blobs on the 45-image EyePACS sample: one average image covers 0.95 in the ssl space
    ({"synthetic": 0.94, "one_point": 0.95}, None, CANNOT_TELL, "one average image covers 0.950 of the real images"),
    ({"synthetic": 0.94, "one_point": 0.95}, 1.57, CANNOT_TELL, "MS-SSIM shows no collapse (ratio 1.57)"),
    ({"synthetic": 0.94, "one_point": 0.95}, 0.2, POOR, None),  # a collapse MS-SSIM sees still counts
    (None, 1.0, CANNOT_TELL, "alone does not show the real variety is covered"),  # MS-SSIM alone never says good
    (None, 0.3, POOR, None),
])
def test_diverse_reads_coverage_only_where_one_average_image_would_not_pass(coverage, within_ratio, level, reason):
    answer = _diverse(coverage, within_ratio)
    assert answer["level"] == level, answer
    if reason:
        assert reason in answer["reason"], answer["reason"]


def _told_apart(accuracy: float, better_than_chance: bool = True, n: int = 45) -> dict:
    return {"available": True, "detectability": accuracy, "n_per_set": n,
            "chance": {"better_than_chance": better_than_chance, "p_value": 1e-6 if better_than_chance else 0.5, "alpha": 0.05}}


@pytest.mark.parametrize("synthetic, heldout, level, number", [
    # the 1-minute fastgan's blobs on the 45-image EyePACS sample (ssl space): told apart 0.933, held-out real 0.646
    (_told_apart(0.933), _told_apart(0.646, n=24), POOR, 0.287),
    (_told_apart(0.75), _told_apart(0.646, n=24), DOUBTFUL, 0.104),
    (_told_apart(0.67), _told_apart(0.646, n=24), CANNOT_TELL, None),  # within the noise: never "good" from this test
    (_told_apart(0.95, better_than_chance=False), _told_apart(0.5), CANNOT_TELL, None),  # not above chance
    (_told_apart(0.80), {"available": False, "reason": "no held-out images"}, POOR, 0.30),  # read against chance
    (None, None, CANNOT_TELL, None),  # no detectability in the metrics: as before
])
def test_faithful_falls_back_on_detectability_where_fid_cannot_tell(synthetic, heldout, level, number):
    y = {"available": True, "n_per_set": 21, "method": "halves", "ratio": {"fid": 1.2, "coverage": 1.0},
         "real_vs_real": {"fid": 9.0, "coverage": 0.9}, "synthetic": {"fid": 10.8, "coverage": 0.9}}
    metrics = {"distribution": {"ssl": {"yardstick": y}}, "feature_spaces": {"ssl": {"status": "ok", "dim": 128}},
               "diversity": {}, "memorization": {"pixel": {"fraction_flagged": 0.0, "heldout_fraction_flagged": None}},
               "cas": {"available": False, "reason": "x"}}
    if synthetic is not None:
        metrics["detectability"] = {"ssl": {"synthetic": synthetic, "heldout": heldout}}
    faithful = {a["question"]: a for a in decide(metrics, "ssl", "label-free")["answers"]}["faithful"]
    assert faithful["level"] == level, faithful
    if number is None:
        assert "singular covariances" in faithful["reason"]
    else:
        assert faithful["number"] == pytest.approx(number)
        assert "FID cannot tell at 21 images a set, real halves in 128 feature dimensions" in faithful["yardstick_label"]


@pytest.mark.parametrize("flagged,heldout,dcr,level", [
    (0.0, 0.0, 1.0, GOOD),
    (0.0, 0.0, 0.4, DOUBTFUL),  # close to training images but no copy: doubtful, never poor
    (0.25, 0.0, 0.9, POOR),  # a quarter are near-copies, no held-out image is
    (0.25, 0.24, 0.9, GOOD),  # the data set itself has that many duplicates
])
def test_private_reads_near_copies_against_the_heldout_baseline(flagged, heldout, dcr, level):
    metrics = {"distribution": {}, "diversity": {}, "cas": {"available": False, "reason": "x"},
               "memorization": {"pixel": {"fraction_flagged": flagged, "heldout_fraction_flagged": heldout, "dcr_ratio": dcr}}}
    private = {a["question"]: a for a in decide(metrics, None, "none")["answers"]}["private"]
    assert private["level"] == level


@pytest.mark.parametrize("utility_level,expected", [(POOR, POOR), (GOOD, DOUBTFUL), (CANNOT_TELL, DOUBTFUL)])
def test_utility_verdict_joins_class_true(utility_level, expected):
    chance = {"better_than_chance": True}
    metrics = {"distribution": {}, "diversity": {}, "memorization": {"pixel": {"fraction_flagged": 0.0, "heldout_fraction_flagged": None}},
               "cas": {"available": True, "overall": 0.6, "real_heldout_accuracy": 1.0, "chance": chance, "domain_chance": chance}}
    utility = {"verdict": {"level": utility_level, "number": -0.05, "number_label": "accuracy gain over the best baseline",
                           "sentence": "Synthetic images hurt the downstream classifier."}}
    answer = {a["question"]: a for a in decide(metrics, None, "none", utility)["answers"]}["class-true"]
    assert answer["level"] == expected  # CAS 0.6 of the real accuracy alone is doubtful; a worse utility result decides


@pytest.mark.parametrize("field,value,match", [
    ("bootstrap", 3, "--bootstrap 3"), ("yardstick_repeats", 0, "--yardstick-repeats 0"), ("utility", "nowhere", "--utility nowhere"),
])
def test_bad_verdict_options_are_one_clear_error(toy, tmp_path, field, value, match):
    from medisynth.errors import MedisynthError

    with pytest.raises(MedisynthError, match=match):
        evaluate(_config(toy, "other-real", tmp_path / "r", **{field: value}), log=lambda s: None)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("cas,cas_significant,domain_significant,level", [
    (0.9, True, True, GOOD),
    (0.9, False, True, CANNOT_TELL),  # near the real accuracy but too few synthetic images to beat chance
    (0.2, False, True, POOR),  # the classifier works on real images and sees nothing in the synthetic ones
    (0.9, True, False, CANNOT_TELL),  # a classifier at chance on real test images says nothing
])
def test_class_true_reads_cas_against_chance(cas, cas_significant, domain_significant, level):
    metrics = {"distribution": {}, "diversity": {}, "memorization": {"pixel": {"fraction_flagged": 0.0, "heldout_fraction_flagged": None}},
               "cas": {"available": True, "overall": cas, "real_heldout_accuracy": 1.0,
                       "chance": {"better_than_chance": cas_significant, "value": cas, "chance": 0.5, "n": 4, "p_value": 0.3, "alpha": 0.05},
                       "domain_chance": {"better_than_chance": domain_significant, "value": 0.5, "chance": 0.5, "n": 12,
                                         "p_value": 0.6, "alpha": 0.05}}}
    answer = {a["question"]: a for a in decide(metrics, None, "none")["answers"]}["class-true"]
    assert answer["level"] == level
    if level == CANNOT_TELL:
        assert "chance" in answer["reason"]


@pytest.mark.parametrize("heldout_told_apart", [False, True])
def test_class_true_cannot_read_cas_against_heldout_images_from_elsewhere(heldout_told_apart):
    # CT-like data: the held-out series differ, the classifier scores 0.36 on them and 0.72 on synthetic images
    chance = {"better_than_chance": True}
    told = {"available": True, "detectability": 0.99 if heldout_told_apart else 0.5,
            "chance": {"better_than_chance": heldout_told_apart, "p_value": 1e-9 if heldout_told_apart else 0.5, "alpha": 0.05}}
    metrics = {"distribution": {}, "diversity": {}, "memorization": {"pixel": {"fraction_flagged": 0.0, "heldout_fraction_flagged": None}},
               "cas": {"available": True, "overall": 0.72, "real_heldout_accuracy": 0.36, "chance": chance, "domain_chance": chance},
               "detectability": {"domain": {"synthetic": {"available": True}, "heldout": told}}}
    answer = {a["question"]: a for a in decide(metrics, None, "none")["answers"]}["class-true"]
    if heldout_told_apart:
        assert answer["level"] == CANNOT_TELL and "differ from the training images" in answer["reason"]
        assert "domain space" in answer["reason"] and "0.360" in answer["reason"]
    else:
        assert answer["level"] == GOOD and answer["number"] == pytest.approx(2.0)
