"""``evaluate(EvaluateConfig) -> dict``: feature spaces, distribution metrics, CAS, pixel figures,
diversity and memorization, then metrics.json + report.html.

``evaluate`` reads as its steps: inputs (``inputs.load_inputs``) -> features and distribution
metrics (``_feature_metrics``) -> CAS -> pixel figures, diversity and memorization (``_copies``,
``_pixel_metrics``, ``_memorization``) -> per-class figures and verdict (``_judge``) -> figures
and report (``figures``, ``_write_report``)."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional

import numpy as np
import torch

from medisynth import __version__
from medisynth.device import resolve_device
from medisynth.errors import MedisynthError
from medisynth.evaluation.config import SCHEMA, EvaluateConfig
from medisynth.evaluation.figures import FigureInputs
from medisynth.evaluation.figures import figures as draw_figures
from medisynth.data.image_folder import ImageSet
from medisynth.evaluation.inputs import EvaluationInputs, load_inputs
from medisynth.evaluation.small_classes import add_small_class_intervals
from medisynth.evaluation.verdict import choose_primary_space, decide, verdict_lines
from medisynth.evaluation.yardstick import heldout_told_apart, pixel_yardstick, real_vs_real, within_class_diversity
from medisynth.features import FEATURE_SPACES, ExtractorContext, Features, FeatureSpaceUnavailable, build_extractor
from medisynth.io import atomic_dir, atomic_write_bytes, atomic_write_text, write_json
from medisynth.outputs import check_output
from medisynth.metrics import calculate_metrics
from medisynth.metrics.chance import accuracy_vs_chance
from medisynth.metrics.detectability import DETECTABILITY_KEY, detectability
from medisynth.metrics.diversity import mean_pairwise_ms_ssim
from medisynth.metrics.memorization import copy_memorization, feature_memorization
from medisynth.metrics.pixel import histogram_distance, intensity_histograms, mean_image, mean_image_mse, paired_ssim_psnr
from medisynth.report.format import format_chance, format_number
from medisynth.training import distributed

if TYPE_CHECKING:
    import pandas as pd

MAX_FLAGGED_LISTED = 50
LABEL_FREE_SPACE = "ssl"  # the self-supervised space used when the domain classifier is at chance


class _Laps:
    """Seconds each step took, for metrics.json's ``timings_s``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self._clock, 3)
        self._clock = now


@dataclass
class FeatureResults:
    """Per feature space: its status, distribution metrics and the features themselves."""

    spaces: dict[str, dict] = field(default_factory=dict)  # space -> status, dim, extractor info
    distribution: dict[str, dict] = field(default_factory=dict)  # space -> FID, KID, PRDC, IS, yardstick
    per_class: dict[str, dict[str, Optional[dict]]] = field(default_factory=dict)  # class -> space -> metrics
    features: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # space -> {"real", "fake", "train", "heldout"}
    logits: dict[str, Optional[dict]] = field(default_factory=dict)  # space -> {"real", "fake", "heldout"}, spaces with a classifier head
    domain_logits: dict[str, np.ndarray] = field(default_factory=dict)  # {"fake", "heldout"} of the domain classifier
    domain_chance: Optional[dict] = None  # the domain classifier's held-out accuracy against chance
    detectability: dict[str, dict] = field(default_factory=dict)  # space -> {"synthetic", "heldout"} two-sample tests
    heldout_partner: bool = False  # the yardsticks compare the training images with the held-out ones (else halves)
    heldout_told_apart: list[str] = field(default_factory=list)  # spaces telling held-out from training images


@dataclass
class CopyResults:
    """Copy detection of the synthetic set against the training split, and the pixel figures drawn from it."""

    mem_px: dict  # copy_memorization's output
    near_copies: pd.DataFrame  # near_copies.csv
    ssim: np.ndarray  # SSIM of each synthetic image with its nearest training image
    psnr: np.ndarray
    flagged: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # near-copy indices, most similar first


