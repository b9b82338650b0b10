"""Downstream utility: does adding synthetic images help a classifier on REAL test images?

``run_utility(UtilityConfig(...))`` trains a classifier per protocol (real, real-aug,
real-balanced, real-balanced-aug, real-weighted, real+synthetic, real-balanced+synthetic, synthetic) and seed,
validates on the real val split, tests on the real test split, and writes utility.json/.md/.html.
See ``run.py``, ``data.py`` (what each protocol trains on), ``metrics.py`` and ``stats.py``.
"""
from medisynth.downstream.data import DEFAULT_PROTOCOLS, PROTOCOLS
from medisynth.downstream.run import UtilityConfig, run_utility

__all__ = ["DEFAULT_PROTOCOLS", "PROTOCOLS", "UtilityConfig", "run_utility"]
