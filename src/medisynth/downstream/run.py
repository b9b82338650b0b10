"""``medisynth utility``: do synthetic images help a classifier on real test images?

For each protocol and seed a classifier is trained (``medisynth.classifier``), early-stopped
on the real VAL split, and scored on the real TEST split. Seed i of every protocol uses the
same initialisation and batch-order seed, so protocols pair up seed by seed for the
significance tests (``stats.py``).
"""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from medisynth.defaults import UTILITY
from medisynth.errors import MedisynthError
from medisynth.outputs import check_output
from medisynth.downstream.data import (
    DEFAULT_PROTOCOLS,
    PROTOCOLS,
    ImageSet,
    RealData,
    WITH_SYNTHETIC,
    check_synthetic_classes,
    exact_copies,
    load_synthetic,
    load_real,
    protocol_data,
    recorded_top_up,
    with_external_test,
)
from medisynth.downstream.metrics import SCALAR_METRICS, classification_metrics, is_ordinal
from medisynth.report.format import format_number
from medisynth.training import distributed


@dataclass
class UtilityConfig:
    """A downstream-utility study (``medisynth utility``): which protocols, seeds and classifier recipe."""

    real: Path  # a prepared data set (train/val/test splits)
    out: Path  # report folder: utility.json, utility.md, utility.html, utility.png
    synthetic: Optional[Path] = None  # image folder (images/ + labels.csv); needed by synthetic protocols
    # a second prepared set, every image of which is the test set (an external test set: another site, or more
    # held-out images than ``real``'s test split); None: ``real``'s own test split
    test_data: Optional[Path] = None
    # what each classifier trains on (``PROTOCOLS``); None: DEFAULT_PROTOCOLS, without the synthetic
    # ones when no ``synthetic`` folder is given
    protocols: Optional[tuple[str, ...]] = None
    # the protocol with synthetic images that the verdict judges against the best baseline without them
    verdict_protocol: str = UTILITY["verdict_protocol"]
    seeds: int = UTILITY["seeds"]  # classifiers per protocol (paired over seeds)
    epochs: int = UTILITY["epochs"]  # classifier epochs
    batch_size: int = UTILITY["batch_size"]  # classifier batch size
    lr: float = UTILITY["lr"]  # classifier learning rate (AdamW)
    patience: int = UTILITY["patience"]  # early stopping: epochs without a better val balanced accuracy, once it is above chance
    time_budget_per_run_s: Optional[float] = None  # stop each classifier after this many seconds
    model: str = UTILITY["model"]  # or resnet18
    width: int = UTILITY["width"]  # small-resnet width
    weights: Optional[Path] = None  # local resnet18 weights
    device: str = UTILITY["device"]  # "auto", "cpu", "cuda", ...
    bootstrap: int = UTILITY["bootstrap"]  # paired bootstrap resamples on seed 0 (0: skip)
    overwrite: bool = False  # replace ``out`` when it exists
    progress: bool = True  # progress bars on a terminal


def _check(config: UtilityConfig) -> list[str]:
    if config.protocols is None:
        protocols = [p for p in DEFAULT_PROTOCOLS if config.synthetic is not None or p not in WITH_SYNTHETIC]
    else:
        protocols = list(dict.fromkeys(config.protocols))
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown or not protocols:
        raise MedisynthError(f"--protocols {','.join(config.protocols)}: unknown {', '.join(unknown) or '(empty)'}; "
                             f"choose from {', '.join(PROTOCOLS)}")
    if config.verdict_protocol not in WITH_SYNTHETIC:
        raise MedisynthError(f"--verdict-protocol {config.verdict_protocol!r}: the verdict judges a protocol with "
                             f"synthetic images; choose from {', '.join(WITH_SYNTHETIC)}")
    if config.seeds < 1 or config.epochs < 1 or config.batch_size < 1:
        raise MedisynthError("--seeds, --epochs and --batch-size must be at least 1")
    if config.model not in ("small-resnet", "resnet18"):
        raise MedisynthError(f"--model {config.model!r}: choose small-resnet or resnet18")
    if config.weights is not None and config.model != "resnet18":
        raise MedisynthError("--weights is for --model resnet18")
    if any(p in WITH_SYNTHETIC for p in protocols) and config.synthetic is None:
        raise MedisynthError(f"protocol(s) {', '.join(p for p in protocols if p in WITH_SYNTHETIC)} need --synthetic DIR")
    check_output(Path(config.out), config.overwrite, "utility", _inputs(config))
    return protocols


