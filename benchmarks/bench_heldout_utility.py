#!/usr/bin/env python3
"""bench_quality's utility figure for its phantom records, scored again on a large class-balanced held-out set.

Why: the phantom set's own test split (15% of 1,000 images in EyePACS proportions) holds 2 and 3 images of grades 3
and 4, so one image moves a classifier's balanced accuracy by 0.07-0.1 and the paired differences in bench_quality's
table are mostly that noise. The phantom can draw as many new eyes as wanted: this script draws ``--per-class`` fresh
ones per grade (phantom seed 1; the benchmark's set was drawn with seed 0, and an image depends only on the seed, its
index and its grade, so no eye is shared), prepares them as the benchmark prepared its set, and trains the three
utility classifiers of each record again (oversampling, synthetic top-up, balanced mix: bench_quality's recipe,
protocol and seed) with that set as the test split. Training and validation data are the benchmark's, unchanged.

The generators are not trained again: each record's run folder under ``--work`` is sampled again with the record's
seed and per-class counts (sampling is reproducible), so the synthetic images are the record's own. A record whose run
folder is gone, or holds a later run of the same tag (its step count differs), is named and skipped.

Results go to ``--results`` (JSON, records keyed like bench_quality's); ``--table`` prints the markdown table and
writes it beside the results.

    python benchmarks/bench_heldout_utility.py --work /tmp/bq --models fastgan,cgan --seeds 0,1,2
    python benchmarks/bench_heldout_utility.py --table
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np

from medisynth.errors import MedisynthError

HERE = Path(__file__).resolve().parent
SCHEMA = "medisynth.bench_heldout_utility/1"
PHANTOM_SEED = 1  # the benchmark's phantom set is seed 0


def load_bench_quality():
    """bench_quality.py as a module (it is a script beside this one, not part of the package)."""
    if "bench_quality" in sys.modules:
        return sys.modules["bench_quality"]
    spec = importlib.util.spec_from_file_location("bench_quality", HERE / "bench_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = load_bench_quality()
log = bench.log
PROTOCOLS = bench.UTILITY_FIGURES  # the record's utility keys -> the utility study's protocols (bench_quality's three)


def prepare_heldout(work: Path, training_root: Path, per_class: int, size: int) -> Path:
    """``per_class`` fresh phantom eyes per grade, prepared like ``training_root`` (its splits are not used: every
    image is a test image, ``medisynth utility --test-data``)."""
    import medisynth as ms

    class_names = ms.Manifest.load(training_root).class_names
    out = work / "data" / f"phantom-heldout-s{PHANTOM_SEED}-{per_class}x{len(class_names)}-{size}px"
    if (out / "manifest.json").is_file():
        return out
    source = work / "data" / f"phantom-heldout-s{PHANTOM_SEED}-{per_class}x{len(class_names)}-source"
    if not (source / "labels.csv").is_file():
        log(f"drawing {per_class} fresh phantom eyes per grade -> {source}")
        ms.generate_fundus_dataset(source, n=per_class * len(class_names), size=max(size, 64), seed=PHANTOM_SEED,
                                   proportions=[1] * len(class_names), overwrite=True)
    log(f"preparing {source} at {size} px -> {out}")
    ms.prepare(ms.PrepareConfig(source=source, out=out, size=size, channels=3, seed=0, classes=list(class_names),
                                workers=1))
    return out


def load_results(path: Path) -> dict:
    from medisynth.io import read_json

    if not path.is_file():
        return {"schema": SCHEMA, "records": [], "baselines": {}}
    results = read_json(path)
    if results.get("schema") != SCHEMA:
        raise MedisynthError(f"--results {path}: not a bench_heldout_utility results file; choose another --results")
    return results


def save(path: Path, update) -> None:
    """Re-read the results under bench_quality's lock, apply ``update`` to them, write atomically."""
    from medisynth.io import write_json

    with bench.results_lock(path):
        results = load_results(path)
        update(results)
        write_json(path, results)


