"""``evaluate(EvaluateConfig) -> dict``: feature spaces, distribution metrics, CAS, pixel figures,
diversity and memorization, then metrics.json + report.html (inputs: ``inputs``; figures: ``figures``)."""
from __future__ import annotations

import dataclasses
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from medisynth.data.manifest import Manifest
from medisynth.device import resolve_device
from medisynth.errors import MedisynthError
from medisynth.evaluation.config import SCHEMA, EvaluateConfig
from medisynth.evaluation.figures import FigureInputs
from medisynth.evaluation.figures import figures as draw_figures
from medisynth.data.image_folder import ImageSet, load_image_folder
from medisynth.evaluation.inputs import is_run_folder, real_set, sample_run, subset
from medisynth.evaluation.small_classes import add_small_class_intervals
from medisynth.evaluation.verdict import choose_primary_space, decide, verdict_lines
from medisynth.evaluation.yardstick import pixel_yardstick, real_vs_real, within_class_diversity
from medisynth.features import FEATURE_SPACES, ExtractorContext, FeatureSpaceUnavailable, build_extractor
from medisynth.io import atomic_dir, atomic_write_bytes, atomic_write_text, write_json
from medisynth.outputs import check_output
from medisynth.metrics import calculate_metrics
from medisynth.metrics.chance import accuracy_vs_chance
from medisynth.metrics.diversity import mean_pairwise_ms_ssim
from medisynth.metrics.memorization import copy_memorization, feature_memorization
from medisynth.metrics.pixel import histogram_distance, intensity_histograms, mean_image, mean_image_mse, paired_ssim_psnr
from medisynth.report.format import format_number
from medisynth.runs import Run

MAX_FLAGGED_LISTED = 50
LABEL_FREE_SPACE = "ssl"  # the self-supervised space used when the domain classifier is at chance