def evaluate(config: EvaluateConfig, log: Callable[[str], None] = print) -> dict:
    """Compare a synthetic set with a prepared real set; write ``config.out`` and return metrics.json's dict.

    ``config.fake`` is an image folder (images/ + labels.csv) or a training run, which is sampled
    (``num_per_class`` per class) into a scratch folder first. ``log`` receives one-line notes
    (e.g. a feature space that was skipped). Raises MedisynthError on bad input, before any work
    when ``config.out`` exists without ``overwrite``.

    Under torchrun (``medisynth.training.distributed``) every rank extracts its contiguous share of
    each image set's features and gathers the rest; rank 0 alone then computes the metrics, writes
    ``config.out`` and returns the dict. The other ranks return ``{}`` after the last gather, so none
    waits at a collective while rank 0 works (that wait would hit the collective timeout)."""
    config.validate()
    lap = _Laps()
    check_output(Path(config.out), config.overwrite, "evaluation", (config.real, config.fake))  # before minutes of work
    device = distributed.setup(resolve_device(config.device))
    log = log if distributed.is_main() else (lambda message: None)  # one copy of every note: rank 0's
    inputs = load_inputs(config)
    warnings_out = [f"synthetic images were resized to the real data's {inputs.manifest.image_size} px"] if inputs.resized else []
    lap("load")

    found = _feature_metrics(config, inputs, device, log, lap)
    if not distributed.is_main():
        return {}
    metrics = _header(config, inputs)
    metrics["feature_spaces"] = found.spaces
    metrics["distribution"] = found.distribution
    metrics["cas"] = _cas_section(inputs, found)
    metrics["detectability"] = found.detectability
    warnings_out += _heldout_unlike_training(found)

    copies = _copies(config, inputs)
    hist_real, hist_fake = intensity_histograms(inputs.reference.images), intensity_histograms(inputs.fake.images)
    real_mean, fake_mean = mean_image(inputs.reference.images), mean_image(inputs.fake.images)
    metrics["pixel"] = _pixel_metrics(config, inputs, copies, found.heldout_partner)
    _say_why_not_heldout(metrics["pixel"]["yardstick"], found)
    metrics["diversity"] = _diversity(config, inputs)
    lap("pixel")

    metrics["memorization"] = _memorization(inputs, found, copies)
    if metrics["memorization"]["pixel"]["heldout_fraction_flagged"]:
        warnings_out.append(
            f"{metrics['memorization']['pixel']['heldout_fraction_flagged']:.1%} of held-out REAL images are near-copies of training images "
            "(duplicates or neighbouring slices): read the synthetic flag rate against that baseline"
        )
    lap("memorization")

    _judge(metrics, config, inputs, found, copies)
    for space, d in found.distribution.items():
        warnings_out += [f"{space}: {w}" for w in d.get("warnings", [])]
    metrics["warnings"] = list(dict.fromkeys(warnings_out))

    figures = draw_figures(
        FigureInputs(reference=inputs.reference, fake=inputs.fake, train=inputs.train, features=found.features,
                     mem_px=copies.mem_px, flagged=copies.flagged, hist_real=hist_real, hist_fake=hist_fake,
                     real_mean=real_mean, fake_mean=fake_mean, run=inputs.run),
        seed=config.seed, near_copy_threshold=copies.mem_px["summary"]["threshold"],
    )
    lap("plots")
    metrics["timings_s"] = lap.timings
    _write_report(config, metrics, figures, copies.near_copies)
    return metrics


def _header(config: EvaluateConfig, inputs: EvaluationInputs) -> dict:
    """metrics.json's opening: schema, provenance, what was compared and the request."""
    manifest, reference, fake, class_names = inputs.manifest, inputs.reference, inputs.fake, inputs.class_names
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "medisynth_version": __version__,
        "inputs": {
            "real": str(inputs.real_root), "real_content_hash": manifest.content_hash, "real_split": config.real_split,
            "n_real": len(reference.images), "n_train": len(inputs.train.images), "n_heldout": len(inputs.heldout.images),
            "fake": str(inputs.fake_path), "fake_kind": inputs.fake_kind, "n_fake": len(fake.images), "fake_labelled": fake.labels is not None,
            "class_names": class_names, "image_size": manifest.image_size, "channels": manifest.channels,
            "real_class_counts": _class_counts(reference.labels, class_names),
            "fake_class_counts": _class_counts(fake.labels, class_names) if fake.labels is not None else None,
            "fake_resized": inputs.resized,
        },
        "config": {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                   for k, v in dataclasses.asdict(config).items()},
    }


