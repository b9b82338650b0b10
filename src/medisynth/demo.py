"""The end-to-end job on built-in phantom data: what `make demo` runs.

phantom fundus set (EyePACS class proportions) -> prepare -> train the few-shot class-conditional
GAN (fastgan) -> sample every grade -> balance -> evaluate -> utility -> report paths and a
one-line verdict: did real + synthetic beat plain oversampling of the real images?
Sized to finish in under 12 minutes on a 2-core CPU; every stage is the public API.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rich.console import Console

from medisynth.io import write_json
from medisynth.outputs import check_output, write_marker

console = Console()


@dataclass
class DemoConfig:
    out: Path = Path("demo_output")
    # at 1,000 images the utility classifiers' 10 epochs were 110 steps and every one stayed at chance
    n_images: int = 1500
    size: int = 64  # lesions are a few pixels wide: at 32 px the grades are hard to tell apart even for a classifier
    model: str = "fastgan"  # with its defaults: the few-minute recipe (docs/fastgan.md, "The few-minute recipe")
    train_minutes: float = 5.0
    # synthetic images of every grade: at least this many, and the rarer grades as many as topping them up to the
    # largest needs (the utility study's top-up), so one folder serves evaluation, the top-up and the balanced mix
    samples_per_grade: int = 200
    # fresh phantom eyes, equally many per grade, on which alone the utility classifiers are scored
    # (`medisynth utility --test-data`): the prepared set's own test split holds 7 and 6 images of grades 3 and 4,
    # each worth 0.03 of a balanced accuracy, and two demo runs of one recipe differed by 0.17
    test_images: int = 500
    utility_seeds: int = 3
    utility_epochs: int = 10
    utility_width: int = 16  # a narrow classifier keeps 6 trainings (9 with the top-up) inside the demo's budget
    # oversampling and the balanced mix (every grade half synthetic), which the verdict compares with oversampling:
    # the use the README recommends, because on 1,000 fresh eyes it beat the top-up of the rarer grades in all 10 of
    # the benchmark's fastgan pairs (bench_heldout_utility). The top-up's three classifiers (`--top-up`,
    # WITH_TOP_UP) took 95 s, which a slower 2-core CPU did not have inside the demo's 12 minutes
    utility_protocols: tuple[str, ...] = ("real-balanced", "real-balanced+synthetic")
    domain_epochs: int = 10
    # the evaluation's domain classifier: at its standard recipe (width 32, flips/rotations/colour jitter) 10 epochs
    # on the demo's set stayed at chance (test balanced accuracy 0.21) in 106 s; narrow and unaugmented it learned
    # the grades (0.45, p < 0.001) in a quarter of the time, so CAS means something and no label-free fallback runs
    domain_width: int = 16
    domain_augment: str = "none"
    ssl_steps: Optional[int] = None  # the label-free encoder evaluate adds when the domain classifier is at chance
    # processes drawing the phantom: each image depends only on (seed, index, grade), so any number draws the same set
    phantom_workers: int = os.cpu_count() or 1
    seed: int = 0
    device: str = "auto"
    overwrite: bool = False


def _fresh_output_folder(out: Path, overwrite: bool) -> Path:
    """An empty folder for the demo; --overwrite replaces an earlier demo's output, never anything else."""
    check_output(out, overwrite, "demo")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    write_marker(out, "demo")
    return out


def _stage(title: str):
    console.rule(f"[bold]{title}")
    return time.perf_counter()


#: the protocol the utility study's verdict judges against oversampling (the demo's only baseline), and the one the
#: demo's line also reports
VERDICT_PROTOCOL, ALSO_REPORTED = "real-balanced+synthetic", "real+synthetic"
BASELINE_PROTOCOL = "real-balanced"
#: the utility study with the top-up of the rarer grades beside the mix (`medisynth demo --top-up`)
WITH_TOP_UP = (BASELINE_PROTOCOL, ALSO_REPORTED, VERDICT_PROTOCOL)
#: the utility study's answers (``medisynth.downstream.verdict``) as the demo's line says them
ANSWERS = {"good": "YES", "poor": "NO", "doubtful": "NO CLEAR DIFFERENCE", "cannot tell": "CANNOT TELL"}


