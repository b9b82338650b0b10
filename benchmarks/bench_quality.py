#!/usr/bin/env python3
"""The benchmark that decides which generator medisynth recommends: every model, the same data,
the same wall-clock budget, judged by measures none of which uses the generator's own networks.

Protocol (README, "Which generator? The quality benchmark"; every run and variant: docs/bench_quality.md):
- data (``--data``): ``ct``, the CT kidney set prepared at 64 px grayscale and made imbalanced the
  way real data is (Stone and Tumor cut to 30 TRAINING images each, seeded; val/test untouched);
  ``phantom``, the fundus phantom (EyePACS grade proportions) prepared at 64 px RGB; ``pneumonia``,
  PneumoniaMNIST's chest X-rays (28 px) prepared at 64 px grayscale with 30 normal and 300 pneumonia
  TRAINING images (seeded; val/test untouched): real images whose test split comes from the same
  source as the training split, so the utility figure can answer where the CT set's cannot.
- models (``--models``): ``dcgan``, ``wgan-gp`` and ``lkgan-small`` one model per class (the budget
  split over the classes, so the total is the same), ``cgan``, ``fastgan``, ``conv-cvae``, and
  ``diffusion`` with its DDPM recipe and with ``--hp recipe=edm``. A model this checkout does not
  have is listed with a one-line note, in the log and in the table, never dropped.
- each (model, data, seed): ``medisynth.train`` for ``--minutes`` of wall clock (or ``--steps``
  optimisation steps: the same training at any machine load, for comparing variants), then
  ``medisynth.sample`` per class: as many images as the class has real training images (the
  evaluation set, in the real class proportions) or as many as it needs to reach the largest class
  (the top-up for the utility figure), whichever is more.
- measures, in ONE feature space per data set: the penultimate layer of medisynth's domain
  classifier (``medisynth.classifier.domain_classifier``: a SmallResNet trained once on the real
  training split, cached under ``--work``):
  KID and precision/recall (k = 5) of the evaluation set against the real training split;
  CAS, that classifier's accuracy and balanced accuracy on every synthetic image (label = the class
  asked for), beside its accuracy on the real test split;
  near-copy share, the fraction of synthetic images the copy detector (``medisynth sample
  --max-similarity``) flags against the training split, beside the same share for real test images;
  detectability, how often a logistic regression on those features tells the evaluation set from
  the real training split (``medisynth.metrics.detectability``; 0.5 = indistinguishable), beside the
  same figure for the real test split;
  utility, the utility study's classifier (``medisynth.downstream.run.fit_protocol``) trained on the
  real training split with class-balanced oversampling (``real-balanced``) against the same
  classifier, same seed, trained on the real training split topped up with synthetic images to the
  largest class (``real+synthetic``); both scored on the REAL test split. The seed fixes the
  generator's training, its sampling and the classifiers, so the two protocols pair up per seed;
  the table gives the mean difference in balanced accuracy and its 95% paired-t interval. The same
  classifier is also trained on the balanced mix (``real-balanced+synthetic``: every class drawn
  equally, half of each class's draws synthetic), which takes away the cue a top-up gives (only the
  small classes have synthetic images), and its difference from oversampling is given the same way.
- a record whose sampling would take longer than ``--max-sampling-minutes`` (estimated from a first
  batch of about 64 images spread over the classes; default 60) is saved as "not judged", with the
  estimate, its steps and a grid of that first batch, and the table says so in its row: on a CPU
  the diffusion models' 18-35 network passes per image put a full run out of reach otherwise.
- the control row ``augmented-real`` trains nothing: its "synthetic" images are classic augmentations
  (flips, rotations, brightness and contrast jitter: the utility study's ``real-aug``) of the class's real
  training images, as many as a generator samples, judged by every measure. A generator whose utility
  figures are not above the control's adds nothing a flip and a rotation of the real images would not.
- a "real test split" row scores the real held-out images with the same measures: the figures a
  perfect generator would approach.

Results accumulate in ``--results`` (JSON, one record per model x data x budget x seed x device
kind); ``--table`` writes the markdown table (mean +- std over seeds) beside it and prints it, and a
labelled sample grid per model (one row per class) lies in ``grids/`` beside it. ``--readme README.md``
also puts the table between that file's table markers, its grid links made relative to it.

    python benchmarks/bench_quality.py --models cgan,dcgan --data ct --minutes 2 --seeds 2
    python benchmarks/bench_quality.py --device cuda --minutes 1                # every model, every set
    python benchmarks/bench_quality.py --table                                  # the table only
    python benchmarks/bench_quality.py --table --readme README.md               # ... and into the README
    python benchmarks/bench_quality.py --rescore --data ct --minutes 10         # re-judge saved samples, no training
    python benchmarks/bench_quality.py --models fastgan --data phantom --steps 3000   # a step budget
    python benchmarks/bench_quality.py --smoke --work /tmp/bq                   # ~1 min end to end
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import io
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from medisynth.errors import MedisynthError  # cheap: `import medisynth` loads nothing else eagerly

REPO = Path(__file__).resolve().parents[1]
SCHEMA = "medisynth.bench_quality/1"


@dataclass(frozen=True)
class RealCut:
    """A real data set of ../shared/data made small and imbalanced the way real data is: the training images of
    some classes cut (seeded), val and test exactly the full set's."""

    folder: str  # its folder under the shared data
    channels: int
    keep: tuple[tuple[str, int], ...]  # (class, training images kept); the other classes keep all of theirs
    names: tuple[tuple[str, str], ...] = ()  # (the source's class name, the name the table shows)

    def renamed(self, name: str) -> str:
        return dict(self.names).get(name, name)


REAL_SETS = {
    # the set: Stone and Tumor cut to 30 training images each, Cyst and Normal keep theirs (216, 248)
    "ct": RealCut("CT_Kidney_Normal_Cyst_Tumor_Stone", 1, (("Stone", 30), ("Tumor", 30))),
    # chest X-rays (MedMNIST, 28 px): a few hundred training images, one in eleven normal; unlike the CT set its
    # test split comes from the same source as its training split, so the utility figure can answer
    "pneumonia": RealCut("PneumoniaMNIST", 1, (("normal", 30), ("pneumonia", 300)),
                         names=(("0", "normal"), ("1", "pneumonia"))),
}
DATA_SETS = ("ct", "phantom", "pneumonia")
REAL_ROW = "real test split"
MIX_PROTOCOL = "real-balanced+synthetic"  # the balanced mix (medisynth.downstream.data.SYNTHETIC_SHARE)
#: a record's three utility classifiers -> the utility study's protocols (also bench_heldout_utility.py's)
UTILITY_FIGURES = {"oversampled": "real-balanced", "real_synthetic": "real+synthetic", "balanced_mix": MIX_PROTOCOL}
KID_SUBSETS, KID_SUBSET_SIZE, PRDC_K = 100, 1000, 5  # evaluate's defaults
PROBE_IMAGES = 64  # the first batch that times sampling (medisynth.sample's default batch size)


@dataclass(frozen=True)
class BenchModel:
    """One row of the table: a medisynth model, how it is trained, and its hyper-parameter overrides."""

    key: str
    model: Optional[str]  # None: the control row, no generator (AUGMENTED_REAL)
    per_class: bool = False
    hyper: tuple[tuple[str, object], ...] = ()
    batch_size: Optional[int] = None  # None: the model's default (fastgan 8, the others 64)
    class_draws: str = "uniform"  # how training batches draw classes (TrainConfig.class_draws)
    cpu_amp: bool = False  # bf16 autocast on the CPU (TrainConfig.cpu_amp)

    def hyper_dict(self) -> dict:
        return dict(self.hyper)


#: the control row: no generator. Its "synthetic" images are the utility study's classic augmentation (``real-aug``:
#: flips, rotations up to 15 degrees, brightness and contrast jitter) of the class's real training images, as many as
#: a generator samples, judged by every measure. A generator whose images do no better in the utility columns adds
#: nothing to a classifier that flipping and rotating the real images would not
AUGMENTED_REAL = "augmented-real"