def _feature_metrics(config: EvaluateConfig, inputs: EvaluationInputs, device, log: Callable[[str], None],
                     lap: _Laps) -> FeatureResults:
    """Every feature space's features (all ranks), then (rank 0 alone) the detectability tests, which decide
    whether the held-out images can be the yardsticks' partner, then each space's distribution metrics.

    The two phases are apart so that under torchrun the other ranks are done with their last
    collective before rank 0 spends minutes on metrics: a rank left waiting at a collective that
    long would hit the collective timeout (``MEDISYNTH_DIST_TIMEOUT``)."""
    found = _extract_spaces(config, inputs, device, log, lap)
    if not distributed.is_main():
        return found
    found.detectability = _detectability(config, found)
    found.heldout_told_apart = heldout_told_apart(found.detectability)
    found.heldout_partner = _heldout_is_partner(config) and not found.heldout_told_apart
    lap("detectability")
    for name in found.features:
        _measure_space(name, config, inputs, found)
        lap(f"distribution:{name}")
    return found


def _extract_spaces(config: EvaluateConfig, inputs: EvaluationInputs, device, log: Callable[[str], None],
                    lap: _Laps) -> FeatureResults:
    """Each feature space in turn; the label-free space joins when the domain classifier is at chance."""
    context = ExtractorContext(
        real_root=inputs.real_root, weights=config.weights, device=device, cache_dir=config.cache_dir, seed=config.seed,
        batch_size=config.batch_size, options={"domain_epochs": config.domain_epochs, "domain_width": config.domain_width,
                 "domain_augment": config.domain_augment, "ssl_steps": config.ssl_steps, "progress": config.progress},
    )
    found = FeatureResults(per_class={name: {} for name in inputs.class_names})
    queue = list(config.feature_spaces)
    while queue:
        name = queue.pop(0)
        try:
            extractor = build_extractor(name, context)
        except FeatureSpaceUnavailable as e:
            log(str(e))
            found.spaces[name] = {"status": "skipped", "reason": str(e)}
            continue
        except MedisynthError as e:
            if distributed.world_size() == 1:
                raise
            # not cached yet, its network trains here data-parallel over the ranks, with the limits of that
            raise MedisynthError(
                f"{name} space: training its network on {distributed.world_size()} ranks failed: {e}; or train it "
                f"once as one process (`medisynth evaluate` without torchrun caches it) before the torchrun job") from None
        _extract_space(name, extractor, inputs, found)
        chance = found.domain_chance  # from the gathered logits: every rank takes the same decision
        if name == "domain" and not chance["better_than_chance"] and LABEL_FREE_SPACE in FEATURE_SPACES \
                and LABEL_FREE_SPACE not in config.feature_spaces:
            log(f"domain classifier no better than chance ({format_chance(chance)}, p={format_number(chance['p_value'])}): "
                f"adding the label-free {LABEL_FREE_SPACE} space")
            queue.append(LABEL_FREE_SPACE)
        lap(f"features:{name}")
    return found