def utility_verdict(utility: dict, metric: str = "balanced_accuracy") -> str:
    """One line: did real + synthetic (the balanced mix) beat oversampling the real images? The utility study's own
    verdict (YES / NO only where the paired 95% interval over seeds lies above / below 0), its figures, and the
    top-up's beside them."""
    from medisynth.report.format import format_interval, format_number

    per_seed = {protocol: {r["seed"]: r["metrics"][metric] for r in utility["runs"] if r["protocol"] == protocol}
                for protocol in (BASELINE_PROTOCOL, VERDICT_PROTOCOL, ALSO_REPORTED)}

    def against_oversampling(protocol: str) -> tuple[float, float, str, str]:
        """Mean balanced accuracy of ``protocol`` and of oversampling, their difference, and "k of n" seeds won."""
        seeds = sorted(set(per_seed[BASELINE_PROTOCOL]) & set(per_seed[protocol]))
        mean = sum(per_seed[protocol][s] for s in seeds) / len(seeds)
        over = sum(per_seed[BASELINE_PROTOCOL][s] for s in seeds) / len(seeds)
        wins = sum(per_seed[protocol][s] > per_seed[BASELINE_PROTOCOL][s] for s in seeds)
        return mean, over, format_number(mean - over, kind="fraction", signed=True), f"{wins} of {len(seeds)}"

    verdict = utility.get("verdict") or {}
    if not (per_seed[BASELINE_PROTOCOL] and per_seed[VERDICT_PROTOCOL]) or verdict.get("protocol") != VERDICT_PROTOCOL:
        return (f"real + synthetic beat oversampling: NOT COMPARED (the utility study must run {BASELINE_PROTOCOL} "
                f"and {VERDICT_PROTOCOL} and judge the latter)")
    mix, over, difference, won = against_oversampling(VERDICT_PROTOCOL)
    interval = ("" if verdict.get("ci_low") is None else
                f", 95% CI {format_interval(verdict['ci_low'], verdict['ci_high'], kind='fraction')}")
    figures = (f"balanced mix, every grade half synthetic: balanced accuracy on {sum(utility['data']['real']['test'])} "
               f"real test images {mix:.3f} vs {over:.3f}, difference {difference}{interval}, better in {won} seeds")
    if per_seed[ALSO_REPORTED]:
        top_up, _, difference, won = against_oversampling(ALSO_REPORTED)
        figures += f"; top-up of the rarer grades {top_up:.3f}, difference {difference}, better in {won}"
    answer = ANSWERS[verdict["answer"]]
    why = f"{verdict['sentence']}; " if answer == "CANNOT TELL" else ""
    return f"real + synthetic beat oversampling: {answer} ({why}{figures})"


