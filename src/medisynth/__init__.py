"""medisynth: generative models that rebalance small, imbalanced medical image data sets.

The Python API mirrors the CLI: each command is one function taking a plain config object::

    import medisynth as ms
    ms.generate_fundus_dataset("phantom", n=1000, size=64)                     # medisynth phantom fundus
    ms.prepare(ms.PrepareConfig(source="phantom", out="data", size=64))       # medisynth prepare
    ms.train(ms.TrainConfig(data="data", model="cgan", out="run", minutes=3))  # medisynth train
    ms.sample(ms.SampleConfig(run="run", out="synthetic", per_class={"3": 100}))  # medisynth sample
    ms.evaluate(ms.EvaluateConfig(real="data", fake="synthetic", out="report"))   # medisynth evaluate
    ms.balance(ms.BalanceConfig(data="data", run="run", out="balanced"))         # medisynth balance
    ms.run_utility(ms.UtilityConfig(real="data", synthetic="synthetic", out="utility"))  # medisynth utility
    ms.load_run("run", device="cpu").generate([0, 0, 1], seed=0)                # images in [-1, 1]
    ms.export_run("run", "generator")                                          # medisynth export

Names are imported lazily, so ``import medisynth`` stays cheap.
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from medisynth.errors import MedisynthError  # noqa: E402

_LAZY = {
    "PrepareConfig": "medisynth.data.prepare",
    "prepare": "medisynth.data.prepare",
    "PreparedDataset": "medisynth.data.dataset",
    "Manifest": "medisynth.data.manifest",
    "generate_fundus_dataset": "medisynth.phantom.fundus",
    "generate_ct_dataset": "medisynth.phantom.ct",
    "TrainConfig": "medisynth.training.config",
    "train": "medisynth.training.trainer",
    "SampleConfig": "medisynth.sampling",
    "sample": "medisynth.sampling",
    "EvaluateConfig": "medisynth.evaluation",
    "evaluate": "medisynth.evaluation",
    "BalanceConfig": "medisynth.balancing",
    "balance": "medisynth.balancing",
    "UtilityConfig": "medisynth.downstream",
    "run_utility": "medisynth.downstream",
    "load_run": "medisynth.runs",
    "export_run": "medisynth.export",
    "compare_runs": "medisynth.compare",
    "Run": "medisynth.runs",
    "LoadedRun": "medisynth.runs",
    "build_model": "medisynth.models",
    "MODEL_REGISTRY": "medisynth.models",
}

__all__ = ["MedisynthError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medisynth' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