def _extract_space(name: str, extractor, inputs: EvaluationInputs, found: FeatureResults) -> None:
    """One feature space's features of every set (and the domain classifier's logits and chance test)."""
    reference, fake, train, heldout = inputs.reference, inputs.fake, inputs.train, inputs.heldout
    network = getattr(extractor, "model", None)
    if distributed.world_size() > 1 and isinstance(network, torch.nn.Module):
        # an encoder trained on every rank (ssl, when not cached) can differ in the last bits between
        # ranks on GPUs (kernels are not deterministic): every rank's share is measured with rank 0's
        network.load_state_dict(distributed.broadcast_from_main({k: v.cpu() for k, v in network.state_dict().items()}))
    if distributed.world_size() > 1 and hasattr(extractor, "fit"):
        # a space fitted on the first set it sees (pixels' PCA) must see the whole real set, not a shard
        extractor.fit(reference.images)
    feats_ref = extract_sharded(extractor, reference.images)  # the real set first: the pixels space fits its PCA on it
    feats_fake = extract_sharded(extractor, fake.images)
    feats_train = feats_ref if reference is train else extract_sharded(extractor, train.images)
    feats_held = extract_sharded(extractor, heldout.images) if len(heldout.images) else None
    found.features[name] = {"real": feats_ref.features, "fake": feats_fake.features, "train": feats_train.features,
                            "heldout": None if feats_held is None else feats_held.features}
    found.logits[name] = {"real": feats_ref.logits, "fake": feats_fake.logits,
                          "heldout": None if feats_held is None else feats_held.logits} if extractor.has_logits else None
    if name == "domain":
        found.domain_logits = {"fake": feats_fake.logits, "heldout": None if feats_held is None else feats_held.logits}
        found.domain_chance = _domain_chance(found.domain_logits["heldout"], heldout.labels, len(inputs.val.images))
    found.spaces[name] = {"status": "ok", "dim": int(feats_ref.features.shape[1]), **extractor.info()}


def extract_sharded(extractor, images: torch.Tensor) -> Features:
    """``extractor.extract(images)``; under torchrun each rank extracts its contiguous share and every
    rank gets all rows back in the original order (one process's result, up to batch composition)."""
    if distributed.world_size() == 1:
        return extractor.extract(images)
    start, stop = distributed.shard_bounds(len(images))
    part = extractor.extract(images[start:stop]) if stop > start else None
    features = distributed.gather_rows(None if part is None else part.features)
    logits = distributed.gather_rows(None if part is None else part.logits)
    return Features(features, logits)


def _measure_space(name: str, config: EvaluateConfig, inputs: EvaluationInputs, found: FeatureResults) -> None:
    """One feature space: distribution metrics with their yardstick, per class."""
    reference, fake, heldout = inputs.reference, inputs.fake, inputs.heldout
    feats, logits = found.features[name], found.logits[name]
    options = dict(kid_subsets=config.kid_subsets, kid_subset_size=config.kid_subset_size, prdc_k=config.prdc_k, seed=config.seed)
    wanted = ("fid", "kid", "prdc", "is") if logits is not None else ("fid", "kid", "prdc")
    found.distribution[name] = calculate_metrics(feats["real"], feats["fake"], wanted,
                                                 fake_logits=None if logits is None else logits["fake"], **options)
    use_heldout = feats["heldout"] is not None and found.heldout_partner
    found.distribution[name]["yardstick"] = real_vs_real(
        feats["real"], reference.labels, feats["fake"], fake.labels,
        heldout=feats["heldout"] if use_heldout else None, heldout_labels=heldout.labels, repeats=config.yardstick_repeats,
        logits={"real": logits["real"], "fake": logits["fake"], "heldout": logits["heldout"] if use_heldout else None}
        if logits is not None else None, **options)
    _say_why_not_heldout(found.distribution[name]["yardstick"], found)
    if fake.labels is None:
        return
    for c, cname in enumerate(inputs.class_names):
        r_sel, f_sel = reference.labels == c, fake.labels == c
        if min(r_sel.sum(), f_sel.sum()) < config.min_class_samples:
            found.per_class[cname][name] = None
            continue
        found.per_class[cname][name] = calculate_metrics(
            feats["real"][r_sel], feats["fake"][f_sel], ("fid", "kid", "prdc"), **options)


