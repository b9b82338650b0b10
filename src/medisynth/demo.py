"""The end-to-end job on built-in phantom data: what `make demo` runs.

phantom fundus set (EyePACS class proportions) -> prepare -> train the few-shot class-conditional
GAN (fastgan) -> sample every grade -> balance -> evaluate -> utility -> report paths and a
one-line verdict: did real + synthetic beat plain oversampling of the real images?
Sized to finish in under 12 minutes on a 2-core CPU: the GAN trains for as long as its budget (11 minutes for the
whole demo) leaves once the later stages' time is projected from its own step time. Every stage is the public API.
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from rich.console import Console

from medisynth.errors import MedisynthError
from medisynth.io import write_json
from medisynth.outputs import check_output, write_marker

if TYPE_CHECKING:
    from medisynth.training.trainer import RunResult

console = Console()


@dataclass
class DemoConfig:
    out: Path = Path("demo_output")
    # at 1,000 images the utility classifiers' 10 epochs were 110 steps and every one stayed at chance
    n_images: int = 1500
    size: int = 64  # lesions are a few pixels wide: at 32 px the grades are hard to tell apart even for a classifier
    model: str = "fastgan"  # with its defaults: the few-minute recipe (docs/fastgan.md, "The few-minute recipe")
    # the whole demo's wall time when ``train_minutes`` is None: the GAN trains for what the other stages leave of it.
    # A minute under the 12 the demo must keep, for the projection's error and a busier hour
    budget_minutes: float = 11.0
    # None: fill ``budget_minutes`` on a CPU (train CALIBRATION_MINUTES, project the later stages from the step time,
    # resume for the rest; GPU_TRAIN_MINUTES on a GPU). A number fixes the training time instead: 5 until session 33,
    # when the whole demo took 11:20-11:52 on an AVX2 2-core CPU and 7:20-8:41 on an AVX512 one
    train_minutes: Optional[float] = None
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

    def validate(self) -> None:
        """Refuse a time below 0 before any stage runs (the trainer would refuse it only after the data is made)."""
        if not self.budget_minutes > 0:
            raise MedisynthError(f"--budget-minutes {self.budget_minutes:g}: the demo's wall time must be above 0 "
                                 f"(default {DemoConfig.budget_minutes:g}); --train-minutes sets the training time alone")
        if self.train_minutes is not None and not self.train_minutes > 0:
            raise MedisynthError(f"--train-minutes {self.train_minutes:g}: must be above 0, or left out to fill "
                                 f"--budget-minutes")


#: what the stages after training (sample, balance, evaluate, utility) cost, in units of the GAN's seconds per
#: training step, at the demo's default sizes. Both scale with the CPU: in the 8 demo runs of sessions 26-32 (an AVX2
#: and an AVX512 2-core CPU, 57-159 ms a step) the later stages took 2,185-2,519 times the step time; sampling,
#: balancing and evaluating 1,050-1,300 of it, each utility protocol's three classifiers 506-730. The upper ends,
#: so that the projection errs long
LATER_STAGES_FIXED, LATER_STAGES_PER_PROTOCOL = 1300.0, 730.0
#: the first training call, whose step time the projection reads (the rest resumes the same run)
CALIBRATION_MINUTES = 1.0
#: the trainer's own time around the steps of the two calls (data, checkpoints, grids, the resume), in seconds
TRAINING_OVERHEAD_S = 15.0
#: training minutes on a GPU, where the projection (measured on CPUs only) does not hold
GPU_TRAIN_MINUTES = 5.0


def projected_later_seconds(seconds_per_step: float, protocols: int) -> float:
    """The projected wall time of the stages after training, from the GAN's seconds per training step."""
    return seconds_per_step * (LATER_STAGES_FIXED + LATER_STAGES_PER_PROTOCOL * protocols)


def train_within_budget(config: DemoConfig, data: Path, run_dir: Path,
                        started: float) -> tuple["RunResult", Optional[dict]]:
    """Train the demo's GAN into ``run_dir``: for ``train_minutes`` where set (or on a GPU), else for what
    ``budget_minutes``, counted from ``started`` (a ``time.perf_counter()``), leaves once the stages after training are
    projected from the step time of a first CALIBRATION_MINUTES (the rest resumes the run). Returns the trainer's
    result and the budget's figures (None for a fixed time)."""
    from medisynth.device import resolve_device
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    fixed_minutes = config.train_minutes
    if fixed_minutes is None and resolve_device(config.device).type != "cpu":
        fixed_minutes = GPU_TRAIN_MINUTES
    first = TrainConfig(data=data, model=config.model, out=run_dir, seed=config.seed, device=config.device,
                        minutes=CALIBRATION_MINUTES if fixed_minutes is None else fixed_minutes)
    console.print(f"training for {first.minutes:g} min" + ("" if fixed_minutes is not None else
                  f", then for as long as a {config.budget_minutes:g}-minute demo allows"), markup=False)
    run = train(first)
    if fixed_minutes is not None:
        return run, None
    seconds_per_step = run.seconds / max(run.steps, 1)  # wall time, as the constants were measured
    later = projected_later_seconds(seconds_per_step, len(config.utility_protocols))
    left = config.budget_minutes * 60 - (time.perf_counter() - started) - later - TRAINING_OVERHEAD_S
    minutes = CALIBRATION_MINUTES + max(left, 0.0) / 60
    console.print(f"{seconds_per_step * 1000:.0f} ms a step: the stages after training projected at {later:.0f} s; "
                  f"training {minutes:.1f} min in all", markup=False)
    if left > 0:
        run = train(TrainConfig(resume=run_dir, minutes=minutes, device=config.device))
    else:
        console.print(f"warning: this CPU cannot keep the demo within {config.budget_minutes:g} minutes (training "
                      f"stops after {CALIBRATION_MINUTES:g}); --train-minutes sets the training time instead",
                      markup=False)
    return run, {"budget_minutes": config.budget_minutes, "seconds_per_step": seconds_per_step,
                 "projected_later_s": later, "train_minutes": minutes}


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
    from medisynth.downstream import UtilityConfig, run_utility

    started = time.perf_counter()
    config.validate()
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

    t = _stage(f"3/7 train the class-conditional GAN {config.model}")
    run, budget = train_within_budget(config, prepared.out, out / "run", started)
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
               "collapse_warning": collapsed, CEILING_WARNING_KEY: at_ceiling, "train_steps": run.steps,
               "training_budget": budget, "total_s": time.perf_counter() - started}
    write_json(out / "demo.json", summary)
    console.rule("[bold green]done")
    # markup off for text that carries paths or intervals: rich would take "[my run]" for a style and drop it
    console.print(f"evaluation report: {out / 'report' / 'report.html'}", markup=False)
    console.print(f"utility report:    {out / 'utility' / 'utility.html'}", markup=False)
    console.print("stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
                  + f"; {summary['total_s'] / 60:.1f} min in all, {run.steps} training steps", markup=False)
    console.print(verdict, markup=False, style="bold")
    for line in detectability_lines({space: spotted} if spotted else {}):
        console.print(line.strip(), markup=False)
    for warning in run.warnings:  # the trainer's own words, as `medisynth train` closes with them
        console.print(f"warning when training stopped ({out / 'run'}): {warning}", markup=False)
    return {"summary": summary, "metrics": metrics, "utility": utility, "sampled": sampled, "balanced": balanced,
            "run": run}