def _inputs(config: UtilityConfig) -> tuple[Optional[Path], ...]:
    """The folders the study reads, which its report folder must never be or lie above."""
    return config.real, config.synthetic, config.test_data


def _log(message: str, enabled: bool) -> None:
    if enabled and distributed.is_main():  # under torchrun one copy of each line: rank 0's
        print(message, file=sys.stderr, flush=True)


def run_utility(config: UtilityConfig) -> dict:
    """Train and score every protocol x seed; write the report; return the results dict.

    Under torchrun (``medisynth.training.distributed``) each classifier trains data-parallel over
    the ranks (``--batch-size`` is the global batch and must divide by their number); every rank
    holds the same models and results, and rank 0 alone prints progress and writes the report."""
    from medisynth.device import resolve_device
    from medisynth.downstream.report import write_report
    from medisynth.downstream.verdict import utility_verdict

    protocols = _check(config)
    device = distributed.setup(resolve_device(config.device))
    real = load_real(Path(config.real))
    if config.test_data is not None:
        real = with_external_test(real, Path(config.test_data))
    synthetic, top_up = None, None
    if config.synthetic is not None and any(p in WITH_SYNTHETIC for p in protocols):
        synthetic = load_synthetic(Path(config.synthetic), real.class_names, real.image_size, real.channels)
        top_up = recorded_top_up(Path(config.synthetic), real)  # a `medisynth balance` folder says what it added
        check_synthetic_classes(protocols, real, synthetic)  # now, not after the other protocols have trained

    results: dict = {
        "config": {**asdict(config), "protocols": protocols, "device": str(device)},
        "data": _data_record(real, synthetic, top_up),
        "runs": [],
    }
    results["notes"] = _input_notes(config, results["data"]["synthetic_exact_copies_of_real_val_test"])
    start = time.monotonic()
    predictions = _train_all(protocols, real, synthetic, config, device, top_up, results["runs"])
    if any(r["shortfall_per_class"] and any(r["shortfall_per_class"]) for r in results["runs"]):
        results["notes"].append("the synthetic folder had too few images of some class to top it up to the majority "
                                "count; see shortfall_per_class")
    results["summary"] = summarise(results["runs"], protocols, len(real.class_names))
    results["comparisons"] = _comparisons(results["runs"], protocols, predictions, real.test.labels, config.bootstrap)
    results["notes"] += _result_notes(config, protocols, real, synthetic, bool(results["comparisons"]))
    results["verdict"] = utility_verdict(results["runs"], protocols, config.verdict_protocol)
    results["seconds"] = round(time.monotonic() - start, 1)
    if distributed.is_main():
        write_report(results, Path(config.out), overwrite=config.overwrite, inputs=_inputs(config))
    return results


def _data_record(real: RealData, synthetic: Optional[ImageSet], top_up) -> dict:
    """What the study was run on: class counts per split, the synthetic set, exact copies of real images."""
    k = len(real.class_names)
    return {
        "class_names": real.class_names, "ordinal": is_ordinal(real.class_names),
        "real": {s: np.bincount(getattr(real, s).labels, minlength=k).tolist() for s in ("train", "val", "test")},
        "synthetic": np.bincount(synthetic.labels, minlength=k).tolist() if synthetic is not None else None,
        "top_up": "as recorded in balance.json" if top_up is not None else "to the majority class",
        "synthetic_exact_copies_of_real_val_test": (
            exact_copies(synthetic, real.val) + exact_copies(synthetic, real.test) if synthetic is not None else None),
        "synthetic_exact_copies_of_real_train": exact_copies(synthetic, real.train) if synthetic is not None else None,
    }


def _input_notes(config: UtilityConfig, copies_of_val_test: Optional[int]) -> list[str]:
    """The report's notes on what was given, before any training."""
    notes = []
    if config.model == "resnet18" and config.weights is None:  # said in the report, not only in the config
        notes.append("the resnet18 classifiers start from random weights (no --weights given): the "
                     "figures are those of an untrained resnet18, not of an ImageNet-pretrained one")
        _log("note: resnet18 without --weights trains from random weights", config.progress)
    if copies_of_val_test:
        notes.append(f"{copies_of_val_test} synthetic image(s) are exact copies of real "
                     "VAL/TEST images: the generator saw the evaluation images, so real+synthetic results are optimistic")
    if config.test_data is not None:
        notes.append(f"the test set is every image of {config.test_data} (an external test set), not the test split "
                     f"of {config.real}")
    if config.synthetic is None and config.protocols is None:
        notes.append("no --synthetic folder: only the protocols without synthetic images were run, and "
                     "the verdict cannot compare real + synthetic with them")
    return notes