def _cas_section(inputs: EvaluationInputs, found: FeatureResults) -> dict:
    """The classification accuracy score, with the domain classifier's own chance test beside it."""
    cas = _cas(inputs.fake, inputs.heldout, found.domain_logits, inputs.class_names)
    if cas.get("available"):
        cas["chance"] = accuracy_vs_chance(inputs.fake.labels, found.domain_logits["fake"].argmax(axis=1))
    if found.domain_chance is not None:
        cas["domain_chance"] = found.domain_chance
        if "domain" in found.spaces:
            found.spaces["domain"]["chance"] = found.domain_chance
            found.spaces["domain"]["informative"] = found.domain_chance["better_than_chance"]
    return cas


def _detectability(config: EvaluateConfig, found: FeatureResults) -> dict:
    """Per feature space: can a classifier tell the synthetic images from the reference ones, and, as the
    yardstick, the held-out real images from the reference ones (``metrics.detectability``)?"""
    out = {}
    for name, feats in found.features.items():
        pairs = {"synthetic": feats["fake"]}
        if feats["heldout"] is not None and _heldout_is_partner(config):
            pairs["heldout"] = feats["heldout"]
        out[name] = {}
        for which, other in pairs.items():
            try:
                out[name][which] = {"available": True, **detectability(feats["real"], other, seed=config.seed)}
            except ValueError as e:
                out[name][which] = {"available": False, "reason": str(e)}
    return out


def _heldout_unlike_training(found: FeatureResults) -> list[str]:
    """A warning per feature space where a classifier tells the held-out real images from the training ones."""
    warnings = []
    for space in found.heldout_told_apart:
        heldout = found.detectability[space]["heldout"]
        warnings.append(
            f"{space}: a classifier tells the held-out REAL images from the training images "
            f"{format_number(heldout[DETECTABILITY_KEY], kind='fraction')} of the time (p = "
            f"{format_number(heldout['chance']['p_value'])}): they differ (other series, scanners or patients), so "
            "the yardsticks compare halves of the training images instead and CAS is not read against the "
            "classifier's held-out accuracy")
    return warnings


def _say_why_not_heldout(yardstick: dict, found: FeatureResults) -> None:
    """A yardstick that passed over the held-out images because they were told apart says so (the report shows the
    description). Only a training-split reference has held-out rows to tell apart (``_detectability``)."""
    if yardstick.get("available") and yardstick["method"] == "halves" and found.heldout_told_apart:
        yardstick["description"] += (f"; not the held-out images: a classifier tells them from the training images in "
                                     f"the {', '.join(found.heldout_told_apart)} space (see warnings)")


def _heldout_is_partner(config: EvaluateConfig) -> bool:
    """Held-out real images can be the reference images' partner only when the reference is the training split
    they are disjoint from: the detectability test's held-out row needs it, and the held-out yardsticks need it
    and images a classifier cannot tell from the training ones (``heldout_told_apart``)."""
    return config.real_split == "train"


def _copies(config: EvaluateConfig, inputs: EvaluationInputs) -> CopyResults:
    """Near-copies of training images, and SSIM/PSNR of each synthetic image with its nearest one."""
    from medisynth.metrics.copy_detection import copy_detector, near_copies_table

    train, fake, heldout = inputs.train, inputs.fake, inputs.heldout
    detector = copy_detector(inputs.real_root, config.near_copy_threshold, cache_dir=config.cache_dir, seed=config.seed,
                             steps=config.ssl_steps, progress=config.progress, reference=train.images)
    mem_px = copy_memorization(detector, fake.images, heldout.images if len(heldout.images) else None)
    near_copies = near_copies_table(mem_px["matches"], fake.ids, train.ids, detector.units)
    ssim, psnr = paired_ssim_psnr(fake.images, train.images[torch.from_numpy(mem_px["fake_nearest"])])
    flagged = np.nonzero(mem_px["matches"].flagged)[0]
    flagged = flagged[np.argsort(-mem_px["fake_similarity"][flagged])]
    return CopyResults(mem_px, near_copies, ssim, psnr, flagged)