def evaluate(config: EvaluateConfig, log: Callable[[str], None] = print) -> dict:
    """Compare a synthetic set with a prepared real set; write ``config.out`` and return metrics.json's dict.

    ``config.fake`` is an image folder (images/ + labels.csv) or a training run, which is sampled
    (``num_per_class`` per class) into a scratch folder first. ``log`` receives one-line notes
    (e.g. a feature space that was skipped). Raises MedisynthError on bad input, before any work
    when ``config.out`` exists without ``overwrite``."""
    config.validate()
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    real_root = Path(config.real)
    check_output(Path(config.out), config.overwrite, "evaluation", (config.real, config.fake))  # before minutes of work
    manifest = Manifest.load(real_root)
    device = resolve_device(config.device)
    class_names = manifest.class_names
    warnings_out: list[str] = []

    train = real_set(real_root, "train")
    val = real_set(real_root, "val")
    heldout = ImageSet.concat(val, real_set(real_root, "test"))
    reference = train if config.real_split == "train" else real_set(real_root, None if config.real_split == "all" else config.real_split)
    if len(train.images) == 0:
        raise MedisynthError(f"{real_root}: the train split is empty; memorization and the domain space need training images")
    reference = subset(reference, config.max_images, config.seed)

    fake_path = Path(config.fake)
    if not fake_path.exists():
        raise MedisynthError(f"--synthetic {fake_path}: not found; pass an image folder (images/ + labels.csv) or a run folder")
    with tempfile.TemporaryDirectory(prefix="medisynth-eval-") as tmp:
        fake_kind = "run" if is_run_folder(fake_path) else "folder"
        folder = sample_run(Run.open(fake_path), class_names, config, Path(tmp)) if fake_kind == "run" else fake_path
        fake, resized = load_image_folder(folder, class_names, manifest.image_size, manifest.channels, resize=True)
    fake = subset(fake, config.max_images, config.seed + 1)
    if resized:
        warnings_out.append(f"synthetic images were resized to the real data's {manifest.image_size} px")
    lap("load")

    metrics: dict = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "medisynth_version": _version(),
        "inputs": {
            "real": str(real_root), "real_content_hash": manifest.content_hash, "real_split": config.real_split,
            "n_real": len(reference.images), "n_train": len(train.images), "n_heldout": len(heldout.images),
            "fake": str(fake_path), "fake_kind": fake_kind, "n_fake": len(fake.images), "fake_labelled": fake.labels is not None,
            "class_names": class_names, "image_size": manifest.image_size, "channels": manifest.channels,
            "real_class_counts": _class_counts(reference.labels, class_names),
            "fake_class_counts": _class_counts(fake.labels, class_names) if fake.labels is not None else None,
            "fake_resized": resized,
        },
        "config": {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                   for k, v in dataclasses.asdict(config).items()},
    }

    # -- feature spaces and distribution metrics -------------------------------------------------
    context = ExtractorContext(
        real_root=real_root, weights=config.weights, device=device, cache_dir=config.cache_dir, seed=config.seed,
        batch_size=config.batch_size, options={"domain_epochs": config.domain_epochs, "ssl_steps": config.ssl_steps, "progress": config.progress},
    )
    spaces: dict[str, dict] = {}
    distribution: dict[str, dict] = {}
    per_class_dist: dict[str, dict[str, Optional[dict]]] = {name: {} for name in class_names}
    features: dict[str, dict[str, np.ndarray]] = {}
    domain_logits: dict[str, np.ndarray] = {}
    metric_options = dict(kid_subsets=config.kid_subsets, kid_subset_size=config.kid_subset_size, prdc_k=config.prdc_k, seed=config.seed)
    domain_chance: Optional[dict] = None
    queue = list(config.feature_spaces)
    while queue:
        name = queue.pop(0)
        try:
            extractor = build_extractor(name, context)
        except FeatureSpaceUnavailable as e:
            log(str(e))
            spaces[name] = {"status": "skipped", "reason": str(e)}
            continue
        feats_ref = extractor.extract(reference.images)  # the real set first: the pixels space fits its PCA on it
        feats_fake = extractor.extract(fake.images)
        feats_train = feats_ref if reference is train else extractor.extract(train.images)
        feats_held = extractor.extract(heldout.images) if len(heldout.images) else None
        features[name] = {"real": feats_ref.features, "fake": feats_fake.features, "train": feats_train.features,
                          "heldout": None if feats_held is None else feats_held.features}
        if name == "domain":
            domain_logits = {"fake": feats_fake.logits, "heldout": None if feats_held is None else feats_held.logits}
            domain_chance = _domain_chance(domain_logits["heldout"], heldout.labels, len(val.images))
            if not domain_chance["better_than_chance"] and LABEL_FREE_SPACE in FEATURE_SPACES and LABEL_FREE_SPACE not in config.feature_spaces:
                log(f"domain classifier no better than chance (accuracy {format_number(domain_chance['value'], kind='fraction')}, "
                    f"chance {format_number(domain_chance['chance'], kind='fraction')}, p={format_number(domain_chance['p_value'])}): "
                    f"adding the label-free {LABEL_FREE_SPACE} space")
                queue.append(LABEL_FREE_SPACE)
        spaces[name] = {"status": "ok", "dim": int(feats_ref.features.shape[1]), **extractor.info()}
        wanted = ("fid", "kid", "prdc", "is") if extractor.has_logits else ("fid", "kid", "prdc")
        distribution[name] = calculate_metrics(feats_ref.features, feats_fake.features, wanted, fake_logits=feats_fake.logits, **metric_options)
        # held-out real images are the fair partner only when the reference is the training split they are disjoint from
        partner = feats_held if feats_held is not None and config.real_split == "train" else None
        distribution[name]["yardstick"] = real_vs_real(
            feats_ref.features, reference.labels, feats_fake.features, fake.labels,
            heldout=None if partner is None else partner.features, heldout_labels=heldout.labels, repeats=config.yardstick_repeats,
            seed=config.seed, kid_subsets=config.kid_subsets, kid_subset_size=config.kid_subset_size, prdc_k=config.prdc_k,
            logits={"real": feats_ref.logits, "fake": feats_fake.logits, "heldout": None if partner is None else partner.logits}
            if extractor.has_logits else None)
        if fake.labels is not None:
            for c, cname in enumerate(class_names):
                r_sel, f_sel = reference.labels == c, fake.labels == c
                if min(r_sel.sum(), f_sel.sum()) < config.min_class_samples:
                    per_class_dist[cname][name] = None
                    continue
                per_class_dist[cname][name] = calculate_metrics(
                    feats_ref.features[r_sel], feats_fake.features[f_sel], ("fid", "kid", "prdc"), **metric_options
                )
        lap(f"features:{name}")
    metrics["feature_spaces"] = spaces
    metrics["distribution"] = distribution

    # -- classification accuracy score ----------------------------------------------------------
    metrics["cas"] = _cas(fake, heldout, domain_logits, class_names)
    if metrics["cas"].get("available"):
        metrics["cas"]["chance"] = accuracy_vs_chance(fake.labels, domain_logits["fake"].argmax(axis=1))
    if domain_chance is not None:
        metrics["cas"]["domain_chance"] = domain_chance
        if "domain" in spaces:
            spaces["domain"]["chance"] = domain_chance
            spaces["domain"]["informative"] = domain_chance["better_than_chance"]

    # -- pixel figures and diversity --------------------------------------------------------------
    from medisynth.metrics.copy_detection import copy_detector, near_copies_table

    detector = copy_detector(real_root, config.near_copy_threshold, cache_dir=config.cache_dir, seed=config.seed, steps=config.ssl_steps,
                             progress=config.progress, reference=train.images)
    mem_px = copy_memorization(detector, fake.images, heldout.images if len(heldout.images) else None)
    near_copies = near_copies_table(mem_px["matches"], fake.ids, train.ids, detector.units)
    nearest = torch.from_numpy(mem_px["fake_nearest"])
    ssim, psnr = paired_ssim_psnr(fake.images, train.images[nearest])
    hist_real, hist_fake = intensity_histograms(reference.images), intensity_histograms(fake.images)
    real_mean, fake_mean = mean_image(reference.images), mean_image(fake.images)
    metrics["pixel"] = {
        "nearest_by": "aligned correlation with the training split (copy detection, near_copies.csv)",
        "ssim_nearest_mean": float(ssim.mean()), "ssim_nearest_std": float(ssim.std()),
        "psnr_nearest_mean": float(psnr.mean()), "psnr_nearest_std": float(psnr.std()),
        "mean_image_mse": mean_image_mse(reference.images, fake.images),
        "histogram": histogram_distance(reference.images, fake.images),
        "yardstick": pixel_yardstick(reference.images, reference.labels, fake.images, fake.labels,
                                     heldout.images if config.real_split == "train" and len(heldout.images) else None, heldout.labels,
                                     config.yardstick_repeats, config.seed),
    }
    metrics["diversity"] = {
        "metric": "mean pairwise MS-SSIM over random pairs (lower = more diverse)",
        "fake": mean_pairwise_ms_ssim(fake.images, config.diversity_pairs, config.seed),
        "real": mean_pairwise_ms_ssim(reference.images, config.diversity_pairs, config.seed),
        "within_class": within_class_diversity(reference.images, reference.labels, fake.images, fake.labels, class_names,
                                               config.diversity_pairs, config.seed),
    }
    lap("pixel")

    # -- memorization ------------------------------------------------------------------------------
    flagged = np.nonzero(mem_px["matches"].flagged)[0]
    flagged = flagged[np.argsort(-mem_px["fake_similarity"][flagged])]
    memorization = {
        "pixel": mem_px["summary"],
        "feature": None,
        "flagged": [
            {"fake": fake.ids[i], "train": train.ids[int(mem_px["fake_nearest"][i])], "similarity": float(mem_px["fake_similarity"][i]),
             "transform": mem_px["matches"].transform[i]}
            for i in flagged[:MAX_FLAGGED_LISTED]
        ],
    }
    feature_space = next((s for s in ("domain", "inception", "radiomics", "pixels") if s in features), None)
    if feature_space:
        f = features[feature_space]
        memorization["feature"] = {"space": feature_space, **feature_memorization(f["train"], f["fake"], f["heldout"])["summary"]}
    if memorization["pixel"]["heldout_fraction_flagged"]:
        warnings_out.append(
            f"{memorization['pixel']['heldout_fraction_flagged']:.1%} of held-out REAL images are near-copies of training images "
            "(duplicates or neighbouring slices): read the synthetic flag rate against that baseline"
        )
    metrics["memorization"] = memorization
    lap("memorization")

    # -- per class, training, plots, report ----------------------------------------------------------
    primary, primary_reason = choose_primary_space(list(features), None if domain_chance is None else domain_chance["better_than_chance"])
    metrics["per_class"] = _per_class(reference, fake, class_names, per_class_dist, ssim, config) if fake.labels is not None else None
    if metrics["per_class"] is not None and primary is not None:
        add_small_class_intervals(metrics["per_class"], features[primary]["real"], reference.labels, features[primary]["fake"],
                                  fake.labels, class_names, primary, config.prdc_k, config.bootstrap, config.seed)
    metrics["verdict"] = decide(metrics, primary, primary_reason, read_utility(config.utility))
    metrics["training"] = _training_summary(fake_path) if fake_kind == "run" else None
    for space, d in distribution.items():
        warnings_out += [f"{space}: {w}" for w in d.get("warnings", [])]
    metrics["warnings"] = list(dict.fromkeys(warnings_out))

    figures = draw_figures(
        FigureInputs(reference, fake, train, features, mem_px, flagged, hist_real, hist_fake, real_mean, fake_mean,
                     run=fake_path if fake_kind == "run" else None),
        seed=config.seed, near_copy_threshold=mem_px["summary"]["threshold"],
    )
    lap("plots")
    metrics["timings_s"] = timings
    from medisynth.report import render_report

    with atomic_dir(Path(config.out), config.overwrite, "evaluation", (config.real, config.fake)) as tmp_out:
        (tmp_out / "plots").mkdir()
        for key, png in figures.items():
            if png:
                atomic_write_bytes(tmp_out / "plots" / f"{key.replace(':', '-')}.png", png)
        write_json(tmp_out / "metrics.json", metrics)
        atomic_write_text(tmp_out / "near_copies.csv", near_copies.to_csv(index=False))
        atomic_write_text(tmp_out / "report.html", render_report(metrics, figures))
    return metrics


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("medisynth")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "unknown"


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
    """The domain classifier's held-out accuracy against chance, on the test split: val chose its
    early-stopping epoch, which lifts its val accuracy above what the classifier really does."""
    if heldout_logits is None or not len(heldout_labels):
        return {**accuracy_vs_chance([], []), "split": None}
    pred = heldout_logits.argmax(axis=1)
    split = "test" if len(pred) > n_val else "val"
    sel = slice(n_val, None) if split == "test" else slice(None, n_val)
    return {**accuracy_vs_chance(heldout_labels[sel], pred[sel]), "split": split}