def _train_all(protocols: list[str], real: RealData, synthetic: Optional[ImageSet], config: UtilityConfig, device,
               top_up, runs: list[dict]) -> dict[tuple[str, int], np.ndarray]:
    """Every protocol x seed under one progress bar; appends each run's record to ``runs`` and
    returns the test-set probabilities by (protocol, seed)."""
    from medisynth.progress import make_progress

    predictions: dict[tuple[str, int], np.ndarray] = {}
    total = len(protocols) * config.seeds
    bar = make_progress()
    bar.disable = bar.disable or not config.progress or not distributed.is_main()  # one bar: rank 0's
    say = (lambda message: bar.console.print(message, markup=False, highlight=False)) if not bar.disable \
        else (lambda message: _log(message, config.progress))
    with bar:
        # one bar and ETA over the whole study (protocol x seed x epoch); a run that stops early
        # jumps the bar past its remaining epochs
        study = bar.add_task("utility study", total=total * config.epochs, status="")
        for p_i, protocol in enumerate(protocols):
            for seed in range(config.seeds):
                run_no = p_i * config.seeds + seed + 1
                say(f"[{run_no}/{total}] {protocol} seed {seed}")
                bar.update(study, status=f"{protocol} seed {seed}")

                def on_epoch(record: dict, protocol=protocol, seed=seed) -> None:
                    bar.advance(study)
                    bar.update(study, status=f"{protocol} seed {seed} epoch {record['epoch']} loss {record['loss']:.3f}")

                record, proba = fit_protocol(protocol, seed, real, synthetic, config, device, top_up, say=say,
                                             on_epoch=on_epoch)
                bar.update(study, completed=run_no * config.epochs)
                predictions[(protocol, seed)] = proba
                runs.append(record)
    return predictions


def _comparisons(runs: list[dict], protocols: list[str], predictions: dict, y_test: np.ndarray, bootstrap: int) -> dict:
    """Each protocol against ``real``: paired tests over seeds, and seed 0's McNemar test and bootstrap CI."""
    from medisynth.downstream.stats import mcnemar_exact, paired_bootstrap_ci, paired_over_seeds

    comparisons = {}
    for protocol in protocols:
        if protocol == "real" or "real" not in protocols:
            continue
        comparison = {
            metric: paired_over_seeds(_values(runs, "real", metric), _values(runs, protocol, metric))
            for metric in SCALAR_METRICS
        }
        pred_a, pred_b = predictions[("real", 0)].argmax(1), predictions[(protocol, 0)].argmax(1)
        comparison["seed0_mcnemar"] = mcnemar_exact(y_test, pred_a, pred_b)
        if bootstrap:
            from sklearn.metrics import balanced_accuracy_score

            comparison["seed0_bootstrap_balanced_accuracy"] = paired_bootstrap_ci(
                y_test, pred_a, pred_b, balanced_accuracy_score, n_boot=bootstrap, seed=0)
        comparisons[f"{protocol} vs real"] = comparison
    return comparisons


def _result_notes(config: UtilityConfig, protocols: list[str], real: RealData, synthetic: Optional[ImageSet],
                  compared: bool) -> list[str]:
    """The report's notes on how far the results can be trusted."""
    notes = []
    if compared:
        notes.append(
            "the McNemar test and the bootstrap CI use seed 0's predictions only: they measure test-set sampling "
            "noise, not seed-to-seed training noise, so they are far more confident than the paired tests over seeds")
    if synthetic is not None and "synthetic" in protocols:
        missing = [name for c, name in enumerate(real.class_names) if not (synthetic.labels == c).any()]
        if missing:
            notes.append(f"the synthetic set has no images of class(es) {', '.join(missing)}: the "
                         "synthetic-only classifier cannot predict them")
    if config.seeds < 5:
        notes.append(
            f"{config.seeds} seeds per protocol give low statistical power: differences of a few points of balanced "
            "accuracy are within seed-to-seed noise; treat p-values as indicative and use --seeds 6 or more to decide")
    return notes