#: fastgan's default until session 17 (every layer sees the class): the fastgan variants were measured on it and keep it
EVERY_LAYER = ("class_from", 4)
#: fastgan's default in session 17 (the last two resolutions see the class)
LAST_TWO = ("class_from", -2)

MODELS = {m.key: m for m in (
    BenchModel("dcgan", "dcgan", per_class=True),
    BenchModel("cgan", "cgan"),
    # its defaults are the demo's few-minute recipe (width 8, batch 8; the class in the last resolution only)
    BenchModel("fastgan", "fastgan"),
    BenchModel("fastgan-every-layer", "fastgan", hyper=(EVERY_LAYER,)),
    BenchModel("fastgan-sqrt", "fastgan", hyper=(EVERY_LAYER,), class_draws="sqrt"),  # classes by sqrt of size
    BenchModel("fastgan-balanced", "fastgan", hyper=(EVERY_LAYER,), class_draws="balanced"),  # equally often
    BenchModel("fastgan-mbstd", "fastgan", hyper=(EVERY_LAYER, ("mbstd_group", 4))),  # D sees the spread of groups of 4
    # mode-seeking pairs compared after standardising each image: they must differ in layout, not tone
    BenchModel("fastgan-msstruct", "fastgan", hyper=(EVERY_LAYER, ("mode_seeking_on", "structure"))),
    # unconditional for 1,000 steps, conditional from 2,000 (about a third of the 10-minute CPU budget each)
    BenchModel("fastgan-transition", "fastgan", hyper=(EVERY_LAYER, ("condition_ramp", (1000, 2000)))),
    # session 17's default (the class in the last two resolutions), and the minibatch-std discriminator on it
    BenchModel("fastgan-last-two", "fastgan", hyper=(LAST_TWO,)),
    BenchModel("fastgan-last-two-mbstd", "fastgan", hyper=(LAST_TWO, ("mbstd_group", 4))),
    # per-pixel noise in the two-conv blocks (the paper's code): scattered lesions drawn at random, not on a grid
    BenchModel("fastgan-noise", "fastgan", hyper=(("noise", True),)),
    # bilinear x2 upsampling in the generator: lesions not drawn on the grid of nearest-upsampled features
    BenchModel("fastgan-bilinear", "fastgan", hyper=(("upsample", "bilinear"),)),
    # twice the channels in G and D (width 16: 32 at 64 px instead of 16): more capacity, fewer steps in the budget
    BenchModel("fastgan-wide", "fastgan", hyper=(("width", 16),)),
    # a [1, 2, 1] blur before each of D's stride-2 convs (anti-aliased downsampling)
    BenchModel("fastgan-dblur", "fastgan", hyper=(("d_blur", True),)),
    # at least 32 channels everywhere: the 32 and 64 px layers of G and D twice as wide, the coarse ones as before
    BenchModel("fastgan-fine32", "fastgan", hyper=(("min_channels", 32),)),
    # the LeCam regulariser at the paper's weight with DiffAugment: D's logits kept near the moving averages
    BenchModel("fastgan-lecam", "fastgan", hyper=(("lecam", 0.3),)),
    # a second, local adversarial output: a hinge at each position of D's 16x16 features (PatchGAN-like patches)
    BenchModel("fastgan-local", "fastgan", hyper=(("local_weight", 1.0),)),
    # Adam without momentum in its first moment, as StyleGAN2 and ADA train (betas 0, 0.99)
    BenchModel("fastgan-beta0", "fastgan", hyper=(("betas", (0.0, 0.99)),)),
    # DiffAugment's translation and cutout without its colour transforms: in session 27's 20- and 45-minute runs the
    # colour shifts looked like they leaked into G (pale frames) once ADA's p passed 0.4; without them arcades came sooner
    # (session 28, five seeds: not better, off; its records are in results/avx2/, docs/bench_quality.md)
    BenchModel("fastgan-no-color", "fastgan", hyper=(("diffaugment", "translation,cutout"),)),
    # the default recipe in bf16 on the CPU (--cpu-amp): more steps in the wall clock, each in lower precision
    BenchModel("fastgan-cpu-amp", "fastgan", cpu_amp=True),
    BenchModel("wgan-gp", "wgan-gp", per_class=True),
    BenchModel("lkgan-small", "lkgan-small", per_class=True),
    BenchModel("conv-cvae", "conv-cvae"),
    BenchModel("diffusion-ddpm", "diffusion"),
    BenchModel("diffusion-edm", "diffusion", hyper=(("recipe", "edm"),)),
    BenchModel(AUGMENTED_REAL, None),
)}


@dataclass
class Settings:
    """Everything a record depends on besides (model, data, seed); written into each record."""

    minutes: float = 10.0
    steps: Optional[int] = None  # a budget of optimisation steps instead of minutes (None: the wall clock)
    device: str = "auto"
    phantom_n: int = 1000
    size: int = 64
    domain_epochs: int = 30
    classifier_width: int = 32  # SmallResNet width of the judge and the utility classifiers (their default)
    clf_epochs: int = 30  # the utility study's defaults
    clf_patience: int = 10
    clf_minutes: Optional[float] = None
    sampling_steps: Optional[int] = None  # diffusion sampling steps (None: the model's default)
    max_sampling_minutes: Optional[float] = 60.0  # a record whose sampling would take longer is not judged (None: no limit)
    smoke: bool = False
    extra_hyper: dict = field(default_factory=dict)  # smoke: small networks


def smoke_settings(settings: Settings) -> Settings:
    """``settings`` for ``--smoke`` (a tiny phantom set, seconds of training, small classifiers; also
    bench_heldout_utility.py's ``--smoke``)."""
    return replace(settings, minutes=0.05, phantom_n=100, size=32, domain_epochs=2, classifier_width=8, clf_epochs=2,
                   clf_patience=2, smoke=True, extra_hyper={"cgan": {"width": 16}, "dcgan": {"width": 16}})


def settings_budget(settings: Settings) -> tuple[str, float]:
    """What each model's training is given: ("steps", N) under ``--steps``, else ("minutes", M)."""
    return ("steps", float(settings.steps)) if settings.steps else ("minutes", float(settings.minutes))


def record_budget(record: dict) -> tuple[str, float]:
    """A record's budget as ``settings_budget`` gives it (records made before ``--steps`` are all minutes)."""
    if record.get("budget_steps"):
        return "steps", float(record["budget_steps"])
    return "minutes", float(record["budget_minutes"])


def budget_text(budget: tuple[str, float]) -> str:
    """'10 min' or '4,000 steps'."""
    kind, amount = budget
    return f"{amount:g} min" if kind == "minutes" else f"{int(amount):,} steps"


def budget_tag(budget: tuple[str, float]) -> str:
    """The budget in folder and file names: ``budget_text`` without spaces or commas, '10min' or '4000steps'."""
    return budget_text(budget).replace(",", "").replace(" ", "")