def _pixel_metrics(config: EvaluateConfig, inputs: EvaluationInputs, copies: CopyResults, heldout_partner: bool) -> dict:
    reference, fake, heldout = inputs.reference, inputs.fake, inputs.heldout
    return {
        "nearest_by": "aligned correlation with the training split (copy detection, near_copies.csv)",
        "ssim_nearest_mean": float(copies.ssim.mean()), "ssim_nearest_std": float(copies.ssim.std()),
        "psnr_nearest_mean": float(copies.psnr.mean()), "psnr_nearest_std": float(copies.psnr.std()),
        "mean_image_mse": mean_image_mse(reference.images, fake.images),
        "histogram": histogram_distance(reference.images, fake.images),
        "yardstick": pixel_yardstick(reference.images, reference.labels, fake.images, fake.labels,
                                     heldout.images if heldout_partner and len(heldout.images) else None, heldout.labels,
                                     repeats=config.yardstick_repeats, seed=config.seed),
    }


def _diversity(config: EvaluateConfig, inputs: EvaluationInputs) -> dict:
    reference, fake = inputs.reference, inputs.fake
    return {
        "metric": "mean pairwise MS-SSIM over random pairs (lower = more diverse)",
        "fake": mean_pairwise_ms_ssim(fake.images, config.diversity_pairs, config.seed),
        "real": mean_pairwise_ms_ssim(reference.images, config.diversity_pairs, config.seed),
        "within_class": within_class_diversity(reference.images, reference.labels, fake.images, fake.labels, inputs.class_names,
                                               pairs=config.diversity_pairs, seed=config.seed),
    }


def _memorization(inputs: EvaluationInputs, found: FeatureResults, copies: CopyResults) -> dict:
    """Pixel-level copies (listed, most similar first) and the nearest-neighbour figures in a feature space."""
    mem_px = copies.mem_px
    memorization = {
        "pixel": mem_px["summary"],
        "feature": None,
        "flagged": [
            {"fake": inputs.fake.ids[i], "train": inputs.train.ids[int(mem_px["fake_nearest"][i])],
             "similarity": float(mem_px["fake_similarity"][i]), "transform": mem_px["matches"].transform[i]}
            for i in copies.flagged[:MAX_FLAGGED_LISTED]
        ],
    }
    feature_space = next((s for s in ("domain", "inception", "radiomics", "pixels") if s in found.features), None)
    if feature_space:
        f = found.features[feature_space]
        memorization["feature"] = {"space": feature_space, **feature_memorization(f["train"], f["fake"], f["heldout"])["summary"]}
    return memorization


def _judge(metrics: dict, config: EvaluateConfig, inputs: EvaluationInputs, found: FeatureResults, copies: CopyResults) -> None:
    """Adds per-class figures, the verdict and the training summary to ``metrics``."""
    reference, fake, class_names = inputs.reference, inputs.fake, inputs.class_names
    primary, primary_reason = choose_primary_space(
        list(found.features), None if found.domain_chance is None else found.domain_chance["better_than_chance"])
    metrics["per_class"] = _per_class(reference, fake, class_names, found.per_class, copies.ssim, config.min_class_samples) \
        if fake.labels is not None else None
    if metrics["per_class"] is not None and primary is not None:
        space = found.features[primary]
        add_small_class_intervals(metrics["per_class"], space["real"], reference.labels, space["fake"], fake.labels, class_names,
                                  primary, k=config.prdc_k, n_boot=config.bootstrap, seed=config.seed)
    metrics["verdict"] = decide(metrics, primary, primary_reason, read_utility(config.utility))
    metrics["training"] = _training_summary(inputs.fake_path) if inputs.run is not None else None


def _write_report(config: EvaluateConfig, metrics: dict, figures: dict[str, Optional[bytes]], near_copies: pd.DataFrame) -> None:
    """The report folder, all at once: plots/, metrics.json, near_copies.csv, report.html."""
    from medisynth.report import render_report

    with atomic_dir(Path(config.out), config.overwrite, "evaluation", (config.real, config.fake)) as tmp_out:
        (tmp_out / "plots").mkdir()
        for key, png in figures.items():
            if png:
                atomic_write_bytes(tmp_out / "plots" / f"{key.replace(':', '-')}.png", png)
        write_json(tmp_out / "metrics.json", metrics)
        atomic_write_text(tmp_out / "near_copies.csv", near_copies.to_csv(index=False))
        atomic_write_text(tmp_out / "report.html", render_report(metrics, figures))