def fit_protocol(protocol: str, seed: int, real: RealData, synthetic: Optional[ImageSet], config: UtilityConfig,
                 device, top_up: Optional[tuple[np.ndarray, np.ndarray]] = None,
                 say: Optional[Callable[[str], None]] = None,
                 on_epoch: Optional[Callable[[dict], None]] = None) -> tuple[dict, np.ndarray]:
    """Train one classifier of the study (``protocol``, ``seed``) and score it on the real test split.

    Returns (the run's record, its test-set class probabilities). Seed ``seed`` fixes the
    initialisation and batch order whatever the protocol, so records of one seed pair up. ``top_up``:
    the per-class counts a ``medisynth balance`` folder recorded (``recorded_top_up``).
    Also used by ``benchmarks/bench_quality.py``, so the benchmark's utility figure is this study's.
    ``say`` prints a line (default: stderr when ``config.progress``); with ``on_epoch`` (the study's
    own progress bar) the classifier shows no bar of its own. The record's ``chance`` is the test
    balanced accuracy against chance, 1/K (``medisynth.metrics.chance``, permutation test).
    """
    import torch

    from medisynth.classifier import build_classifier, predict_proba, train_classifier
    from medisynth.metrics.chance import accuracy_vs_chance

    if say is None:
        def say(message: str) -> None:
            _log(message, config.progress)

    k = len(real.class_names)
    data = protocol_data(protocol, real, synthetic, seed, top_up=top_up)
    if len(data.train) < 2:
        raise MedisynthError(f"protocol {protocol!r}: only {len(data.train)} training image(s)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_classifier(config.model, real.channels, k, config.width, config.weights,
                                 image_size=real.image_size)
    say(f"    {len(data.train)} train images ({int(data.train.synthetic.sum())} synthetic)")
    model, history = train_classifier(
        data.train.images, data.train.labels, k, val=(data.val.images, data.val.labels),
        epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, seed=seed, device=device,
        augment=data.augment, class_balanced=data.class_balanced, class_weighted=data.class_weighted,
        draw_weights=data.draw_weights,
        patience=config.patience, time_budget_s=config.time_budget_per_run_s, model=model,
        progress=config.progress and on_epoch is None, description=f"{protocol} s{seed}", on_epoch=on_epoch,
        # every protocol trains the same steps: an epoch draws as many images as the real training split holds,
        # so real + synthetic is not credited for what a longer training of the oversampled baseline would give
        epoch_size=len(real.train),
    )
    proba = predict_proba(model, data.test.images, device=device)
    metrics = classification_metrics(data.test.labels, proba, k, ordinal=is_ordinal(real.class_names))
    chance = accuracy_vs_chance(data.test.labels, proba.argmax(1), metric="balanced", seed=seed)
    record = {
        "protocol": protocol, "seed": seed, "metrics": metrics, "chance": chance,
        "train_images": len(data.train), "train_synthetic": int(data.train.synthetic.sum()),
        "added_per_class": data.added_per_class, "shortfall_per_class": data.shortfall_per_class,
        "best_epoch": history["best_epoch"], "epochs_run": len(history["epochs"]), "steps": history["steps"],
        "stopped": history["stopped"], "seconds": history["seconds"],
        "best_val_balanced_accuracy": history["best_val_balanced_accuracy"],
    }
    say(f"    test balanced accuracy {format_number(metrics['balanced_accuracy'], kind='fraction')} "
        f"({'above' if chance['better_than_chance'] else 'NOT above'} chance {format_number(chance['chance'], kind='fraction')}, "
        f"p = {format_number(chance['p_value'])}; accuracy {format_number(metrics['accuracy'], kind='fraction')}), stopped by {history['stopped']} after {len(history['epochs'])} "
        f"epoch(s), {history['seconds']:.0f}s")
    return record, proba


def _values(runs: list[dict], protocol: str, metric: str) -> list[float]:
    out = []
    for r in sorted((r for r in runs if r["protocol"] == protocol), key=lambda r: r["seed"]):
        v = r["metrics"][metric]
        out.append(float("nan") if v is None else float(v))
    return out


def summarise(runs: list[dict], protocols: list[str], num_classes: int) -> dict:
    """Per protocol and metric: mean, std (ddof=1) and per-seed values (None where undefined)."""
    summary: dict = {}
    for protocol in protocols:
        entry: dict = {}
        for metric in SCALAR_METRICS:
            values = np.array(_values(runs, protocol, metric))
            finite = values[~np.isnan(values)]
            entry[metric] = {
                "mean": float(finite.mean()) if len(finite) else None,
                "std": float(finite.std(ddof=1)) if len(finite) > 1 else None,
                "values": [None if np.isnan(v) else float(v) for v in values],
            }
        recalls = np.array([[np.nan if v is None else v for v in r["metrics"]["per_class_recall"]]
                            for r in runs if r["protocol"] == protocol], dtype=float)
        entry["per_class_recall_mean"] = [
            None if np.isnan(recalls[:, c]).all() else float(np.nanmean(recalls[:, c])) for c in range(num_classes)]
        summary[protocol] = entry
    return summary