def log(message: str) -> None:
    print(f"[bench_quality] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ availability
def unavailable_reason(bench: BenchModel) -> Optional[str]:
    """Why this checkout cannot train ``bench`` (None when it can): checked before any work is done."""
    import dataclasses

    import medisynth as ms

    if bench.model is None:
        return None  # the control row: nothing to train
    if bench.model not in ms.MODEL_REGISTRY:
        return f"model {bench.model!r} is not registered in this checkout"
    fields = {f.name for f in dataclasses.fields(ms.MODEL_REGISTRY[bench.model].Hyper)}
    missing = [k for k in bench.hyper_dict() if k not in fields]
    if missing:
        return f"{bench.model} has no hyper-parameter {', '.join(missing)} in this checkout"
    return None


# ------------------------------------------------------------------------------------------ data
def shared_data_dir() -> Path:
    return Path(os.environ.get("MEDISYNTH_SHARED_DATA") or REPO.parent / "shared" / "data")


def prepare_data(name: str, work: Path, settings: Settings, sources: dict[str, Optional[Path]]) -> Path:
    """The prepared data set ``name`` under WORK/data (made once, then reused); ``sources`` names the folder of a
    real set where it is not under the shared data."""
    if name in REAL_SETS:
        cut = REAL_SETS[name]
        return prepare_cut(name, cut, work / "data", settings.size, sources.get(name) or shared_data_dir() / cut.folder)
    if name == "phantom":
        return prepare_phantom(work / "data", settings.phantom_n, settings.size, proportions=None)
    if name == "phantom-smoke":
        return prepare_phantom(work / "data", settings.phantom_n, settings.size, proportions=(8, 4, 2, 2, 2))
    raise MedisynthError(f"--data {name!r}: choose from {', '.join(DATA_SETS)}")


def _is_prepared(folder: Path) -> bool:
    return (folder / "manifest.json").is_file()


def prepare_phantom(root: Path, n: int, size: int, proportions) -> Path:
    import medisynth as ms

    tag = "eyepacs" if proportions is None else "p" + "-".join(map(str, proportions))
    out = root / f"phantom-{tag}-n{n}-{size}px"
    if _is_prepared(out):
        return out
    source = root / f"phantom-{tag}-n{n}-source"
    if not (source / "labels.csv").is_file():
        log(f"drawing {n} phantom fundus images -> {source}")
        ms.generate_fundus_dataset(source, n=n, size=max(size, 64), seed=0, proportions=proportions, overwrite=True)
    log(f"preparing {source} at {size} px -> {out}")
    ms.prepare(ms.PrepareConfig(source=source, out=out, size=size, channels=3, seed=0, workers=1))
    return out


def prepare_cut(name: str, cut: RealCut, root: Path, size: int, source: Path) -> Path:
    """The real set ``source`` at ``size`` px with ``cut``'s classes cut to their training counts.

    Prepared once whole (so val/test are exactly the full set's), written out as an image folder
    whose labels.csv fixes every image's split, with the cut applied to the train rows, and prepared
    again: ``medisynth prepare`` keeps a ``split`` column.
    """
    import pandas as pd

    import medisynth as ms
    from medisynth.io import atomic_dir, write_png

    tag = "-".join(f"{c}{k}" for c, k in sorted(cut.keep))
    out = root / f"{name}-{size}px-{tag}"
    if _is_prepared(out):
        return out
    if not source.exists():
        raise MedisynthError(f"--{name}-source {source}: not found; point it at the {cut.folder} folder "
                             f"(or set MEDISYNTH_SHARED_DATA), or leave {name} out of --data")
    full = root / f"{name}-{size}px-full"
    if not _is_prepared(full):
        log(f"preparing {source} at {size} px -> {full}")
        ms.prepare(ms.PrepareConfig(source=source, out=full, size=size, channels=cut.channels, seed=0, workers=1))
    data = ms.PreparedDataset(full, split=None)
    index = data.index
    renamed = [cut.renamed(c) for c in data.class_names]
    missing = [c for c, _ in cut.keep if c not in renamed]
    if missing:
        raise MedisynthError(f"{full}: no class {', '.join(missing)}; --{name}-source must be the {cut.folder} set")
    rng = np.random.default_rng(0)
    keep = np.ones(len(index), dtype=bool)
    class_names = index["class_name"].map(cut.renamed)
    for class_name, count in cut.keep:
        rows = np.nonzero(((class_names == class_name) & (index["split"] == "train")).to_numpy())[0]
        if len(rows) > count:
            keep[np.setdiff1d(rows, rng.choice(rows, count, replace=False))] = False
    images = data.images_uint8()
    folder = root / f"{name}-{size}px-{tag}-source"
    if not (folder / "labels.csv").is_file():
        with atomic_dir(folder, overwrite=True) as tmp:
            (tmp / "images").mkdir()
            rows = []
            for i in np.nonzero(keep)[0]:
                row = index.iloc[i]
                write_png(tmp / "images" / f"{row['id']}.png", images[i])
                rows.append({"image": f"{row['id']}.png", "label": class_names.iloc[i], "split": row["split"],
                             "group": row["group"]})
            pd.DataFrame(rows).to_csv(tmp / "labels.csv", index=False)
    log(f"preparing the imbalanced {name} set ({', '.join(f'{c}: {k}' for c, k in cut.keep)} training images) -> {out}")
    ms.prepare(ms.PrepareConfig(source=folder, out=out, size=size, channels=cut.channels, preprocess="none", seed=0,
                                classes=renamed, workers=1))
    return out


# ------------------------------------------------------------------------------------------ the fixed judge
@dataclass
class Judge:
    """The real data of one data set and the one feature space every model of it is judged in."""

    name: str
    root: Path
    content_hash: str
    real: object  # medisynth.downstream.data.RealData
    classifier: object  # the domain classifier (SmallResNet)
    feature_space_id: str
    train_features: np.ndarray
    copy_filter: object  # CopyDetector on the training split (medisynth.metrics.copy_detection)
    reference: dict  # the real test split scored like a model


def build_judge(name: str, root: Path, work: Path, settings: Settings, device) -> Judge:
    import medisynth as ms
    from medisynth.classifier import domain_classifier, extract_features
    from medisynth.metrics.copy_detection import copy_detector
    from medisynth.downstream.data import load_real

    manifest = ms.Manifest.load(root)
    real = load_real(root)
    log(f"{name}: train {np.bincount(real.train.labels, minlength=len(real.class_names)).tolist()}, "
        f"val {len(real.val)}, test {np.bincount(real.test.labels, minlength=len(real.class_names)).tolist()} "
        f"({', '.join(real.class_names)})")
    classifier = domain_classifier(root, cache_dir=work / "cache", device=device, seed=0,
                                   epochs=settings.domain_epochs, width=settings.classifier_width, progress=False)
    space_id = _weights_id(classifier)
    feature_file = work / "cache" / "features" / f"{manifest.content_hash[:16]}-{space_id}.npy"
    if feature_file.is_file():
        train_features = np.load(feature_file)
    else:
        train_features = extract_features(classifier, real.train.images, device=device)
        feature_file.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.save(buf, train_features)
        from medisynth.io import atomic_write_bytes

        atomic_write_bytes(feature_file, buf.getvalue())
    copy_filter = copy_detector(root, cache_dir=work / "cache", progress=False)  # threshold calibrated on the data
    judge = Judge(name, root, manifest.content_hash, real, classifier, space_id, train_features, copy_filter, {})
    test = real.test
    judge.reference = score_images(judge, test.images, test.labels, device, seed=0)
    return judge


def _weights_id(model) -> str:
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


def score_images(judge: Judge, images, labels, device, seed: int, eval_mask: Optional[np.ndarray] = None) -> dict:
    """KID and precision/recall of ``images[eval_mask]`` (default: all), CAS and near-copy share of all ``images``.

    ``eval_mask`` picks the evaluation set: synthetic images in the real training proportions.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score

    from medisynth.classifier import extract_features, predict_proba
    from medisynth.metrics.detectability import DETECTABILITY_KEY, detectability
    from medisynth.metrics.kid import kid_from_features
    from medisynth.metrics.prdc import prdc

    eval_mask = np.ones(len(images), dtype=bool) if eval_mask is None else np.asarray(eval_mask, dtype=bool)
    features = extract_features(judge.classifier, images, device=device)
    predicted = predict_proba(judge.classifier, images, device=device).argmax(1)
    kid_mean, kid_std = kid_from_features(judge.train_features, features[eval_mask], subsets=KID_SUBSETS,
                                          subset_size=KID_SUBSET_SIZE, seed=seed)
    pr = prdc(judge.train_features, features[eval_mask], k=PRDC_K)
    flagged = ~judge.copy_filter.keep(images)
    try:
        told_apart = detectability(judge.train_features, features[eval_mask], seed=seed)[DETECTABILITY_KEY]
    except ValueError as e:  # fewer than 10 images: reported, not guessed
        log(f"detectability not computed: {e}")
        told_apart = None
    return {
        "n_images": int(len(images)), "n_eval": int(eval_mask.sum()),
        "kid": kid_mean, "kid_std_over_subsets": kid_std,
        "precision": pr["precision"], "recall": pr["recall"], "density": pr["density"], "coverage": pr["coverage"],
        "cas_accuracy": float(accuracy_score(labels, predicted)),
        "cas_balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "near_copy_share": float(flagged.mean()),
        "near_copy_threshold": float(judge.copy_filter.threshold),
        "detectability": told_apart,
    }


# ------------------------------------------------------------------------------------------ one record
def utility_config(root: Path, settings: Settings, work: Path):
    """The utility classifiers' recipe for the prepared set ``root`` (also bench_heldout_utility.py's)."""
    import medisynth as ms

    # out is never written: fit_protocol trains and scores one classifier and writes nothing
    return ms.UtilityConfig(real=root, out=work / "unused-utility-report", epochs=settings.clf_epochs,
                            patience=settings.clf_patience, width=settings.classifier_width,
                            time_budget_per_run_s=None if settings.clf_minutes is None else settings.clf_minutes * 60,
                            progress=False)


def baseline(judge: Judge, seed: int, settings: Settings, work: Path, device) -> dict:
    """The oversampling classifier of ``seed`` (``real-balanced``): one per data set and seed, cached."""
    from medisynth.classifier import CLASSIFIER_VERSION
    from medisynth.downstream.run import fit_protocol
    from medisynth.io import read_json, write_json

    config = utility_config(judge.root, settings, work)
    # "eq": epochs of as many draws as the real training split (equal steps for every protocol)
    recipe = (f"v{CLASSIFIER_VERSION}-e{config.epochs}-p{config.patience}-t{config.time_budget_per_run_s}-"
              f"{config.model}-w{config.width}-eq")
    path = work / "cache" / "baselines" / f"{judge.content_hash[:16]}-{recipe}-{device.type}-s{seed}.json"
    if path.is_file():
        return read_json(path)
    log(f"{judge.name}: oversampling baseline, seed {seed}")
    record, _ = fit_protocol("real-balanced", seed, judge.real, None, config, device)
    write_json(path, record)
    return record


def stopped_at_chance(figure: dict, real) -> bool:
    """A utility classifier that early stopping ended while its best validation score was at chance: trained before
    CLASSIFIER_VERSION 4, whose patience counted from the first epoch (the classifier never learned). Any other
    figure trains the same today: the two rules differ only in that stop."""
    chance = 1.0 / len(np.unique(real.val.labels))
    return figure.get("stopped") == "patience" and figure["best_val_balanced_accuracy"] <= chance


def train_figures(real, synthetic: Callable[[], object], seed: int, config, device, oversampled: Callable[[], dict],
                  tag: str, kept: Optional[dict] = None) -> dict:
    """The three utility classifiers of ``seed`` (UTILITY_FIGURES) on ``real``'s splits, by ``config``'s recipe. Figures
    in ``kept`` that did not stop at chance are reused; ``oversampled()`` gives the real-only one (a caller's cache),
    ``synthetic()`` the synthetic images, loaded only when a figure needs them (also bench_heldout_utility.py's)."""
    from medisynth.downstream.run import fit_protocol

    kept = {key: figure for key, figure in (kept or {}).items() if not stopped_at_chance(figure, real)}
    utility, images = {}, None
    for key, protocol in UTILITY_FIGURES.items():
        if key in kept:
            utility[key] = kept[key]
        elif key == "oversampled":
            utility[key] = oversampled()
        else:
            images = synthetic() if images is None else images
            log(f"{tag}: {protocol} classifier, seed {seed}")
            utility[key], _ = fit_protocol(protocol, seed, real, images, config, device)
    return utility


def utility_figures(judge: Judge, synthetic, seed: int, settings: Settings, work: Path, device, tag: str,
                    kept: Optional[dict] = None) -> tuple[dict, dict]:
    """The three utility classifiers of ``seed`` on the judge's data (``train_figures``; the oversampling one cached,
    ``baseline``) and the measures they give."""
    utility = train_figures(judge.real, lambda: synthetic, seed, utility_config(judge.root, settings, work), device,
                            lambda: baseline(judge, seed, settings, work, device), tag, kept)
    base, topped = utility["oversampled"]["metrics"], utility["real_synthetic"]["metrics"]
    measures = {
        "oversampled_balanced_accuracy": base["balanced_accuracy"],
        "real_synthetic_balanced_accuracy": topped["balanced_accuracy"],
        "balanced_accuracy_difference": topped["balanced_accuracy"] - base["balanced_accuracy"],
        "oversampled_accuracy": base["accuracy"],
        "real_synthetic_accuracy": topped["accuracy"],
        "balanced_mix_balanced_accuracy": utility["balanced_mix"]["metrics"]["balanced_accuracy"],
    }
    return utility, measures


def rescore(judge: Judge, results_path: Path, models: list[str], seeds: list[int], settings: Settings, work: Path,
            device) -> None:
    """Judge the saved samples of existing records again (``--rescore``): the judge's measures are replaced, the
    utility figures kept; a utility figure the record lacks (the balanced mix, added later) or whose classifier
    stopped at chance (``stopped_at_chance``) is trained. A record whose samples are gone is named and left as it was."""
    from medisynth.classifier import CLASSIFIER_VERSION
    from medisynth.downstream.data import load_synthetic

    records = [r for r in load_results(results_path)["records"]
               if r["data"] == judge.name and r["model"] in models and r["seed"] in seeds
               and record_budget(r) == settings_budget(settings) and r["device_kind"] == device.type]
    if not records:
        log(f"{judge.name}: no records of {', '.join(models)} at {budget_text(settings_budget(settings))} in {results_path} "
            "to rescore")
    real = judge.real
    for record in records:
        tag = f"{judge.name}/{record['model']}/{budget_tag(record_budget(record))}-{device.type}-s{record['seed']}"
        if record.get("not_judged"):
            log(f"{tag}: not judged when it was run ({record['not_judged']}); not rescored (--rerun runs it again)")
            continue
        if record["data_hash"] != judge.content_hash or record["feature_space_id"] != judge.feature_space_id:
            log(f"{tag}: made with other data or another judge; not rescored")
            continue
        sample_dir = work / "samples" / tag
        if not (sample_dir / "labels.csv").is_file():
            log(f"{tag}: its samples are not in {sample_dir}; not rescored")
            continue
        synthetic = load_synthetic(sample_dir, real.class_names, real.image_size, real.channels)
        eval_mask = evaluation_mask(judge, synthetic.labels)
        utility, utility_measures = utility_figures(judge, synthetic, record["seed"], settings, work, device, tag,
                                                    kept=record["utility"])
        record["utility"] = utility
        record["measures"] = {**score_images(judge, synthetic.images, synthetic.labels, device, record["seed"], eval_mask),
                              **utility_measures}
        record["classifier_version"] = CLASSIFIER_VERSION
        record["rescored"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        save_record(results_path, record)
        log(f"{tag}: rescored")


def evaluation_mask(judge: Judge, labels: np.ndarray) -> np.ndarray:
    """The evaluation set among the sampled images: the first of each class, as many as the class has real training images."""
    _, eval_counts = sample_counts(judge)
    mask = np.zeros(len(labels), dtype=bool)
    for c, name in enumerate(judge.real.class_names):
        mask[np.nonzero(labels == c)[0][:eval_counts[name]]] = True
    return mask


def sample_counts(judge: Judge) -> tuple[dict[str, int], dict[str, int]]:
    """(images to sample per class, evaluation images per class): the real training count of a class
    (the evaluation set) or its shortfall to the largest class (the top-up), whichever is larger."""
    counts = np.bincount(judge.real.train.labels, minlength=len(judge.real.class_names))
    names = judge.real.class_names
    evaluation = {names[c]: int(counts[c]) for c in range(len(names))}
    topup = {names[c]: int(counts.max() - counts[c]) for c in range(len(names))}
    return {n: max(evaluation[n], topup[n]) for n in names}, evaluation


def run_record(bench: BenchModel, judge: Judge, seed: int, settings: Settings, work: Path, grids: Path,
               device) -> dict:
    import medisynth as ms
    from medisynth.classifier import CLASSIFIER_VERSION
    from medisynth.downstream.data import load_synthetic
    from medisynth.runs import Run

    budget = settings_budget(settings)
    tag = f"{judge.name}/{bench.key}/{budget_tag(budget)}-{device.type}-s{seed}"
    run_dir, sample_dir = work / "runs" / tag, work / "samples" / tag
    grid_path = grids / f"{judge.name}_{bench.key}_{budget_tag(budget)}_{device.type}_s{seed}.png"
    classes = [c for c, n in zip(judge.real.class_names, np.bincount(judge.real.train.labels,
                                                                       minlength=len(judge.real.class_names))) if n]
    per_class_counts, _ = sample_counts(judge)
    record = {
        "model": bench.key, "generator": bench.model, "per_class": bench.per_class,
        "hyper": {}, "data": judge.name, "data_hash": judge.content_hash,
        "budget_minutes": None if settings.steps else settings.minutes, "budget_steps": settings.steps,
        "seed": seed, "device_kind": device.type, "device": device_name(device),
        "machine": machine_name(), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(), "feature_space_id": judge.feature_space_id, "settings": settings_json(settings),
    }
    first_batch = None
    if bench.model is None:
        log(f"{tag}: no generator; classic augmentations of the real training images")
        record["train"] = {"steps": 0, "seconds": 0.0}
        clock = time.perf_counter()
        write_augmented_real(judge, sample_dir, per_class_counts, seed)
        trained_text = "no training"
    else:
        runs = len(classes) if bench.per_class else 1  # per-class runs share the budget, so the total is the same
        minutes = None if settings.steps else settings.minutes / runs
        steps = max(1, settings.steps // runs) if settings.steps else None
        each = f"{minutes:.2f} min" if minutes is not None else f"{steps:,} steps"
        log(f"{tag}: training {bench.model}{' per class' if bench.per_class else ''} for {budget_text(budget)}"
            + (f" ({each} per class)" if bench.per_class else ""))
        clock = time.perf_counter()
        result = ms.train(ms.TrainConfig(
            data=judge.root, model=bench.model, out=run_dir, minutes=minutes, steps=steps, per_class=bench.per_class,
            batch_size=bench.batch_size, class_draws=bench.class_draws, cpu_amp=bench.cpu_amp,
            hyper={**bench.hyper_dict(), **settings.extra_hyper.get(bench.model, {})}, seed=seed, device=str(device),
            sample_every=0, checkpoint_every=10**9, progress=False,
            overwrite=True,  # the benchmark's own scratch run of a record not in the results file
        ))
        train_wall = time.perf_counter() - clock
        trained = Run(run_dir).config  # the resolved settings the run trained with
        options = {"steps": settings.sampling_steps} if settings.sampling_steps and bench.model == "diffusion" else {}
        record["hyper"] = read_hyper(run_dir)
        record["train"] = {"steps": result.steps, "batch_size": trained["batch_size"],
                           "class_draws": trained["class_draws"], "cpu_amp": trained.get("cpu_amp", False),
                           "seconds": round(result.seconds, 1), "wall_seconds": round(train_wall, 1),
                           "images_per_second": round(result.images_per_second, 1)}
        trained_text = f"{result.steps} steps in {result.seconds:.0f} s"
        first_batch, first_images = probe_sampling(judge, run_dir, work / "samples" / f"{tag}-first-batch", classes,
                                                   per_class_counts, seed, device, options)
        if settings.max_sampling_minutes and first_batch["estimated_seconds"] > 60 * settings.max_sampling_minutes:
            reason = (f"sampling {first_batch['total_images']} images would take about "
                      f"{duration(first_batch['estimated_seconds'])} (the first {first_batch['images']} took "
                      f"{duration(first_batch['seconds'])}), over --max-sampling-minutes {settings.max_sampling_minutes:g}")
            log(f"{tag}: {trained_text}; not judged: {reason}")
            grid = write_grid(grid_path, first_images, judge.real.class_names,
                              f"{bench.key}, {judge.name}, {budget_text(budget)}, seed {seed} (first batch)")
            return {**record, "not_judged": reason, "sample": {"first_batch": first_batch},
                    "grid": str(grid.relative_to(grids.parent))}
        clock = time.perf_counter()
        ms.sample(ms.SampleConfig(run=run_dir, out=sample_dir, per_class=per_class_counts, seed=seed,
                                  device=str(device), progress=False, overwrite=True, **options))
    sample_seconds = time.perf_counter() - clock
    real = judge.real
    synthetic = load_synthetic(sample_dir, real.class_names, real.image_size, real.channels)
    eval_mask = evaluation_mask(judge, synthetic.labels)
    log(f"{tag}: {trained_text}; sampled {len(synthetic)} images in {sample_seconds:.0f} s; scoring")
    measures = score_images(judge, synthetic.images, synthetic.labels, device, seed, eval_mask)
    grid = write_grid(grid_path, synthetic, real.class_names, f"{bench.key}, {judge.name}, {budget_text(budget)}, seed {seed}")
    utility, utility_measures = utility_figures(judge, synthetic, seed, settings, work, device, tag)
    return {
        **record,
        "sample": {"images": len(synthetic), "seconds": round(sample_seconds, 1), "per_class": per_class_counts,
                   **({"first_batch": first_batch} if first_batch else {})},
        "measures": {**measures, **utility_measures},
        "classifier_version": CLASSIFIER_VERSION,
        "utility": utility,
        "grid": str(grid.relative_to(grids.parent)),
    }


def write_augmented_real(judge: Judge, out: Path, per_class_counts: dict[str, int], seed: int) -> None:
    """The control row's sample folder (images/<id>.png + labels.csv, read and rescored like a generator's): per
    class, ``per_class_counts[name]`` classic augmentations (``classic_augment``, the utility study's ``real-aug``)
    of the class's real training images, each image once before any twice, in an order drawn with ``seed``."""
    import torch

    from medisynth.classifier import classic_augment
    from medisynth.downstream.toy import write_image_folder

    real = judge.real
    generator = torch.Generator().manual_seed(seed)
    arrays, names = [], []
    for c, name in enumerate(real.class_names):
        pool = np.nonzero(real.train.labels == c)[0]
        count = per_class_counts.get(name, 0)
        if not count or not len(pool):
            continue
        order = torch.randperm(len(pool), generator=generator).numpy()
        picks = pool[np.resize(order, count)]  # the shuffled pool, repeated as often as the count needs
        x = real.train.images[torch.from_numpy(picks)].float() / 127.5 - 1
        augmented = ((classic_augment(x, generator) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        arrays.append(augmented.permute(0, 2, 3, 1).numpy())
        names += [name] * count
    write_image_folder(out, np.concatenate(arrays), names, prefix="augmented", overwrite=True)


def probe_sampling(judge: Judge, run_dir: Path, out: Path, classes: list[str], per_class_counts: dict[str, int],
                   seed: int, device, options: dict):
    """Time a first batch of about PROBE_IMAGES images spread over ``classes`` and extrapolate to the whole sample
    (sampling time grows with the number of images: one network pass per image, or one per step for diffusion).
    Returns the timing (kept in the record) and the batch's images (for the grid of a record not judged)."""
    import medisynth as ms
    from medisynth.downstream.data import load_synthetic

    total = sum(per_class_counts.values())
    each = max(1, -(-PROBE_IMAGES // len(classes)))
    first = {c: min(each, per_class_counts[c]) for c in classes if per_class_counts[c]}
    clock = time.perf_counter()
    ms.sample(ms.SampleConfig(run=run_dir, out=out, per_class=first, seed=seed, device=str(device), progress=False,
                              overwrite=True, **options))
    seconds = time.perf_counter() - clock
    images = sum(first.values())
    synthetic = load_synthetic(out, judge.real.class_names, judge.real.image_size, judge.real.channels)
    timing = {"images": images, "seconds": round(seconds, 1), "total_images": total,
              "estimated_seconds": round(seconds * total / images, 1)}
    return timing, synthetic


def duration(seconds: float) -> str:
    """``42 s`` under a minute (a tiny estimate is not "about 0 min"), ``102 min`` above."""
    return f"{seconds:.0f} s" if round(seconds) < 60 else f"{seconds / 60:.0f} min"


def read_hyper(run_dir: Path) -> dict:
    """The model's resolved hyper-parameters as the run recorded them (per-class: the first class's)."""
    from medisynth.io import read_json

    info = read_json(run_dir / "model.json")
    if info.get("per_class"):
        first = next(iter(info["classes"].values()))
        info = read_json(run_dir / first / "model.json")
    return info.get("hyper", {})


def write_grid(path: Path, synthetic, class_names: list[str], title: str, columns: int = 8) -> Path:
    """One row per class (the first ``columns`` images sampled for it), the class name beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from medisynth.data.images import image_grid
    from medisynth.io import atomic_write_bytes

    rows = len(class_names)
    fig, axes = plt.subplots(rows, 1, figsize=(columns * 0.9 + 1.2, rows * 0.95 + 0.4), squeeze=False)
    for c, name in enumerate(class_names):
        picked = synthetic.images[torch.from_numpy(np.nonzero(synthetic.labels == c)[0][:columns])]
        ax = axes[c, 0]
        if len(picked):
            ax.imshow(image_grid(picked, columns=columns))  # uint8, gray repeated to RGB
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({cpu_model()}, {os.cpu_count()} cores)"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_name() -> str:
    return platform.node()


@functools.lru_cache(maxsize=None)
def git_commit() -> Optional[str]:
    """The checkout's commit when first asked (``run`` asks at the start): the code this process imported, not a
    commit made while its records trained."""
    import subprocess

    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def settings_json(settings: Settings) -> dict:
    import dataclasses

    return dataclasses.asdict(settings)


# ------------------------------------------------------------------------------------------ results file
def load_results(path: Path) -> dict:
    from medisynth.io import read_json

    if not path.is_file():
        return {"schema": SCHEMA, "records": [], "references": {}}
    results = read_json(path)
    if results.get("schema") != SCHEMA:
        raise MedisynthError(f"--results {path}: not a bench_quality results file (schema {results.get('schema')!r}); "
                                "choose another --results")
    return results


def record_key(record: dict) -> tuple:
    return record["model"], record["data"], record_budget(record), int(record["seed"]), record["device_kind"]


def results_lock(path: Path):
    """Held while a results file is re-read and rewritten: benchmark processes run side by side (one per core, or
    one per machine on a shared disk) add records to one file, and without it the later writer drops the
    earlier one's record. A ``.lock`` file beside the results; filelock is a dependency of torch's."""
    from filelock import FileLock

    return FileLock(str(path) + ".lock")


def save_record(path: Path, record: dict) -> None:
    """Re-read the file and add the record (replacing one with the same key), atomically."""
    from medisynth.io import write_json

    with results_lock(path):
        results = load_results(path)
        results["records"] = [r for r in results["records"] if record_key(r) != record_key(record)] + [record]
        write_json(path, results)


def save_reference(path: Path, judge: Judge) -> None:
    from medisynth.io import write_json

    with results_lock(path):
        results = load_results(path)
        results.setdefault("references", {})[judge.name] = {
            "data_hash": judge.content_hash, "feature_space_id": judge.feature_space_id,
            "class_names": judge.real.class_names,
            "train_counts": np.bincount(judge.real.train.labels, minlength=len(judge.real.class_names)).tolist(),
            "test_counts": np.bincount(judge.real.test.labels, minlength=len(judge.real.class_names)).tolist(),
            "measures": judge.reference,
        }
        write_json(path, results)


# ------------------------------------------------------------------------------------------ the table
COLUMNS = (  # (header, measure key, digits)
    ("KID", "kid", 4),
    ("precision", "precision", 2),
    ("recall", "recall", 2),
    ("CAS acc.", "cas_accuracy", 2),
    ("CAS bal. acc.", "cas_balanced_accuracy", 2),
    ("near-copy share", "near_copy_share", 3),
    ("detectability", "detectability", 2),
    ("bal. acc. oversampled", "oversampled_balanced_accuracy", 3),
    ("bal. acc. real+synthetic", "real_synthetic_balanced_accuracy", 3),
    ("bal. acc. balanced mix", "balanced_mix_balanced_accuracy", 3),
)


def _mean_std(values: list[float], digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(values, ddof=1)):.{digits}f}"


def _seeds_above_chance(rows: list[dict], protocol: str) -> Optional[int]:
    """How many of the records' ``protocol`` classifiers beat chance on the test split, by the utility study's
    test on balanced accuracy (None: not recorded, or recorded with the earlier test on plain accuracy)."""
    tests = [((r.get("utility") or {}).get(protocol) or {}).get("chance") or {} for r in rows]
    if any(t.get("metric") != "balanced" for t in tests):
        return None
    return sum(bool(t["better_than_chance"]) for t in tests)


def _paired_difference(rows: list[dict], protocol: str) -> str:
    """``protocol``'s balanced accuracy (``real_synthetic`` or ``balanced_mix``) - oversampled's, mean over the seeds
    that have it, with its 95% paired-t interval; "cannot tell" when neither classifier beat chance in any seed."""
    from medisynth.downstream.stats import paired_over_seeds

    key = f"{protocol}_balanced_accuracy"
    rows = [r for r in rows if r["measures"].get(key) is not None]  # a measure added later: older records lack it
    if not rows:
        return "-"
    paired = paired_over_seeds([r["measures"]["oversampled_balanced_accuracy"] for r in rows],
                               [r["measures"][key] for r in rows])
    if paired["ci95_low"] is None:
        text = f"{paired['mean_difference']:+.3f} (1 seed: no interval)"
    else:
        text = f"{paired['mean_difference']:+.3f} [{paired['ci95_low']:+.3f}, {paired['ci95_high']:+.3f}]"
    if _seeds_above_chance(rows, "oversampled") == 0 == _seeds_above_chance(rows, protocol):
        text += " cannot tell: both at chance"  # the utility study's rule: nothing learned, so nothing to compare
    return text


def make_table(results: dict, models: list[str], notes: dict[str, str], data_names: Optional[list[str]] = None,
               link_base: str = "") -> str:
    """Markdown: per (data set, budget, device kind) one table, model x measure, mean ± std over seeds.

    A record's grid path is relative to the results folder; ``link_base`` leads there from where the table is read."""
    records = results["records"]
    groups = sorted({(r["data"], record_budget(r), r["device_kind"]) for r in records})
    names = data_names or sorted({g[0] for g in groups})
    lines = ["<!-- written by benchmarks/bench_quality.py --table; numbers from the results file, never by hand -->"]
    for data in names:
        data_groups = [g for g in groups if g[0] == data] or [(data, None, None)]
        for _, budget, kind in data_groups:
            chosen = [r for r in records if (r["data"], record_budget(r), r["device_kind"]) == (data, budget, kind)]
            ref = results.get("references", {}).get(data)
            lines.append("")
            if budget is None:
                lines.append(f"### {data}: no results yet")
            else:
                devices = sorted({r["device"] for r in chosen})
                machines = sorted({r["machine"] for r in chosen})
                lines.append(f"### {data}: {budget_text(budget)} of training per model, {kind} ({'; '.join(devices)}; "
                             f"machine {', '.join(machines)})")
            if ref:
                counts = ", ".join(f"{n} {k}" for n, k in zip(ref["class_names"], ref["train_counts"]))
                tests = ", ".join(f"{n} {k}" for n, k in zip(ref["class_names"], ref["test_counts"]))
                lines.append(f"Training split: {counts}; test split: {tests}.")
            if chosen:
                recipes = sorted({(r["settings"]["domain_epochs"], r["settings"]["clf_epochs"],
                                   r["settings"]["clf_minutes"], r["settings"]["classifier_width"]) for r in chosen})
                lines.append("Classifiers (SmallResNet width w): " + "; ".join(
                    f"judge {d} epochs, utility {c} epochs{f' or {m:g} min' if m else ''}, w {w}"
                    for d, c, m, w in recipes) + ".")
            spaces = {r["feature_space_id"] for r in chosen} | ({ref["feature_space_id"]} if ref else set())
            if len(spaces) > 1:
                lines.append(f"**Warning:** these records were judged in {len(spaces)} different feature spaces "
                             f"({', '.join(sorted(spaces))}); KID, precision/recall, CAS and detectability compare only within "
                             "one, so each model has one row per judge (named by its feature space).")
            lines.append("")
            header = (["model", "seeds", "steps"] + [c[0] for c in COLUMNS]
                      + ["utility above chance (oversampled · real+synthetic)", "Δ bal. acc. (95% CI)",
                         "Δ bal. acc., balanced mix (95% CI)", "grid"])
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "---|" * len(header))
            if ref:
                m = ref["measures"]
                real_row = REAL_ROW if len(spaces) == 1 else f"{REAL_ROW} · judge {ref['feature_space_id'][:6]}"
                cells = [real_row, "-", "-"] + [
                    _mean_std([m.get(key)], digits) if key in m else "-" for _, key, digits in COLUMNS] + ["-"] * 4
                lines.append("| " + " | ".join(cells) + " |")
            for model in models:
                tried = sorted((r for r in chosen if r["model"] == model), key=lambda r: r["seed"])
                rows = [r for r in tried if not r.get("not_judged")]
                unjudged = [r for r in tried if r.get("not_judged")]
                if not rows:
                    if unjudged:  # trained, then stopped before sampling: what it did and why, with its first batch
                        seeds = ", ".join(str(r["seed"]) for r in unjudged)
                        lines.append(f"| {model} | 0 | {_mean_std([r['train']['steps'] for r in unjudged], 0)} | "
                                     + " | ".join(["-"] * (len(header) - 4))
                                     + f" | not judged (seed {seeds}): {unjudged[0]['not_judged']}; "
                                       f"[first batch]({link_base}{unjudged[0]['grid']}) |")
                    else:
                        why = notes.get(model) or "not run yet"
                        lines.append(f"| {model} | 0 | " + " | ".join(["-"] * (len(header) - 3)) + f" | not run: {why} |")
                    continue
                # one row per judge: a mean over records judged in different feature spaces would mean nothing
                by_space: dict[str, list[dict]] = {}
                for r in rows:
                    by_space.setdefault(r["feature_space_id"], []).append(r)
                for space, group in by_space.items():
                    seeds = [r["seed"] for r in group]
                    name = model if len(spaces) == 1 else f"{model} · judge {space[:6]}"
                    cells = [name, str(len(group)), _mean_std([r["train"]["steps"] for r in group], 0)]
                    # .get: a measure added later is "-" for records made before it (--rescore fills it in)
                    cells += [_mean_std([r["measures"].get(key) for r in group], digits) for _, key, digits in COLUMNS]
                    above = [_seeds_above_chance(group, protocol) for protocol in ("oversampled", "real_synthetic")]
                    cells.append(" · ".join("-" if a is None else f"{a}/{len(group)}" for a in above))
                    cells.append(_paired_difference(group, "real_synthetic"))
                    cells.append(_paired_difference(group, "balanced_mix"))
                    cells.append(f"[seed {seeds[0]}]({link_base}{group[0]['grid']})"
                                 + "".join(f"; seed {r['seed']} not judged: {r['not_judged']}" for r in unjudged))
                    unjudged = []  # named once, in the first row
                    lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "KID and precision/recall: the evaluation set (as many synthetic images per class as the class has real "
        "training images) against the real training split, in the domain classifier's penultimate features. "
        "CAS: that classifier's accuracy on all synthetic images (label = the class asked for); in the "
        f"'{REAL_ROW}' row, its accuracy on the real test split. Near-copy share: synthetic images "
        "the copy detector flags against the training split. Detectability: cross-validated accuracy of a logistic "
        "regression on the same features telling the evaluation set from the real training split (0.5 = "
        f"indistinguishable; in the '{REAL_ROW}' row the real test split's). Balanced accuracies: the utility study's classifier on "
        "the real test split, trained with oversampling, with synthetic top-up, or on the balanced mix (every class "
        "drawn equally, half of each class's draws synthetic); Δ = real+synthetic (or balanced mix) - "
        "oversampled, mean over paired seeds with its 95% paired-t interval. Utility above chance: seeds whose "
        "classifier's test balanced accuracy beats 1/K (one-sided permutation test, as in "
        "`medisynth utility`). ± is the standard deviation over seeds. "
        f"{AUGMENTED_REAL}: the control row, no generator: its images are classic augmentations (flips, rotations, "
        "brightness and contrast jitter) of the real training images of the class, as many as a generator samples; "
        "a generator whose Δ is not above the control's adds nothing that augmenting the real images would not.",
    ]
    return "\n".join(lines) + "\n"


def write_table(results_path: Path, models: list[str], notes: dict[str, str], data_names=None) -> str:
    from medisynth.io import atomic_write_text

    table = make_table(load_results(results_path), models, notes, data_names)
    atomic_write_text(results_path.with_suffix(".md"), table)
    return table


README_TABLE_BEGIN = "<!-- bench_quality table: BEGIN -->"
README_TABLE_END = "<!-- bench_quality table: END -->"


def readme_table_span(readme: Path) -> tuple[str, int, int]:
    """The README's text and where its table lies (between the markers); checked before any training."""
    try:
        text = readme.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise MedisynthError(f"--readme {readme}: cannot read it ({e}); give the README to update") from None
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    # a marker counts only as a line of its own, so prose that names it is left alone
    begins = [i for i, line in enumerate(lines) if line.strip() == README_TABLE_BEGIN]
    ends = [i for i, line in enumerate(lines) if line.strip() == README_TABLE_END]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise MedisynthError(f"--readme {readme}: needs one line {README_TABLE_BEGIN} and, after it, one line "
                             f"{README_TABLE_END} where the table goes (found {len(begins)} and {len(ends)})")
    return text, offsets[begins[0] + 1], offsets[ends[0]]


def write_readme_table(readme: Path, results_path: Path, models: list[str], notes: dict[str, str],
                       data_names=None) -> None:
    """Replace what lies between the README's table markers with the table, grid links relative to the README."""
    from medisynth.io import atomic_write_text

    text, start, end = readme_table_span(readme)
    link_base = Path(os.path.relpath(results_path.parent, readme.resolve().parent)).as_posix() + "/"
    table = make_table(load_results(results_path), models, notes, data_names, link_base)
    atomic_write_text(readme, text[:start] + table + text[end:])


# ------------------------------------------------------------------------------------------ command line
def parse_seeds(text: str) -> list[int]:
    """``3`` -> seeds 0, 1, 2; ``0,2,5`` -> those seeds."""
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise MedisynthError(f"--seeds {text!r}: give a count (3 = seeds 0,1,2) or a list (0,1,2)") from None
    if not seeds and "," not in text:  # "0" reads as a count of none, though the user most likely meant seed 0
        raise MedisynthError(f"--seeds {text!r} is a count of no seeds; for seed {text.strip()} alone write "
                             f"'{text.strip()},'")
    if not seeds or min(seeds) < 0:
        raise MedisynthError(f"--seeds {text!r}: give at least one seed, none negative")
    return seeds


def parse_list(text: str, allowed, flag: str) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in items if s not in allowed]
    if unknown or not items:
        raise MedisynthError(f"{flag} {text!r}: unknown {', '.join(unknown) or '(empty)'}; choose from {', '.join(allowed)}")
    return items


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=None,
                        help=f"subset of {','.join(MODELS)} (default: every one; --smoke: cgan,dcgan)")
    parser.add_argument("--data", default=",".join(DATA_SETS), help=f"{','.join(DATA_SETS)} (or some of them)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="training budget per model, wall clock (default 10; per-class runs share it)")
    parser.add_argument("--steps", type=int, default=None,
                        help="a budget of optimisation steps instead of minutes: the same training on any machine, at any "
                             "load, so variants compare without the wall clock's noise (per-class runs share it)")
    parser.add_argument("--seeds", default="3", help="a count (3 = seeds 0,1,2) or a list (0,1,2; one seed: 1,)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--work", type=Path, default=REPO / "benchmarks" / ".work",
                        help="prepared data, runs, samples and caches (default benchmarks/.work, ignored by git)")
    parser.add_argument("--results", type=Path, default=None,
                        help="results JSON, accumulated across invocations (default benchmarks/results/bench_quality.json; "
                             "--smoke: WORK/results.json); the table goes beside it as .md, grids in grids/")
    parser.add_argument("--table", action="store_true", help="only print and write the table from --results")
    parser.add_argument("--readme", type=Path, default=None,
                        help=f"also put the table between {README_TABLE_BEGIN} and {README_TABLE_END} in this file")
    parser.add_argument("--rerun", action="store_true", help="run records already in the results file again (replacing them)")
    parser.add_argument("--rescore", action="store_true",
                        help="no training: judge the saved samples (under --work) of the records already in the results file "
                             "for --models/--data/--minutes/--seeds again, e.g. after a measure was added; utility figures are kept")
    for name, cut in REAL_SETS.items():
        parser.add_argument(f"--{name}-source", type=Path, default=None,
                            help=f"the {cut.folder} folder (default: under $MEDISYNTH_SHARED_DATA or ../shared/data "
                                 "beside the repo)")
    parser.add_argument("--phantom-n", type=int, default=1000, help="phantom fundus images (EyePACS proportions)")
    parser.add_argument("--domain-epochs", type=int, default=30, help="epochs of the domain classifier (the judge)")
    parser.add_argument("--clf-epochs", type=int, default=30, help="epochs of each utility classifier")
    parser.add_argument("--clf-minutes", type=float, default=None, help="optional time limit per utility classifier")
    parser.add_argument("--sampling-steps", type=int, default=None, help="diffusion sampling steps (default: the model's)")
    parser.add_argument("--max-sampling-minutes", type=float, default=Settings.max_sampling_minutes,
                        help="a record whose sampling (estimated from its first batch) would take longer is saved as "
                             "'not judged', with the estimate and a grid of that batch; 0 = no limit")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--smoke", action="store_true",
                        help="cgan and dcgan (or --models) for a few seconds on a tiny phantom set, 2 seeds (about a minute)")
    return parser


def run_main(parser: argparse.ArgumentParser, run, argv: Optional[list[str]]) -> int:
    """Parse ``argv`` and call ``run(args)``; a MedisynthError is one line on stderr and exit status 2 (also
    bench_heldout_utility.py's entry point)."""
    args = parser.parse_args(argv)
    try:
        return run(args)
    except MedisynthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def main(argv: Optional[list[str]] = None) -> int:
    return run_main(build_parser(), run, argv)


def run(args) -> int:
    import torch

    from medisynth.device import resolve_device

    git_commit()  # read now, before hours of training: each record names the code that trained it
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.minutes is not None and args.steps is not None:
        raise MedisynthError(f"--minutes {args.minutes:g} and --steps {args.steps}: give one budget, not both")
    if args.steps is not None and args.steps <= 0:
        raise MedisynthError(f"--steps {args.steps}: give a positive number of steps")
    settings = Settings(minutes=Settings.minutes if args.minutes is None else args.minutes, steps=args.steps,
                        device=args.device, phantom_n=args.phantom_n, domain_epochs=args.domain_epochs, clf_epochs=args.clf_epochs, clf_minutes=args.clf_minutes,
                        sampling_steps=args.sampling_steps, max_sampling_minutes=args.max_sampling_minutes or None)
    models = parse_list(args.models or ",".join(MODELS), list(MODELS), "--models")
    data_names = parse_list(args.data, DATA_SETS, "--data")
    seeds = parse_seeds(args.seeds)
    results_path = args.results or REPO / "benchmarks" / "results" / "bench_quality.json"
    if args.smoke:  # the plumbing end to end in about a minute; numbers mean nothing
        models = models if args.models else ["cgan", "dcgan"]
        data_names, seeds = ["phantom-smoke"], [0, 1]
        settings = smoke_settings(settings)
        results_path = args.results or args.work / "results.json"
    if not math.isfinite(settings.minutes) or settings.minutes <= 0:
        raise MedisynthError(f"--minutes {settings.minutes}: give a positive number of minutes")
    if not math.isfinite(args.max_sampling_minutes) or args.max_sampling_minutes < 0:
        raise MedisynthError(f"--max-sampling-minutes {args.max_sampling_minutes}: give minutes, or 0 for no limit")
    notes = {key: reason for key in MODELS if (reason := unavailable_reason(MODELS[key]))}
    if args.readme:
        readme_table_span(args.readme)  # a README without table markers fails now, before anything is written
    if args.table:
        table = write_table(results_path, list(MODELS), notes)
        print(table)
        log(f"table -> {results_path.with_suffix('.md')}")
        if args.readme:
            write_readme_table(args.readme, results_path, list(MODELS), notes)
            log(f"table -> {args.readme}")
        return 0
    load_results(results_path)  # a wrong --results fails now, not after an hour of training
    device = resolve_device(args.device)
    for key in models:
        if key in notes:
            log(f"{key}: not available in this checkout ({notes[key]}); skipped, and the table says so")
    runnable = [key for key in models if key not in notes]
    done = {record_key(r) for r in load_results(results_path)["records"]}
    grids = results_path.parent / "grids"
    for data_name in data_names:
        root = prepare_data(data_name, args.work, settings, {name: getattr(args, f"{name}_source") for name in REAL_SETS})
        judge = build_judge(data_name, root, args.work, settings, device)
        save_reference(results_path, judge)
        if args.rescore:
            rescore(judge, results_path, runnable, seeds, settings, args.work, device)
            continue
        for key in runnable:
            for seed in seeds:
                if (key, data_name, settings_budget(settings), seed, device.type) in done and not args.rerun:
                    log(f"{data_name}/{key} seed {seed}: already in {results_path}; skipped (--rerun runs it again)")
                    continue
                record = run_record(MODELS[key], judge, seed, settings, args.work, grids, device)
                save_record(results_path, record)
                if record.get("not_judged"):
                    continue  # run_record said why
                m = record["measures"]
                log(f"{data_name}/{key} seed {seed}: KID {m['kid']:.4f}, precision {m['precision']:.2f}, "
                    f"recall {m['recall']:.2f}, CAS {m['cas_accuracy']:.2f}, near copies {m['near_copy_share']:.3f}, "
                    f"bal. acc. {m['oversampled_balanced_accuracy']:.3f} -> {m['real_synthetic_balanced_accuracy']:.3f} "
                    f"(balanced mix {m['balanced_mix_balanced_accuracy']:.3f})")
    table_models = list(MODELS) if not args.smoke else models
    table = write_table(results_path, table_models, notes, None if not args.smoke else data_names)
    print(table)
    log(f"results -> {results_path}; table -> {results_path.with_suffix('.md')}; grids -> {grids}")
    if args.readme:
        write_readme_table(args.readme, results_path, table_models, notes, None if not args.smoke else data_names)
        log(f"table -> {args.readme}")
    return 0


if __name__ == "__main__":  # prepare may spawn worker processes: this guard is required
    sys.exit(main())