def _class_counts(labels: Optional[np.ndarray], class_names: list[str]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(class_names)) if labels is not None and len(labels) else np.zeros(len(class_names), int)
    return {name: int(counts[i]) for i, name in enumerate(class_names)}


def _cas(fake: ImageSet, heldout: ImageSet, logits: dict, class_names: list[str]) -> dict:
    if fake.labels is None:
        return {"available": False, "reason": "the synthetic images have no labels"}
    if logits.get("fake") is None:
        return {"available": False, "reason": "needs the domain feature space (its classifier); add --features domain"}
    pred = logits["fake"].argmax(axis=1)
    out = {
        "available": True,
        "classifier": "domain (SmallResNet trained on the real train split)",
        "overall": float(np.mean(pred == fake.labels)),
        "per_class": {n: (float(np.mean(pred[fake.labels == c] == c)) if np.any(fake.labels == c) else None) for c, n in enumerate(class_names)},
        "real_heldout_accuracy": None,
        "real_heldout_per_class": None,
    }
    if logits.get("heldout") is not None and len(heldout.labels):
        hp = logits["heldout"].argmax(axis=1)
        out["real_heldout_accuracy"] = float(np.mean(hp == heldout.labels))
        out["real_heldout_per_class"] = {
            n: (float(np.mean(hp[heldout.labels == c] == c)) if np.any(heldout.labels == c) else None) for c, n in enumerate(class_names)
        }
    return out


def _domain_chance(heldout_logits: Optional[np.ndarray], heldout_labels: np.ndarray, n_val: int) -> dict:
    """The domain classifier's held-out balanced accuracy against chance (1/K), on the test split: val
    chose its early-stopping epoch, which lifts its val accuracy above what the classifier really does.

    Balanced accuracy, because the classifier trains on class-balanced draws: on EyePACS-like data it
    calls rare grades more often than they occur, so its plain accuracy sits below the majority share
    (0.05 against 0.73 on the demo's phantom set) even when it tells the grades apart."""
    if heldout_logits is None or not len(heldout_labels):
        return {**accuracy_vs_chance([], [], metric="balanced"), "split": None}
    pred = heldout_logits.argmax(axis=1)
    split = "test" if len(pred) > n_val else "val"
    sel = slice(n_val, None) if split == "test" else slice(None, n_val)
    return {**accuracy_vs_chance(heldout_labels[sel], pred[sel], metric="balanced"), "split": split}


def read_utility(folder: Optional[Path]) -> Optional[dict]:
    """A `medisynth utility` report's utility.json (its ``verdict`` joins the class-true & useful answer)."""
    if folder is None:
        return None
    from medisynth.io import read_json

    path = Path(folder) / "utility.json"
    if not path.is_file():
        raise MedisynthError(f"--utility {folder}: no utility.json there; pass the --out folder of `medisynth utility`")
    return read_json(path)


def _per_class(reference: ImageSet, fake: ImageSet, class_names: list[str], per_class_dist: dict, ssim: np.ndarray,
               min_class_samples: int) -> dict:
    out = {}
    for c, name in enumerate(class_names):
        n_real, n_fake = int(np.sum(reference.labels == c)), int(np.sum(fake.labels == c))
        dist = per_class_dist.get(name) or {}
        sel = fake.labels == c
        out[name] = {
            "n_real": n_real,
            "n_fake": n_fake,
            "distribution": dist or None,
            "ssim_nearest_mean": float(ssim[sel].mean()) if sel.any() else None,
            "skipped_reason": None if any(v is not None for v in dist.values())
            else f"fewer than {min_class_samples} images in one of the sets ({n_real} real, {n_fake} synthetic)",
        }
    return out


def _training_summary(run: Path) -> dict:
    from medisynth.report.plots import read_loss_log

    series = read_loss_log(run)
    return {"run": str(run), "logged_keys": sorted(series), "final": {k: float(v[1][-1]) for k, v in series.items()}}


