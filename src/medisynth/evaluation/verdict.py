"""The verdict: four answers a researcher reads before any table.

  faithful           distribution distance (FID) against the same figure for real vs real images (where too few
                     images make FID's covariances singular: how often a classifier tells the images apart)
  diverse            coverage (and within-class MS-SSIM diversity) against real vs real (coverage only where one
                     average image would not cover as much)
  private            near-copies of training images against the held-out real baseline
  class-true/useful  CAS against the classifier's accuracy on held-out real images (+ a utility study)

Each answer is ``good``, ``doubtful``, ``poor`` or ``cannot tell`` (with its reason: too few
images, a feature space or classifier no better than chance, held-out images a classifier tells
from the training ones, a missing input), with the one
number behind it, its yardstick and one sentence. ``decide(metrics, ...)`` builds them from the
``metrics.json`` dictionary; every threshold is in ``THRESHOLDS`` below.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from medisynth.evaluation.yardstick import MIN_IMAGES_PER_SET, ONE_POINT_COVERAGE, heldout_told_apart
from medisynth.metrics.fid import covariances_singular
from medisynth.report.format import format_chance, format_number

GOOD, DOUBTFUL, POOR, CANNOT_TELL = "good", "doubtful", "poor", "cannot tell"
SEVERITY = {GOOD: 0, DOUBTFUL: 1, POOR: 2}

# check -> (direction, good bound, doubtful bound); past the doubtful bound it is poor.
# Why these values: the real-vs-real yardstick itself scatters from split to split; at 10-50
# images a set its FID varies by ~20-40 % and coverage by ~0.1, so a synthetic figure within
# 1.5x of real vs real (coverage within 80 %) is indistinguishable from "as good as real data",
# and 3x (50 %) is where a reader should no longer trust it. Near-copies: a few percent above the
# held-out baseline is a handful of images in a small set, worth a look; 10 points above is a
# model that reproduces its training data. CAS: 80 % of the real accuracy is what the CAS
# literature calls close to real data; below half the classes are mostly not recognisable.
THRESHOLDS = {
    "fid_ratio": ("lower", 1.5, 3.0),  # synthetic FID / real-vs-real FID, same sizes
    "coverage_ratio": ("higher", 0.8, 0.5),  # synthetic coverage / real-vs-real coverage
    "diversity_ratio": ("higher", 0.8, 0.5),  # (1 - MS-SSIM) within classes, synthetic / real
    "near_copy_excess": ("lower", 0.02, 0.10),  # flagged fraction minus the held-out fraction
    # median distance to training, synthetic / held-out. Alone it makes "private" doubtful at worst:
    # blurry, average-looking images are close to every training image without copying any
    # (a 2-minute cgan on EyePACS: DCR ratio 0.50, no near-copy); near-copies make it poor
    "dcr_ratio": ("higher", 0.8, 0.5),
    "cas_ratio": ("higher", 0.8, 0.5),  # CAS / classifier accuracy on held-out real images
    # faithful where FID cannot tell: how much more often a classifier tells synthetic images from the training images
    # than held-out real ones (accuracies; 0.5 = indistinguishable). At 20-50 images a set such an accuracy scatters
    # by ~0.05-0.07 (binomial), so 0.05 is noise and 0.15 is well beyond it. Read only when the synthetic images are
    # told apart better than chance: a test this small can show a difference, never that there is none
    "detectability_excess": ("lower", 0.05, 0.15),
}
# the order in which a feature space is preferred for the verdict; domain only when its
# classifier is better than chance (else its features encode nothing about the images' classes)
SPACE_PREFERENCE = ("domain", "ssl", "inception", "radiomics", "pixels")


@dataclass
class Answer:
    question: str  # faithful | diverse | private | class-true
    title: str
    level: str  # good | doubtful | poor | cannot tell
    number: Optional[float]  # the figure behind the answer
    number_label: str  # what that figure is
    number_kind: str  # "ratio" | "fraction" | "number": how to format it
    yardstick: Optional[float]  # what real images give for the same figure
    yardstick_label: str
    sentence: str
    reason: Optional[str] = None  # why "cannot tell"


def level_of(check: str, value: Optional[float]) -> Optional[str]:
    """good / doubtful / poor of one figure by ``THRESHOLDS``; None when the figure is missing."""
    if value is None:
        return None
    direction, good, doubtful = THRESHOLDS[check]
    if direction == "lower":
        return GOOD if value <= good else DOUBTFUL if value <= doubtful else POOR
    return GOOD if value >= good else DOUBTFUL if value >= doubtful else POOR


def choose_primary_space(spaces_ok: list[str], domain_informative: Optional[bool]) -> tuple[Optional[str], str]:
    """The feature space the faithful/diverse answers use, and why."""
    for space in SPACE_PREFERENCE:
        if space not in spaces_ok:
            continue
        if space == "domain":
            if domain_informative:
                return space, "the domain classifier is better than chance on held-out real images"
            continue
        why = "label-free"
        if "domain" in spaces_ok and not domain_informative:
            why = "the domain classifier is no better than chance, so its features say nothing; this space needs no labels"
        return space, why
    if "domain" in spaces_ok:
        return None, ("feature space uninformative: the domain classifier is no better than chance and no label-free "
                      "space ran (add --features ssl or pixels)")
    return None, "no feature space ran"


def decide(metrics: dict, primary_space: Optional[str], primary_reason: str, utility: Optional[dict] = None) -> dict:
    """The four answers from the metrics dictionary (see the module docstring)."""
    answers = [
        _faithful(metrics, primary_space, primary_reason),
        _diverse(metrics, primary_space, primary_reason),
        _private(metrics),
        _class_true(metrics, utility),
    ]
    return {
        "primary_space": primary_space,
        "primary_space_reason": primary_reason,
        "thresholds": {k: {"better": d, "good": g, "doubtful": b} for k, (d, g, b) in THRESHOLDS.items()},
        "min_images_per_set": MIN_IMAGES_PER_SET,
        "answers": [asdict(a) for a in answers],
    }


def _yardstick(metrics: dict, space: Optional[str], no_space_reason: str) -> tuple[Optional[dict], Optional[str]]:
    if space is None:
        return None, no_space_reason
    y = (metrics["distribution"].get(space) or {}).get("yardstick") or {}
    if not y.get("available"):
        return None, y.get("reason", "no real-vs-real yardstick")
    if y["n_per_set"] < MIN_IMAGES_PER_SET:
        return None, (f"too few images: {y['n_per_set']} a set for the real-vs-real comparison "
                      f"(needs at least {MIN_IMAGES_PER_SET} real and {MIN_IMAGES_PER_SET} synthetic images a set)")
    return y, None


def _sets(y: dict) -> str:
    """How many images a set the yardstick compared, and which real images were the partner."""
    return f"{y['n_per_set']} images a set" + (", real halves" if y["method"] == "halves" else ", held-out real")


def _faithful(metrics: dict, space: Optional[str], no_space_reason: str) -> Answer:
    label = f"FID ratio to real vs real ({space} space)"
    y, why = _yardstick(metrics, space, no_space_reason)
    if y is None or y["ratio"]["fid"] is None:
        return Answer("faithful", "Faithful", CANNOT_TELL, None, label, "ratio", None, "real-vs-real FID", "", why or "FID could not be computed")
    dim = (metrics.get("feature_spaces", {}).get(space) or {}).get("dim")
    if dim is not None and covariances_singular(y["n_per_set"], dim):
        # the ratio of two FIDs that are mostly bias is near 1 whatever the images: blobs of a 1-minute run read "good"
        why = (f"too few images: FID from {_sets(y)} in {dim} feature dimensions has singular covariances, "
               f"so real and synthetic sets alike are scored by its bias (needs more than {dim} images a set)")
        return _faithful_by_detectability(metrics, space, f"at {_sets(y)} in {dim} feature dimensions") or Answer(
            "faithful", "Faithful", CANNOT_TELL, None, label, "ratio", None, "real-vs-real FID", "", why)
    ratio = y["ratio"]["fid"]
    level = level_of("fid_ratio", ratio)
    sentence = {
        GOOD: "The synthetic images sit as close to the real ones as other real images do.",
        DOUBTFUL: "The synthetic images are measurably further from the real ones than other real images are.",
        POOR: "The synthetic images are far from the real distribution: much further than other real images are.",
    }[level]
    return Answer("faithful", "Faithful", level, ratio, label, "ratio", y["real_vs_real"]["fid"],
                  f"real-vs-real FID {format_number(y['real_vs_real']['fid'])} vs synthetic {format_number(y['synthetic']['fid'])}, {_sets(y)}",
                  sentence)


def _faithful_by_detectability(metrics: dict, space: str, fid_sets: str) -> Optional[Answer]:
    """Faithful from the two-sample classifier test (``metrics.detectability``) where FID cannot tell: doubtful or
    poor when the synthetic images are told apart from the training images better than chance and more often than
    held-out real images are (``detectability_excess``); None (cannot tell) otherwise, never good."""
    d = (metrics.get("detectability") or {}).get(space) or {}
    synthetic, heldout = d.get("synthetic") or {}, d.get("heldout") or {}
    if not synthetic.get("available") or not synthetic["chance"]["better_than_chance"]:
        return None
    base = heldout["detectability"] if heldout.get("available") else 0.5
    excess = synthetic["detectability"] - base
    level = level_of("detectability_excess", excess)
    if level == GOOD:
        return None
    partner = "held-out real images" if heldout.get("available") else "chance"
    sentence = {
        DOUBTFUL: "A classifier tells the synthetic images from the training images more often than it tells held-out real ones.",
        POOR: "A classifier tells the synthetic images from the real ones far more often than it tells other real images apart: they do not look like the real images.",
    }[level]
    return Answer("faithful", "Faithful", level, excess, f"detectability excess over {partner} ({space} space)", "number", base,
                  f"told apart {format_number(synthetic['detectability'], kind='fraction')} of the time vs "
                  f"{format_number(base, kind='fraction')} for {partner}, {synthetic['n_per_set']} synthetic images; "
                  f"FID cannot tell {fid_sets}", sentence)


def coverage_blind(y: dict) -> Optional[str]:
    """Why coverage cannot tell collapse from variety in this yardstick (None when it can): one average image of the
    real partner set covers nearly as many real images as the partner set itself (``ONE_POINT_COVERAGE``), so a
    collapsed or blurry synthetic set would pass as well. Yardsticks made before the probe existed are read as before."""
    one_point = (y.get("partner_only") or {}).get(ONE_POINT_COVERAGE)
    real = y["real_vs_real"]["coverage"]
    if one_point is None or not real or level_of("coverage_ratio", one_point / real) != GOOD:
        return None
    return (f"coverage cannot tell collapse from variety here: one average image covers "
            f"{format_number(one_point, kind='fraction')} of the real images, {format_number(one_point / real)}x what "
            f"other real images cover ({_sets(y)})")


def _diverse(metrics: dict, space: Optional[str], no_space_reason: str) -> Answer:
    y, why = _yardstick(metrics, space, no_space_reason)
    within = (metrics.get("diversity") or {}).get("within_class") or {}
    checks = []  # (level, number, number_label, yardstick, yardstick_label)
    has_coverage = y is not None and y["ratio"]["coverage"] is not None
    blind = coverage_blind(y) if has_coverage else None
    coverage_read = has_coverage and not blind
    if blind:
        why = blind
    if coverage_read:
        r = y["ratio"]["coverage"]
        checks.append((level_of("coverage_ratio", r), r, f"coverage ratio to real vs real ({space} space)",
                       y["real_vs_real"]["coverage"],
                       f"real-vs-real coverage {format_number(y['real_vs_real']['coverage'], kind='fraction')} vs synthetic "
                       f"{format_number(y['synthetic']['coverage'], kind='fraction')}, {_sets(y)}"))
    if within.get("available") and within.get("ratio") is not None:
        r = within["ratio"]
        checks.append((level_of("diversity_ratio", r), r, "within-class diversity ratio (1 - MS-SSIM, synthetic / real)",
                       within["mean_real"], f"real within-class MS-SSIM {format_number(within['mean_real'])} vs synthetic {format_number(within['mean_fake'])}"))
    if not checks:
        reason = why or "coverage could not be computed"
        if not within.get("available"):
            reason += "; " + within.get("reason", "no within-class diversity")
        return Answer("diverse", "Diverse", CANNOT_TELL, None, "coverage ratio", "ratio", None, "real-vs-real coverage", "", reason)
    level, number, label, yard, yard_label = max(checks, key=lambda c: SEVERITY[c[0]])  # the worst check decides
    if level == GOOD and not coverage_read:
        # pairs of noise images differ more than pairs of real fundi: MS-SSIM can show a collapse, never coverage
        return Answer("diverse", "Diverse", CANNOT_TELL, None, "coverage ratio", "ratio", None, "real-vs-real coverage", "",
                      f"{why or 'coverage could not be computed'}; within-class MS-SSIM shows no collapse "
                      f"(ratio {format_number(number)}), which alone does not show the real variety is covered")
    sentence = {
        GOOD: "The synthetic images cover the real variety about as well as other real images do.",
        DOUBTFUL: "Part of the real variety is missing or repeated in the synthetic images.",
        POOR: "The synthetic images cover little of the real variety (few modes, or collapsed classes).",
    }[level]
    return Answer("diverse", "Diverse", level, number, label, "ratio", yard, yard_label, sentence)


def _private(metrics: dict) -> Answer:
    px = metrics["memorization"]["pixel"]
    label = "synthetic images flagged as near-copies of training images"
    if px.get("heldout_fraction_flagged") is None:
        return Answer("private", "Private", CANNOT_TELL, px["fraction_flagged"], label, "fraction", None,
                      "held-out real images flagged", "", "no held-out (val/test) real images to set the baseline")
    excess = px["fraction_flagged"] - px["heldout_fraction_flagged"]
    checks = [(level_of("near_copy_excess", excess), px["fraction_flagged"], label, px["heldout_fraction_flagged"],
               f"held-out real images flagged: {format_number(px['heldout_fraction_flagged'], kind='fraction')}", "fraction")]
    if px.get("dcr_ratio") is not None:
        dcr_level = level_of("dcr_ratio", px["dcr_ratio"])
        checks.append((DOUBTFUL if dcr_level == POOR else dcr_level, px["dcr_ratio"],
                       "distance to the closest training image, synthetic / held-out real (median)", 1.0,
                       "held-out real images: 1 by definition", "ratio"))
    level, number, label, yard, yard_label, kind = max(checks, key=lambda c: SEVERITY[c[0]])
    sentence = {
        GOOD: "Synthetic images are no closer to the training images than unseen real images are.",
        DOUBTFUL: "Synthetic images sit closer to training images than unseen real images do: look at the nearest pairs.",
        POOR: "The model reproduces training images: do not share these images as if they were new.",
    }[level]
    return Answer("private", "Private", level, number, label, kind, yard, yard_label, sentence)


def _class_true(metrics: dict, utility: Optional[dict]) -> Answer:
    cas = metrics.get("cas") or {}
    label = "CAS / classifier accuracy on held-out real images"
    yard_label = "classifier accuracy on held-out real images"

    def cannot(reason: str, number=None, yard=None) -> Answer:
        return Answer("class-true", "Class-true & useful", CANNOT_TELL, number, label, "ratio", yard, yard_label, "", reason)

    if not cas.get("available"):
        answer = cannot(cas.get("reason", "CAS was not computed"))
    else:
        chance = cas.get("domain_chance") or {}
        real_acc = cas.get("real_heldout_accuracy")
        told_apart = heldout_told_apart(metrics.get("detectability") or {})
        if not chance.get("better_than_chance"):
            answer = cannot(_chance_reason("the domain classifier", chance), yard=real_acc)
        elif told_apart:
            # images from elsewhere lower the classifier's held-out accuracy, so CAS / it would flatter
            answer = cannot(f"the held-out real images differ from the training images (a classifier tells them "
                            f"apart in the {', '.join(told_apart)} space): the classifier's accuracy on them "
                            f"({format_number(real_acc, kind='fraction')}) is no ceiling for CAS "
                            f"({format_number(cas['overall'], kind='fraction')})", yard=real_acc)
        elif not real_acc:
            answer = cannot("no held-out real accuracy to compare CAS with")
        else:
            ratio = cas["overall"] / real_acc
            level = level_of("cas_ratio", ratio)
            cas_chance = cas.get("chance") or {}
            if not cas_chance.get("better_than_chance"):
                # the classifier recognises real classes; at chance on synthetic images it either sees no
                # class in them (poor), or there are too few images to show it does (cannot tell)
                level = POOR if level == POOR else None
            sentence = {
                GOOD: "A classifier trained on real images recognises the intended class in the synthetic images.",
                DOUBTFUL: "The intended class is recognisable in only part of the synthetic images.",
                POOR: "A classifier trained on real images mostly does not see the intended class in the synthetic images.",
            }.get(level, "")
            answer = Answer("class-true", "Class-true & useful", level or CANNOT_TELL, ratio, label, "ratio", real_acc,
                            f"{yard_label}: {format_number(real_acc, kind='fraction')}; CAS {format_number(cas['overall'], kind='fraction')}", sentence,
                            None if level else _chance_reason("CAS", cas_chance, "synthetic"))
    u = (utility or {}).get("verdict") if utility else None
    if u and u.get("level") in SEVERITY:
        # a downstream utility study answers "useful" directly: it decides unless CAS is worse
        if answer.level == CANNOT_TELL or SEVERITY[u["level"]] >= SEVERITY[answer.level]:
            answer = Answer("class-true", "Class-true & useful", u["level"], u.get("number"), u.get("number_label", "utility study"),
                            u.get("number_kind", "number"), u.get("yardstick"), u.get("yardstick_label", ""), u.get("sentence", ""))
    return answer


def _chance_reason(what: str, chance: dict, images: str = "held-out test") -> str:
    if not chance or chance.get("value") is None:
        return f"{what} could not be tested against chance (no {images} images)"
    # even all-correct could not reach significance in the binomial test (a permutation test has no such floor)
    if chance.get("metric", "accuracy") == "accuracy" and chance["chance"] ** chance["n"] >= chance["alpha"]:
        return f"too few {images} images ({chance['n']}) to show that {what} beats chance ({format_chance(chance)})"
    return (f"{what} is no better than chance on {chance['n']} {images} images "
            f"({format_chance(chance)}, p = {format_number(chance['p_value'])}): its figures are uninformative")


def verdict_lines(verdict: dict) -> list[str]:
    """The verdict for the terminal: one line per answer, reasons included."""
    lines = ["Verdict" + (f" (feature space: {verdict['primary_space']})" if verdict.get("primary_space") else "") + ":"]
    for a in verdict["answers"]:
        head = f"  {a['title']:<20} {a['level'].upper():<12}"
        if a["level"] == CANNOT_TELL:
            lines.append(f"{head}{a['reason']}")
            continue
        lines.append(f"{head}{format_number(a['number'], kind=a['number_kind'])} {a['number_label']} "
                     f"({a['yardstick_label']}). {a['sentence']}")
    return lines


__all__ = ["THRESHOLDS", "GOOD", "DOUBTFUL", "POOR", "CANNOT_TELL", "Answer", "decide", "choose_primary_space", "level_of", "verdict_lines"]