def run_demo(config: DemoConfig) -> dict:
    from medisynth.balancing import BalanceConfig, balance
    from medisynth.data.prepare import PrepareConfig, format_summary, prepare
    from medisynth.evaluation import EvaluateConfig, evaluate
    from medisynth.evaluation.run import detectability_lines
    from medisynth.models.ada import CEILING_WARNING_KEY
    from medisynth.phantom.fundus import GRADES, generate_fundus_dataset
    from medisynth.sampling import SampleConfig, sample
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train
    from medisynth.downstream import UtilityConfig, run_utility

    out = _fresh_output_folder(Path(config.out), config.overwrite)
    timings: dict[str, float] = {}
    # each stage writes its own folder atomically, at its final path: the run's config and the reports
    # name paths that stay valid after the demo (a whole-demo temp folder would leave them dangling)
    t = _stage("1/7 phantom fundus data (EyePACS grade proportions) and held-out eyes for the utility study")
    phantom = generate_fundus_dataset(out / "phantom", n=config.n_images, size=max(config.size, 64), seed=config.seed,
                                      workers=config.phantom_workers)
    # another seed: other eyes, never seen in training (the utility study also refuses pixel-identical ones)
    held_out = generate_fundus_dataset(out / "phantom-test", n=config.test_images, size=max(config.size, 64),
                                       seed=config.seed + 1, proportions=[1] * len(GRADES), workers=config.phantom_workers)
    timings["phantom"] = time.perf_counter() - t

    t = _stage("2/7 prepare")
    prepared = prepare(PrepareConfig(source=phantom, out=out / "prepared", size=config.size, seed=config.seed))
    console.print(format_summary(prepared.manifest))
    prepared_test = prepare(PrepareConfig(source=held_out, out=out / "prepared-test", size=config.size,
                                          seed=config.seed, classes=list(prepared.manifest.class_names)))
    timings["prepare"] = time.perf_counter() - t

    t = _stage(f"3/7 train the class-conditional GAN {config.model} ({config.train_minutes:g} min)")
    run = train(TrainConfig(data=prepared.out, model=config.model, out=out / "run", minutes=config.train_minutes,
                            seed=config.seed, device=config.device))
    timings["train"] = time.perf_counter() - t

    t = _stage("4/7 sample every grade")
    counts = prepared.manifest.counts["train"]
    largest = max(counts.values())
    per_grade = {c: max(config.samples_per_grade, largest - counts[c]) for c in prepared.manifest.class_names}
    sampled = sample(SampleConfig(run=out / "run", out=out / "synthetic", per_class=per_grade, seed=config.seed,
                                  device=config.device))
    timings["sample"] = time.perf_counter() - t

    t = _stage("5/7 balance: top every grade up to the majority count")
    balanced = balance(BalanceConfig(data=prepared.out, run=out / "run", out=out / "balanced", seed=config.seed,
                                     device=config.device))
    timings["balance"] = time.perf_counter() - t

    t = _stage("6/7 evaluate the synthetic images against the real ones")
    metrics = evaluate(EvaluateConfig(real=prepared.out, fake=out / "synthetic", out=out / "report",
                                      device=config.device, seed=config.seed, domain_epochs=config.domain_epochs,
                                      domain_width=config.domain_width, domain_augment=config.domain_augment,
                                      ssl_steps=config.ssl_steps, cache_dir=out / "cache"))
    timings["evaluate"] = time.perf_counter() - t

    t = _stage("7/7 utility: does synthetic data help a grade classifier on real test images?")
    utility = run_utility(UtilityConfig(real=prepared.out, synthetic=out / "synthetic", out=out / "utility",
                                        test_data=prepared_test.out,
                                        seeds=config.utility_seeds, epochs=config.utility_epochs,
                                        width=config.utility_width, protocols=config.utility_protocols,
                                        verdict_protocol=VERDICT_PROTOCOL,
                                        device=config.device))
    timings["utility"] = time.perf_counter() - t

    verdict = utility_verdict(utility)
    # why the answer may be NO: synthetic images a classifier can spot let "looks synthetic" stand in for a rare grade
    space = (metrics.get("verdict") or {}).get("primary_space")
    spotted = (metrics.get("detectability") or {}).get(space)
    # the trainer's last checks: grades whose samples were near-identical when training stopped, and whether the
    # discriminator still overfit with every augmentation on (ADA's p stuck at 1)
    collapsed = run.checks.get("collapse_warning", [])
    at_ceiling = bool(run.checks.get(CEILING_WARNING_KEY))
    summary = {"timings_s": timings, "run": str(out / "run"), "report": str(out / "report" / "report.html"),
               "utility_report": str(out / "utility" / "utility.html"), "sampled_per_grade": per_grade,
               "verdict": verdict, "detectability": {"space": space, **spotted} if spotted else None,
               "collapse_warning": collapsed, CEILING_WARNING_KEY: at_ceiling}
    write_json(out / "demo.json", summary)
    console.rule("[bold green]done")
    # markup off for text that carries paths or intervals: rich would take "[my run]" for a style and drop it
    console.print(f"evaluation report: {out / 'report' / 'report.html'}", markup=False)
    console.print(f"utility report:    {out / 'utility' / 'utility.html'}", markup=False)
    console.print("stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()), markup=False)
    console.print(verdict, markup=False, style="bold")
    for line in detectability_lines({space: spotted} if spotted else {}):
        console.print(line.strip(), markup=False)
    for warning in run.warnings:  # the trainer's own words, as `medisynth train` closes with them
        console.print(f"warning when training stopped ({out / 'run'}): {warning}", markup=False)
    return {"summary": summary, "metrics": metrics, "utility": utility, "sampled": sampled, "balanced": balanced,
            "run": run}