def run_record(record: dict, real, heldout_hash: str, config, work: Path, results_path: Path, device,
               rescore: bool = False) -> None:
    import medisynth as ms
    from medisynth.classifier import CLASSIFIER_VERSION
    from medisynth.downstream.data import load_synthetic
    from medisynth.io import read_json
    from medisynth.runs import Run
    from medisynth.training.checkpoint import STATE_JSON

    seed, minutes = int(record["seed"]), float(record["budget_minutes"])
    tag = f"{record['data']}/{record['model']}/{minutes:g}min-{record['device_kind']}-s{seed}"
    run_dir = work / "runs" / tag
    if not (run_dir / "config.json").is_file():
        log(f"{tag}: its run folder {run_dir} is gone; skipped")
        return
    steps = read_json(Run(run_dir).latest_checkpoint() / STATE_JSON)["step"]
    if steps != record["train"]["steps"]:
        log(f"{tag}: {run_dir} holds a run of {steps} steps, the record {record['train']['steps']}; skipped")
        return
    kept = {}
    if rescore:  # the earlier held-out record of this run keeps every figure whose classifier did not stop at chance
        earlier = [r for r in load_results(results_path)["records"] if bench.record_key(r) == bench.record_key(record)
                   and r["heldout_hash"] == heldout_hash and r["steps"] == steps]
        kept = {key: figure for key, figure in (earlier[0]["utility"] if earlier else {}).items()
                if not bench.stopped_at_chance(figure, real)}
        if len(kept) == len(PROTOCOLS):
            log(f"{tag}: no classifier of its held-out record stopped at chance; kept")
            return

    def oversampled() -> dict:  # one per held-out set, seed and classifier recipe, kept in the results file
        from medisynth.downstream.run import fit_protocol

        key = f"{heldout_hash[:16]}-v{CLASSIFIER_VERSION}-s{seed}"
        cached = load_results(results_path)["baselines"].get(key)
        if cached is not None:
            return cached
        log(f"held-out set: oversampling classifier, seed {seed}")
        figure, _ = fit_protocol(PROTOCOLS["oversampled"], seed, real, None, config, device)

        def add_baseline(results: dict) -> None:
            results["baselines"][key] = figure

        save(results_path, add_baseline)
        return figure

    def synthetic():  # the record's own images: its run folder sampled again with its seed and counts
        sample_dir = work / "samples-heldout" / tag
        ms.sample(ms.SampleConfig(run=run_dir, out=sample_dir, per_class=record["sample"]["per_class"], seed=seed,
                                  device=str(device), progress=False, overwrite=True))
        return load_synthetic(sample_dir, real.class_names, real.image_size, real.channels)

    utility = bench.train_figures(real, synthetic, seed, config, device, oversampled, f"{tag} (held-out set)", kept)
    accuracy = {key: u["metrics"]["balanced_accuracy"] for key, u in utility.items()}
    heldout = {
        "model": record["model"], "data": record["data"], "budget_minutes": minutes, "seed": seed,
        "device_kind": record["device_kind"], "data_hash": record["data_hash"], "heldout_hash": heldout_hash,
        "test_counts": np.bincount(real.test.labels, minlength=len(real.class_names)).tolist(),
        "steps": steps, "source_commit": record.get("commit"), "commit": bench.git_commit(),
        "classifier_version": CLASSIFIER_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "measures": {f"{key}_balanced_accuracy": value for key, value in accuracy.items()},
        "utility": utility,
    }

    def add_record(results: dict) -> None:  # replacing an earlier one of the same key
        key = bench.record_key(heldout)
        results["records"] = [r for r in results["records"] if bench.record_key(r) != key] + [heldout]

    save(results_path, add_record)
    log(f"{tag}: oversampled {accuracy['oversampled']:.3f}, real + synthetic {accuracy['real_synthetic']:.3f}, "
        f"balanced mix {accuracy['balanced_mix']:.3f}")


