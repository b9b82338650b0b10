"""One table of defaults per command, read by the command line (typer options) and by the Python API (the
config dataclasses) alike, so that every default is written once and ``--help`` shows what the API does.

Keys are the config dataclasses' field names. Plain values only: the command line imports this module to
build its options, and ``medisynth --help`` must not wait for torch. Training's defaults live in
``TrainConfig`` (its command line passes only the flags a user gave), the demo's in ``DemoConfig``.
"""
from __future__ import annotations

#: the nearest neighbours whose distance is each real sample's k-NN ball in precision/recall/density/coverage
#: (Naeem et al. 2020's k): the default of every function and option that takes one
PRDC_K = 5

PREPARE = {
    "size": 128,  # side of the square prepared images (px)
    "preprocess": "auto",  # one recipe per source kind
    "window_level": 40.0,  # CT window centre (HU)
    "window_width": 400.0,  # CT window width (HU)
    "val_fraction": 0.15,  # share of each class in val
    "test_fraction": 0.15,  # share of each class in test
    "seed": 0,  # fixes the split
    "near_duplicate_threshold": 0.97,  # thumbnails this alike (cosine) stay on one side of the split
}

SAMPLE = {
    "truncation": 1.0,  # latent truncation; 1 = off
    "max_attempts": 20.0,  # with filters: per class, try at most this many times the count
    "seed": 0,  # fixes the images
    "batch_size": 64,  # images per forward pass
    "device": "auto",
    "format": "png",  # image files written
}

BALANCE = {
    "seed": 0,  # fixes the synthetic images
    "batch_size": 64,  # images per generation batch
    "device": "auto",
}

EVALUATE = {
    "feature_spaces": ("inception", "domain", "pixels"),
    "real_split": "train",  # the real images the synthetic ones are compared with
    "num_per_class": 100,  # images per class sampled when the synthetic set is a run
    "min_class_samples": 20,  # per-class distribution metrics need this many images in both sets
    "kid_subsets": 100,  # KID: random subsets
    "kid_subset_size": 1000,  # KID: images per subset (capped by the set sizes)
    "prdc_k": PRDC_K,
    "diversity_pairs": 200,  # MS-SSIM diversity: random pairs per set
    "yardstick_repeats": 5,  # draws the real-vs-real yardstick is averaged over
    "bootstrap": 200,  # resamples of the per-class KID/coverage intervals
    "batch_size": 64,  # images per feature-extraction batch
    "device": "auto",
    "seed": 0,  # subsets, sampling of a run, the domain classifier
}

UTILITY = {
    "verdict_protocol": "real+synthetic",  # judged against the best baseline without synthetic images
    "seeds": 3,  # classifiers per protocol, paired over seeds
    "epochs": 30,  # at most, with early stopping on real val
    "patience": 10,  # epochs without a better val balanced accuracy, once above chance
    "batch_size": 64,
    "lr": 1e-3,  # AdamW
    "model": "small-resnet",
    "width": 32,  # small-resnet base width
    "device": "auto",
    "bootstrap": 2000,  # paired bootstrap resamples on seed 0 (0: skip)
}