def _kind(key: str) -> str:
    return "fraction" if key in ("precision", "recall", "coverage") else "number"


def summary_lines(metrics: dict) -> list[str]:
    """The terminal summary: the verdict first, then the headline numbers beside their yardsticks, then the
    warnings (metrics.json's and the report's)."""
    num = format_number

    inp = metrics["inputs"]
    lines = verdict_lines(metrics["verdict"]) if metrics.get("verdict") else []
    lines.append(f"{inp['n_fake']} synthetic vs {inp['n_real']} real ({inp['real_split']}) images")
    for space, d in metrics["distribution"].items():
        y = d.get("yardstick") or {}
        if y.get("available"):  # the same-size figures, so synthetic and real-vs-real are comparable
            parts = [f"{k} {num(y['synthetic'][k], kind=_kind(k))} vs {num(y['real_vs_real'][k], kind=_kind(k))} ({num(y['ratio'][k], kind='ratio')})"
                     for k in ("fid", "kid_mean", "precision", "recall", "coverage") if y["synthetic"].get(k) is not None]
            partner = "held-out images" if y["method"] == "heldout" else "halves of the reference images"
            parts.insert(0, f"synthetic vs real-vs-real ({partner}) at {y['n_per_set']} images:")
        else:
            parts = [f"{k}={num(d[k], kind=_kind(k))}" for k in ("fid", "kid_mean", "precision", "recall", "coverage") if d.get(k) is not None]
        note = "" if metrics["feature_spaces"].get(space, {}).get("informative", True) else "  [UNINFORMATIVE: classifier at chance]"
        lines.append(f"  {space}: " + " ".join(parts) + note)
    for space, s in metrics["feature_spaces"].items():
        if s["status"] != "ok":
            lines.append(f"  {space}: skipped")
    cas = metrics["cas"]
    if cas.get("available"):
        ch = cas.get("chance") or {}
        lines.append(f"  CAS {num(cas['overall'], kind='fraction')} (chance {num(ch.get('chance'), kind='fraction')}, p={num(ch.get('p_value'))}; "
                     f"classifier on held-out real: {num(cas['real_heldout_accuracy'], kind='fraction')})")
        if ch and not ch.get("better_than_chance"):
            lines.append("  CAS is no better than chance: the classifier does not see the intended classes in the synthetic images")
    dc = cas.get("domain_chance")
    if dc and not dc.get("better_than_chance"):
        lines.append(f"  domain classifier: {format_chance(dc)} on {dc['n']} held-out {dc.get('split')} images, "
                     f"p={num(dc.get('p_value'))}: no better than chance, its figures are uninformative")
    lines += detectability_lines(metrics.get("detectability") or {})
    px = metrics["memorization"]["pixel"]
    lines.append(f"  copies of training images: {px['num_flagged']} ({num(px['fraction_flagged'], kind='fraction')}) at correlation "
                 f">= {num(px['threshold'])} (near_copies.csv); held-out real baseline "
                 f"{num(px['heldout_fraction_flagged'], kind='fraction')}; DCR ratio {num(px['dcr_ratio'])}")
    lines += [f"warning: {w}" for w in metrics.get("warnings") or []]
    return lines


def detectability_lines(found: dict) -> list[str]:
    """One line per feature space: how well synthetic (and held-out real) images are told from the reference ones."""
    lines = []
    for space, d in found.items():
        synthetic, heldout = d.get("synthetic") or {}, d.get("heldout") or {}
        if not synthetic.get("available"):
            continue
        line = (f"  real or synthetic? {space}: told apart {format_number(synthetic[DETECTABILITY_KEY], kind='fraction')} "
                f"of the time (0.5 = indistinguishable, p={format_number(synthetic['chance']['p_value'])})")
        if heldout.get("available"):
            line += f"; held-out real vs training: {format_number(heldout[DETECTABILITY_KEY], kind='fraction')}"
        lines.append(line)
    return lines