def read_utility(folder: Optional[Path]) -> Optional[dict]:
    """A `medisynth utility` report's utility.json (its ``verdict`` joins the class-true & useful answer)."""
    if folder is None:
        return None
    from medisynth.io import read_json

    path = Path(folder) / "utility.json"
    if not path.is_file():
        raise MedisynthError(f"--utility {folder}: no utility.json there; pass the --out folder of `medisynth utility`")
    return read_json(path)


def _per_class(reference: ImageSet, fake: ImageSet, class_names, per_class_dist, ssim, config) -> dict:
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
            else f"fewer than {config.min_class_samples} images in one of the sets ({n_real} real, {n_fake} synthetic)",
        }
    return out


def _training_summary(run: Path) -> dict:
    from medisynth.report.plots import read_loss_log

    series = read_loss_log(run)
    return {"run": str(run), "logged_keys": sorted(series), "final": {k: float(v[1][-1]) for k, v in series.items()}}


def _kind(key: str) -> str:
    return "fraction" if key in ("precision", "recall", "coverage") else "number"


def summary_lines(metrics: dict) -> list[str]:
    """The terminal summary: the verdict first, then the headline numbers beside their yardsticks."""
    num = format_number

    inp = metrics["inputs"]
    lines = verdict_lines(metrics["verdict"]) if metrics.get("verdict") else []
    lines.append(f"{inp['n_fake']} synthetic vs {inp['n_real']} real ({inp['real_split']}) images")
    for space, d in metrics["distribution"].items():
        y = d.get("yardstick") or {}
        if y.get("available"):  # the same-size figures, so synthetic and real-vs-real are comparable
            parts = [f"{k} {num(y['synthetic'][k], kind=_kind(k))} vs {num(y['real_vs_real'][k], kind=_kind(k))} ({num(y['ratio'][k], kind='ratio')})"
                     for k in ("fid", "kid_mean", "precision", "recall", "coverage") if y["synthetic"].get(k) is not None]
            parts.insert(0, f"synthetic vs real-vs-real at {y['n_per_set']} images:")
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
        lines.append(f"  domain classifier: accuracy {num(dc.get('value'), kind='fraction')} on {dc['n']} held-out {dc.get('split')} images, "
                     f"chance {num(dc.get('chance'), kind='fraction')}, p={num(dc.get('p_value'))}: no better than chance, its figures are uninformative")
    px = metrics["memorization"]["pixel"]
    lines.append(f"  copies of training images: {px['num_flagged']} ({num(px['fraction_flagged'], kind='fraction')}) at correlation "
                 f">= {num(px['threshold'])} (near_copies.csv); held-out real baseline "
                 f"{num(px['heldout_fraction_flagged'], kind='fraction')}; DCR ratio {num(px['dcr_ratio'])}")
    return lines
