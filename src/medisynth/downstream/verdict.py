"""The utility verdict: does adding synthetic images beat what a researcher could do without them?

Two questions, in this order:

1. Did any classifier learn anything? Each run's test balanced accuracy (the figure compared
   below) is tested against chance, 1/K (``medisynth.metrics.chance.accuracy_vs_chance`` with
   ``metric="balanced"``: a one-sided permutation test). Plain accuracy against the largest class
   share would call an oversampled classifier "at chance" for trading majority-class accuracy for
   minority recall, which is what it is for. A protocol counts as above chance when more than half
   of its seeds are.
   When no protocol is, every comparison is between noise figures: the verdict is "cannot tell".
2. Does real + synthetic (``SYNTHETIC_PROTOCOL``, the top-up, unless the study names another protocol that uses
   synthetic images, such as the balanced mix) beat the BEST non-generative baseline (real, real-aug, real-balanced,
   real-balanced-aug, real-weighted: whichever has the highest mean balanced accuracy), not just plain real? The
   difference is paired over seeds (seed i of both protocols shares the initialisation and batch
   order) and given with a 95% t-interval over the per-seed differences.

Answers: good (the interval lies above 0), poor (below 0), doubtful (it contains 0), cannot tell
(chance, a missing protocol, or fewer than 2 seeds). Picking the baseline by its test mean favours
the baseline, so a "good" here is conservative.
"""
from __future__ import annotations

import numpy as np
from scipy import stats

from medisynth.downstream.data import SYNTHETIC_PROTOCOL, WITH_SYNTHETIC
from medisynth.report.format import format_interval, format_number

METRIC = "balanced_accuracy"  # the metric the classifiers are early-stopped on
LEVEL = 0.95


def chance_by_protocol(runs: list[dict]) -> dict[str, dict]:
    """Per protocol: seeds whose test accuracy beats chance, out of how many; above chance overall."""
    out: dict[str, dict] = {}
    for r in runs:
        entry = out.setdefault(r["protocol"], {"seeds_above_chance": 0, "seeds": 0, "chance": r["chance"]["chance"]})
        entry["seeds"] += 1
        entry["seeds_above_chance"] += int(r["chance"]["better_than_chance"])
    for entry in out.values():
        entry["above_chance"] = entry["seeds_above_chance"] * 2 > entry["seeds"]
    return out


def _per_seed(runs: list[dict], protocol: str) -> np.ndarray:
    values = [r["metrics"][METRIC] for r in sorted(runs, key=lambda r: r["seed"]) if r["protocol"] == protocol]
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def utility_verdict(runs: list[dict], protocols: list[str], judged: str = SYNTHETIC_PROTOCOL) -> dict:
    """The verdict dict: answer, sentence, and the numbers behind it (see the module docstring)."""
    chance = chance_by_protocol(runs)
    out: dict = {"metric": METRIC, "level": LEVEL, "chance": chance, "protocol": judged, "baseline": None,
                 "difference": None, "ci_low": None, "ci_high": None, "n_pairs": 0}

    def answer(kind: str, sentence: str) -> dict:
        return {**out, "answer": kind, "sentence": sentence}

    if not any(c["above_chance"] for c in chance.values()):
        level = next(iter(chance.values()))["chance"] if chance else None
        return answer("cannot tell", "every protocol's test balanced accuracy is at chance (permutation test, "
                      f"p >= 0.05, against {format_number(level, kind='fraction')}): no classifier learned from "
                      "these images, so the comparison between protocols is uninformative")
    baselines = [p for p in protocols if p not in WITH_SYNTHETIC]
    if judged not in protocols or not baselines:
        return answer("cannot tell", f"the verdict compares {judged} with the best protocol without "
                      "synthetic images; run both (see --protocols), or name the protocol to judge "
                      "(--verdict-protocol)")
    means = {p: np.nanmean(_per_seed(runs, p)) if np.isfinite(_per_seed(runs, p)).any() else -np.inf for p in baselines}
    best = max(baselines, key=lambda p: means[p])
    a, b = _per_seed(runs, best), _per_seed(runs, judged)
    keep = np.isfinite(a) & np.isfinite(b)
    diff = b[keep] - a[keep]
    out.update(baseline=best, n_pairs=int(len(diff)))
    if len(diff) < 2:
        return answer("cannot tell", f"{len(diff)} paired seed(s): an interval needs at least 2 (use --seeds 3 or more)")
    mean = float(diff.mean())
    sem = float(diff.std(ddof=1) / np.sqrt(len(diff)))
    low, high = (mean, mean) if sem == 0 else (float(x) for x in stats.t.interval(LEVEL, len(diff) - 1, loc=mean, scale=sem))
    out.update(difference=mean, ci_low=low, ci_high=high)
    if not chance[judged]["above_chance"] and not chance[best]["above_chance"]:
        return answer("cannot tell", f"both {judged} and the best baseline ({best}) are at chance")
    figure = (f"{judged} minus {best} (the best baseline without synthetic images): balanced accuracy "
              f"{format_number(mean, kind='fraction', signed=True)}, {int(LEVEL * 100)}% CI {format_interval(low, high, kind='fraction')} over {len(diff)} paired seeds")
    if low > 0:
        return answer("good", f"synthetic images help: {figure}")
    if high < 0:
        return answer("poor", f"synthetic images hurt: {figure}")
    return answer("doubtful", f"no clear difference: {figure}")


__all__ = ["METRIC", "chance_by_protocol", "utility_verdict"]