def make_table(results: dict) -> str:
    """One row per (data, budget, model): balanced accuracies mean +- std over seeds, and both differences from
    oversampling with their 95% paired-t intervals (bench_quality's own cells)."""
    groups: dict = {}
    for r in results["records"]:
        groups.setdefault((r["data"], float(r["budget_minutes"]), r["model"]), []).append(r)
    lines = ["| data | minutes | model | seeds | held-out test images | bal. acc. oversampled | bal. acc. real+synthetic "
             "| bal. acc. balanced mix | Δ real+synthetic (95% CI) | Δ balanced mix (95% CI) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for (data, minutes, model), rows in sorted(groups.items()):
        rows = sorted(rows, key=lambda r: r["seed"])
        cells = [bench._mean_std([r["measures"][f"{k}_balanced_accuracy"] for r in rows], 3)
                 for k in ("oversampled", "real_synthetic", "balanced_mix")]
        lines.append(f"| {data} | {minutes:g} | {model} | {', '.join(str(r['seed']) for r in rows)} | "
                     f"{' / '.join(map(str, rows[0]['test_counts']))} | {' | '.join(cells)} | "
                     f"{bench._paired_difference(rows, 'real_synthetic')} | "
                     f"{bench._paired_difference(rows, 'balanced_mix')} |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench_quality_work"),
                        help="bench_quality's --work folder (its data, run folders and judge cache)")
    parser.add_argument("--bench-results", type=Path, default=HERE / "results" / "bench_quality.json",
                        help="bench_quality's results file: the records to score again")
    parser.add_argument("--results", type=Path, default=HERE / "results" / "bench_heldout_utility.json")
    parser.add_argument("--models", default="fastgan,cgan", help="bench_quality model keys")
    parser.add_argument("--seeds", default="0,1,2", help="e.g. 0,1,2 or 3 (= 0,1,2)")
    parser.add_argument("--minutes", type=float, default=10.0, help="the records' training budget")
    parser.add_argument("--per-class", type=int, default=200, help="held-out images per grade")
    parser.add_argument("--data", default="phantom", choices=["phantom", "phantom-smoke"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--smoke", action="store_true", help="the classifiers' smoke recipe (bench_quality --smoke)")
    parser.add_argument("--rescore", action="store_true",
                        help="train again only the classifiers of existing held-out records that stopped at chance "
                             "(early stopping before CLASSIFIER_VERSION 4); keep the others")
    parser.add_argument("--table", action="store_true", help="print and write the table only")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    return bench.run_main(build_parser(), run, argv)


def run(args) -> int:
    import torch

    import medisynth as ms
    from medisynth.device import resolve_device
    from medisynth.downstream.data import load_real, with_external_test

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.per_class < 1:
        raise MedisynthError(f"--per-class {args.per_class}: give at least 1 held-out image per grade")
    models, seeds = bench.parse_list(args.models, list(bench.MODELS), "--models"), bench.parse_seeds(args.seeds)
    per_class = [m for m in models if bench.MODELS[m].per_class]
    if per_class:
        raise MedisynthError(f"--models {','.join(per_class)}: one generator per class; this script scores "
                             "conditional models (one run folder per record) only")
    results = load_results(args.results)  # a wrong --results fails now, before any training
    if args.table:
        table = make_table(results)
        print(table)
        from medisynth.io import atomic_write_text

        atomic_write_text(args.results.with_suffix(".md"), table)
        return 0
    settings = bench.Settings(minutes=args.minutes)
    if args.smoke:  # bench_quality --smoke's set and classifiers
        settings = bench.smoke_settings(settings)
    device = resolve_device(args.device)
    training_root = bench.prepare_data(args.data, args.work, settings, None)
    heldout_root = prepare_heldout(args.work, training_root, args.per_class, settings.size)
    real = with_external_test(load_real(training_root), heldout_root)
    log(f"{args.data}: train {np.bincount(real.train.labels, minlength=len(real.class_names)).tolist()}, "
        f"held-out test {np.bincount(real.test.labels, minlength=len(real.class_names)).tolist()}")
    training_hash = ms.Manifest.load(training_root).content_hash
    heldout_hash = ms.Manifest.load(heldout_root).content_hash
    config = bench.utility_config(training_root, settings, args.work)
    records = [r for r in bench.load_results(args.bench_results)["records"]
               if r["data"] == args.data and r["model"] in models and int(r["seed"]) in seeds
               and bench.record_budget(r) == bench.settings_budget(settings) and r["device_kind"] == device.type
               and not r.get("not_judged")]
    for record in sorted(records, key=lambda r: (r["model"], r["seed"])):
        if record["data_hash"] != training_hash:
            log(f"{record['model']} seed {record['seed']}: trained on other data than {training_root}; skipped")
            continue
        run_record(record, real, heldout_hash, config, args.work, args.results, device, rescore=args.rescore)
    if not records:
        log(f"no records of {', '.join(models)} on {args.data} at {settings.minutes:g} min in {args.bench_results}")
    print(make_table(load_results(args.results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
