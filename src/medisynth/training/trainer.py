"""The one training loop every model goes through: ``train(TrainConfig) -> RunResult``.

Design choices that make runs reproducible and resumable exactly:
- the train split is loaded once as a uint8 tensor on the device and converted per batch;
- the batch order of epoch ``e`` (a permutation, or class-weighted draws with ``class_draws``) comes
  from a generator seeded with (seed, e), so the position in the data is a pure function of the step number;
- all other randomness (init, latents, dropout) comes from torch's global RNG, which
  is seeded once and saved/restored with every checkpoint (sample grids fork it);
- a checkpoint after step N holds everything the next step reads.
So training 2N steps equals training N, resuming, and training N more (tested, bitwise on the CPU).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medisynth.data.dataset import PreparedDataset, uint8_to_float
from medisynth.device import resolve_device
from medisynth.errors import MedisynthError
from medisynth.io import read_json, write_json
from medisynth.models.ada import CEILING_WARNING_KEY, AdaptiveAugment
from medisynth.models.base import DataSpec, GenerativeModel, build_model, get_model_class
from medisynth.outputs import create_run_dir
from medisynth.runs import Run, is_run
from medisynth.training import distributed
from medisynth.training.checkpoint import load_checkpoint, remove_interrupted_writes, save_checkpoint
from medisynth.training.divergence import DivergenceGuard
from medisynth.training.config import BUDGET_FIELDS, RESUME_OVERRIDABLE, TrainConfig
from medisynth.training.intervals import IntervalClock
from medisynth.training.logging import MetricsLog, plot_losses, save_grid, truncate_metrics
from medisynth.training.monitor import DiversityMonitor, describe, eval_mode

GRID_COLUMNS = 8


@dataclass
class RunResult:
    run: Path
    steps: int
    epochs: float
    batch_size: int  # images per step (the --batch-size, or the whole split when it is smaller)
    seconds: float  # training time of this call (excludes time before a resume)
    images_per_second: float
    data_seconds: float  # of ``seconds``: gathering and converting batches
    step_seconds: float  # of ``seconds``: the model's training steps (+ EMA)
    metrics: dict[str, float] = field(default_factory=dict)  # the last logging interval's means
    classes: dict[str, "RunResult"] = field(default_factory=dict)  # per-class runs
    # the last log interval's checks as metrics.jsonl records them (collapse_warning, ada_ceiling_warning, ...)
    checks: dict = field(default_factory=dict)

    @property
    def warnings(self) -> list[str]:
        """The warnings of the last check (collapse, ADA at its ceiling), in words."""
        return check_warnings(self.checks)

    def summary(self) -> str:
        if self.classes:
            lines = [f"trained {len(self.classes)} per-class models in {self.run}"]
            lines += [f"  class {name}: {r.steps} steps, {r.images_per_second:.1f} images/s" for name, r in self.classes.items()]
            lines += [f"warning at the last check, class {name}: {w}" for name, r in self.classes.items() for w in r.warnings]
            return "\n".join(lines)
        figures = "  ".join(f"{k} {v:.4g}" for k, v in self.metrics.items())
        return "\n".join([
            f"trained {self.steps} steps ({self.epochs:.2f} epochs) in {self.seconds:.1f} s, "
            f"{self.images_per_second:.1f} images/s -> {self.run}\n  {figures}",
            *(f"warning at the last check: {w}" for w in self.warnings),
        ])


def check_warnings(checks: dict) -> list[str]:
    """The warnings of one log interval's checks (the diversity monitor's fields and ``ada_ceiling``'s), in words."""
    warnings = []
    if checks.get("collapse_warning"):
        warnings.append(f"collapse: the samples of {', '.join(map(str, checks['collapse_warning']))} were "
                        "near-identical (metrics.jsonl: collapse_warning)")
    if checks.get(CEILING_WARNING_KEY):
        warnings.append("ADA at its ceiling: the discriminator told real from generated images with every "
                        "augmentation on (metrics.jsonl: ada_ceiling_warning); look at the sample grids")
    return warnings


def ada_ceiling(model: GenerativeModel, interval_metrics: dict[str, float]) -> dict[str, bool]:
    """{CEILING_WARNING_KEY: whether ADA's p stayed at 1 through the interval} for a model whose augmentation adapts,
    else {} (see ``medisynth.models.ada``)."""
    augment = getattr(model, "augment", None)
    if not isinstance(augment, AdaptiveAugment) or not augment.adaptive or "ada_p" not in interval_metrics:
        return {}
    return {CEILING_WARNING_KEY: augment.at_ceiling(interval_metrics["ada_p"])}


# -- data ---------------------------------------------------------------------
@dataclass
class TrainingData:
    images: torch.Tensor  # uint8 N x C x H x W on the device
    labels: torch.Tensor  # int64 N
    masks: torch.Tensor | None  # uint8 N x 1 x H x W, for models that need masks
    spec: DataSpec


def load_training_data(config: TrainConfig, model_cls: type[GenerativeModel], device: torch.device) -> TrainingData:
    if config.target == "masks" and model_cls.needs_masks:
        raise MedisynthError(f"--target masks trains on masks alone; model {config.model!r} needs image + mask pairs")
    with_masks = config.target == "masks" or model_cls.needs_masks
    dataset = PreparedDataset(config.data, split="train", with_masks=with_masks)
    manifest = dataset.manifest
    labels = torch.as_tensor(np.array(dataset.labels), device=device)
    if config.target == "masks":
        images, masks, channels = torch.from_numpy(dataset.masks_uint8())[:, None].to(device), None, 1
    else:
        images, _ = dataset.to_tensor(device)
        masks = torch.from_numpy(dataset.masks_uint8())[:, None].to(device) if model_cls.needs_masks else None
        channels = manifest.channels
    if config.class_index is not None:
        keep = labels == config.class_index
        images, labels = images[keep], labels[keep]
        masks = masks[keep] if masks is not None else None
    if len(images) == 0:
        which = f"class {manifest.class_names[config.class_index]!r} of " if config.class_index is not None else ""
        raise MedisynthError(f"{config.data}: {which}the train split has no images; prepare it with a train split")
    spec = DataSpec(image_size=manifest.image_size, channels=channels, class_names=list(manifest.class_names))
    return TrainingData(images.contiguous(), labels, masks.contiguous() if masks is not None else None, spec)


#: class_draws -> the exponent p of a class's share of the draws, proportional to count ** p
CLASS_DRAW_EXPONENT = {"uniform": 1.0, "sqrt": 0.5, "balanced": 0.0}


def class_draw_counts(counts: np.ndarray, class_draws: str) -> np.ndarray:
    """How many of an epoch's ``counts.sum()`` draws each class gets: shares proportional to count ** p
    (p = 1, 0.5, 0 for uniform, sqrt, balanced; classes without images get none), rounded to whole draws
    by largest remainder so they add up to the epoch."""
    counts = np.asarray(counts, dtype=np.int64)
    weights = np.where(counts > 0, counts.astype(np.float64) ** CLASS_DRAW_EXPONENT[class_draws], 0.0)
    exact = counts.sum() * weights / weights.sum()
    draws = np.floor(exact).astype(np.int64)
    remainder_order = np.argsort(-(exact - draws), kind="stable")
    draws[remainder_order[: counts.sum() - draws.sum()]] += 1
    return draws


def epoch_order(seed: int, epoch: int, labels: torch.Tensor, class_draws: str, device: torch.device) -> torch.Tensor:
    """The image indices of one epoch, in batch order: a function of (seed, epoch) only, so resuming needs
    just the step. ``uniform`` is a permutation (every image once); ``sqrt`` and ``balanced`` give each
    class its share of the epoch's draws (:func:`class_draw_counts`) and cycle through the class's images in
    fresh permutations, so the images of a small class are repeated evenly rather than at random."""
    n = len(labels)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if class_draws == "uniform":
        return torch.randperm(n, generator=generator).to(device)
    labels = labels.cpu()
    draws = class_draw_counts(np.bincount(labels.numpy(), minlength=int(labels.max()) + 1), class_draws)
    chosen = []
    for c, k in enumerate(draws.tolist()):
        members = torch.nonzero(labels == c).flatten()
        rounds = -(-k // len(members)) if k else 0  # fresh permutations of the class enough for its k draws
        cycles = [members[torch.randperm(len(members), generator=generator)] for _ in range(rounds)]
        chosen.append(torch.cat(cycles)[:k] if cycles else members[:0])
    order = torch.cat(chosen)
    return order[torch.randperm(n, generator=generator)].to(device)


# -- config resolution ----------------------------------------------------------
def resolve_config(config: TrainConfig) -> tuple[TrainConfig, bool]:
    """(the config to run, whether it resumes). A resume starts from the run's saved config and
    takes only budget/bookkeeping fields from ``config`` where they differ from the defaults."""
    if config.resume is None:
        model_cls = get_model_class(config.model)  # an unknown name first: no other setting matters without a model
        config.validate()
        if config.batch_size is None:  # config.json records the batch size the run trains with
            config = dataclasses.replace(config, batch_size=model_cls.default_batch_size)
        return config, False
    opened = Run.open(config.resume)
    run = opened.path
    saved = TrainConfig.from_dict(opened.config, source=str(opened.config_json))
    defaults = TrainConfig()
    changes = {k: getattr(config, k) for k in RESUME_OVERRIDABLE if getattr(config, k) != getattr(defaults, k)}
    if any(k in changes for k in BUDGET_FIELDS):
        # a budget given on resume replaces the run's whole budget: `--resume RUN --minutes 30` on a run
        # trained with --steps 4 must not stop at step 4
        changes.update({k: getattr(config, k) for k in BUDGET_FIELDS})
    fixed = [
        f.name for f in dataclasses.fields(TrainConfig)
        if f.name not in RESUME_OVERRIDABLE + ("resume", "out", "overwrite")
        and getattr(config, f.name) != getattr(defaults, f.name)
        and getattr(config, f.name) != getattr(saved, f.name)
    ]
    if fixed:
        raise MedisynthError(
            f"--resume {run}: {', '.join(fixed)} cannot change when resuming (the run fixes them); "
            f"only the budget and logging settings can ({', '.join(RESUME_OVERRIDABLE)})"
        )
    resolved = dataclasses.replace(saved, **changes, resume=run, out=run, overwrite=False)
    resolved.validate()
    return resolved, True


def record_budget(run: Path, config: TrainConfig) -> None:
    """Write a resume's budget into the run's config.json: it replaced the run's whole budget (``resolve_config``), so
    `runs compare`, `export` and a later plain `--resume` read the budget the run now trains to, not the first one."""
    path = Run(run).config_json
    saved = read_json(path)
    updated = {**saved, **{k: getattr(config, k) for k in BUDGET_FIELDS}}
    if updated != saved:
        write_json(path, updated)


# -- the loop -------------------------------------------------------------------
def train(config: TrainConfig) -> RunResult:
    """Train ``config.model`` on ``config.data`` into the run folder ``config.out`` (or resume ``config.resume``).

    Writes config.json, model.json, checkpoints/, metrics.jsonl, loss.png and sample grids
    (layout: ``medisynth.runs``); ``per_class`` trains one unconditional model per class in
    class-<index>/. Stops at the first budget reached (epochs, steps, minutes). Raises
    MedisynthError on bad input, before training starts."""
    config, resuming = resolve_config(config)
    warn_if_bf16_is_emulated(config)  # once, not once per class of a per-class run
    if config.per_class:
        return _train_per_class(config, resuming)
    return _train_one(config, resuming)


def _train_per_class(config: TrainConfig, resuming: bool) -> RunResult:
    """One unconditional model per class, each in RUN/class-<index>/ with the full budget."""
    model_cls = get_model_class(config.model)
    if model_cls.conditional:
        raise MedisynthError(
            f"--model-per-class: model {config.model!r} is conditional (one model learns every class); drop --model-per-class"
        )
    run = Path(config.out)
    dataset = PreparedDataset(config.data, split="train")
    counts = dataset.class_counts()
    class_names = dataset.class_names
    if not resuming and distributed.is_main():
        create_run_dir(run, config.overwrite, inputs=(config.data,))
        Run.create(
            run, config.to_json(),
            {"model": config.model, "per_class": True, "class_names": class_names,
             "classes": {str(i): f"class-{i}" for i, c in enumerate(counts) if c > 0},
             "skipped_classes": [class_names[i] for i, c in enumerate(counts) if c == 0]},
        )
    if resuming and distributed.is_main():
        record_budget(run, config)
    results: dict[str, RunResult] = {}
    for index, count in enumerate(counts):
        if count == 0:
            print(f"warning: class {class_names[index]!r} has no training images; no model for it", file=sys.stderr)
            continue
        sub = Run(run).class_dir(index)
        child = dataclasses.replace(config, per_class=False, class_index=index, out=sub, resume=None, overwrite=False)
        if resuming and is_run(sub):
            child = dataclasses.replace(child, resume=sub)
            child, _ = resolve_config(child)
            results[class_names[index]] = _train_one(child, True)
        else:
            results[class_names[index]] = _train_one(child, False)
    total_seconds = sum(r.seconds for r in results.values())
    loop_seconds = sum(r.data_seconds + r.step_seconds for r in results.values())
    total_images = sum(r.images_per_second * (r.data_seconds + r.step_seconds) for r in results.values())
    return RunResult(
        run=run, steps=sum(r.steps for r in results.values()), epochs=float("nan"),
        batch_size=max((r.batch_size for r in results.values()), default=0), seconds=total_seconds,
        images_per_second=total_images / loop_seconds if loop_seconds else 0.0,
        data_seconds=sum(r.data_seconds for r in results.values()),
        step_seconds=sum(r.step_seconds for r in results.values()), classes=results,
    )


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def _hyper_json(hyper: Any) -> dict[str, Any]:
    return dataclasses.asdict(hyper) if dataclasses.is_dataclass(hyper) else {}


def _train_one(config: TrainConfig, resuming: bool) -> RunResult:
    device = distributed.setup(resolve_device(config.device))
    if config.threads:
        torch.set_num_threads(config.threads)
    model_cls = get_model_class(config.model)
    data = load_training_data(config, model_cls, device)
    run = Path(config.out)

    seed_everything(config.seed)
    # a resumed run continues the model its model.json records, whatever today's defaults are
    hyper = model_cls.saved_hyper(Run(run).info.get("hyper", {})) if resuming else config.hyper_overrides()
    model = build_model(config.model, data.spec, hyper).to(device)
    use_ema = config.ema_decay > 0 and bool(model.ema_networks)
    model.use_ema = use_ema
    optimizers = model.configure_optimizers()
    distributed.average_gradients(optimizers)  # no-op on one process

    start_step, elapsed_before = 0, 0.0
    if resuming:
        remove_interrupted_writes(Run(run).checkpoints)  # left by a run killed inside a checkpoint write
        checkpoint = Run(run).latest_checkpoint()
        state = load_checkpoint(checkpoint, model, optimizers, rng=True)
        distributed.share_cuda_rng(device)  # several GPUs: every rank draws from rank 0's restored state
        start_step, elapsed_before = int(state["step"]), float(state.get("elapsed", 0.0))
        if distributed.is_main():
            truncate_metrics(run, start_step)
            record_budget(run, config)
    else:
        if distributed.is_main():
            create_run_dir(run, config.overwrite, inputs=(config.data,))
        if config.batch_size > len(data.images):  # config.json records the batch size used
            if config.batch_size != model_cls.default_batch_size:  # one the user asked for: say so
                print(f"warning: --batch-size {config.batch_size} is more than the {len(data.images)} training "
                      f"images; using {len(data.images)}", file=sys.stderr)
            config = dataclasses.replace(config, batch_size=len(data.images))
        if distributed.is_main():  # rank 0 alone writes the run folder
            Run.create(
                run, config.to_json(),
                {"model": config.model, "per_class": False, "spec": dataclasses.asdict(data.spec),
                 "hyper": _hyper_json(model.hyper), "ema": use_ema, "target": config.target,
                 "class_index": config.class_index, "conditional": model_cls.conditional},
            )
    model = distributed.sync_batchnorm(model, device)  # several GPUs: BatchNorm over the global batch
    distributed.broadcast_module(model)  # every rank starts from rank 0's weights
    distributed.barrier()  # the run folder exists before any rank goes on

    n = len(data.images)
    batch_size = min(config.batch_size, n)  # global: split over the ranks
    local_batch = distributed.local_batch_size(batch_size)  # checks it divides
    batches = n // batch_size  # drop the ragged last batch: every step sees batch_size images
    total_steps = _step_budget(config, batches)
    deadline = config.minutes * 60.0 if config.minutes is not None else math.inf

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    autocast = training_autocast(config, device)
    grid_labels, grid_rows = _grid_labels(model_cls, data.spec, config.class_index, device)
    # GANs: per-class diversity of fixed samples each log interval, with a warning on collapse
    monitor = DiversityMonitor.for_run(model, data.images, data.labels, data.spec.class_names, config.class_index, config.seed)
    grid_names = _grid_row_names(model_cls, data.spec, config.class_index, grid_rows)
    clocks = {name: IntervalClock(interval) for name, interval in config.intervals().items()}

    log = MetricsLog(run) if distributed.is_main() else None
    def restore_checkpoint() -> int:
        step = int(load_checkpoint(Run(run).latest_checkpoint(), model, optimizers, rng=True)["step"])
        distributed.share_cuda_rng(device)
        return step

    guard = DivergenceGuard(config.on_nan, model, optimizers, run=run, restore_checkpoint=restore_checkpoint)
    if not resuming:
        guard.remember_initial_state()
    sums: dict[str, float] = {}
    interval_count, interval_start = 0, time.perf_counter()
    last_metrics: dict[str, float] = {}
    last_checks: dict = {}
    data_seconds = step_seconds = 0.0
    step, epoch, perm = start_step, -1, None
    t_start = time.perf_counter()
    last_checkpoint = start_step if resuming else -1

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t_start

    ema_statistics_step = -1
    # the EMA's statistics are taken over the classes in the proportions training draws them
    draw_labels = (data.labels if config.class_draws == "uniform"
                   else data.labels[epoch_order(config.seed, 0, data.labels, config.class_draws, device)])

    def refresh_ema() -> None:
        """EMA networks get normalisation statistics of their own weights before they are sampled, measured or
        saved (once per step). Every rank calls it at the same steps: a synchronised BatchNorm all-reduces."""
        nonlocal ema_statistics_step
        if use_ema and ema_statistics_step != step:
            model.refresh_ema_statistics(draw_labels, seed=config.seed + step)
            ema_statistics_step = step

    def interval_checks() -> dict:
        """The diversity monitor's and ADA's checks at the end of a log interval, for its metrics.jsonl record
        (the monitor samples on the main rank only); the last are kept for the result."""
        nonlocal last_checks
        if monitor:
            refresh_ema()
        last_checks = {**(monitor.check(model) if monitor and distributed.is_main() else {}),
                       **ada_ceiling(model, last_metrics)}
        return last_checks

    def close_interval() -> dict:
        """The log interval's mean figures, rate and checks, written to metrics.jsonl as one record; returns the
        checks. The rate is taken before the checks: sampling for them is not training time."""
        nonlocal last_metrics
        images_per_second = interval_count * batch_size / max(time.perf_counter() - interval_start, 1e-9)
        last_metrics = distributed.mean_over_ranks({k: v / interval_count for k, v in sums.items()})
        checks = interval_checks()
        if log is not None:
            log.write({"step": step, "epoch": step / batches, "seconds": round(elapsed(), 3),
                       "images_per_second": images_per_second, **last_metrics, **checks})
        return checks

    def checkpoint() -> None:
        nonlocal last_checkpoint
        refresh_ema()
        if distributed.is_main():
            save_checkpoint(run, step, model, optimizers,
                            {"epoch": step / batches, "elapsed": elapsed(), "metrics": last_metrics})
            plot_losses(run, model_cls.log_keys)
        last_checkpoint = step

    from medisynth.progress import make_progress

    progress = make_progress()
    print_lines = config.progress and progress.disable
    progress.disable = progress.disable or not config.progress or not distributed.is_main()
    print_lines = print_lines and distributed.is_main()
    epochs_total = math.ceil(total_steps / batches) if math.isfinite(total_steps) else None
    try:
        with progress:
            task = progress.add_task(_describe(step, batches, epochs_total), total=None if not math.isfinite(total_steps) else total_steps,
                                     completed=start_step, status="")
            session_seconds = 0.0  # rank 0's clock at the end of the last step, the same on every rank
            while step < total_steps and elapsed_before + session_seconds < deadline:
                t0 = time.perf_counter()
                e, b = divmod(step, batches)
                if e != epoch:
                    epoch, perm = e, epoch_order(config.seed, e, data.labels, config.class_draws, device)
                index = distributed.shard(perm[b * batch_size : (b + 1) * batch_size])
                batch = {"image": uint8_to_float(data.images[index]), "label": data.labels[index]}
                if data.masks is not None:
                    batch["mask"] = data.masks[index].float().div_(255.0)
                t1 = time.perf_counter()
                with autocast, distributed.global_batch_draws(local_batch):
                    figures = model.training_step(batch, optimizers, step)
                # the weights go into a checkpoint after this step: check them first
                # under torchrun every rank must take the same decisions (they are followed by collectives):
                # the clocks and the budget read rank 0's seconds, and a divergence on any rank is one on all.
                # Rank 0, which writes checkpoints, checks the weights whenever its own clock makes one due.
                seconds = time.perf_counter() - t_start
                due = clocks["checkpoint"].pending(step + 1, seconds)
                problem = guard.problem(figures) or (guard.weights_problem() if due else None)
                session_seconds, anywhere = distributed.agree_on_step(seconds, problem is not None, device)
                if anywhere and problem is None:
                    problem = "a non-finite value on another rank"
                if problem is not None:  # diverged: roll back to the last good state, or stop (raises)
                    step = guard.recover(step + 1, problem, has_checkpoint=last_checkpoint >= 0)
                    ema_statistics_step = -1  # the rolled-back EMA will reach steps it was refreshed at before
                    if log is not None:
                        log.truncate(step)
                    epoch, sums, interval_count, interval_start = -1, {}, 0, time.perf_counter()
                    progress.update(task, completed=step)
                    continue
                if use_ema:
                    # EMA warm-up (as in TF's ExponentialMovingAverage): early averages do not
                    # stay stuck at the random initialisation in short runs
                    model.update_ema(min(config.ema_decay, (1 + step) / (10 + step)))
                step += 1
                t2 = time.perf_counter()
                data_seconds += t1 - t0
                step_seconds += t2 - t1
                for k, v in figures.items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                interval_count += 1
                progress.update(task, completed=step)

                if clocks["log"].due(step, session_seconds) or step >= total_steps:
                    checks = close_interval()
                    sums, interval_count = {}, 0
                    description, status = _describe(step, batches, epochs_total), _status(last_metrics, model_cls.log_keys)
                    status += f"  {describe(checks)}" if "diversity" in checks else ""
                    status += "  ADA AT CEILING (p = 1)" if checks.get(CEILING_WARNING_KEY) else ""
                    progress.update(task, description=description, status=status)
                    if print_lines:  # no terminal (batch job, pipe): one log line per interval instead of a bar
                        print(f"{description} {status}", file=sys.stderr, flush=True)
                    interval_start = time.perf_counter()  # the diversity check is not training time
                if clocks["sample"].due(step, session_seconds):
                    refresh_ema()
                    if distributed.is_main():
                        _sample_grid(model, Run(run).samples / f"step-{step:06d}.png", grid_labels, grid_rows,
                                     config.seed, grid_names)
                        log.add_grid(Run(run).samples / f"step-{step:06d}.png", step)
                if clocks["checkpoint"].due(step, session_seconds):
                    checkpoint()
            if interval_count:  # stopped by the clock between logging steps
                close_interval()
            if last_checkpoint != step:
                checkpoint()
            elif distributed.is_main():
                plot_losses(run, model_cls.log_keys)
            final_grid = Run(run).samples / f"step-{step:06d}.png"
            if distributed.is_main() and not final_grid.exists():
                _sample_grid(model, final_grid, grid_labels, grid_rows, config.seed, grid_names)
                log.add_grid(final_grid, step)
    except KeyboardInterrupt:
        kept = f"step {last_checkpoint}" if last_checkpoint >= 0 else "none yet"
        print(f"\ninterrupted at step {step}; last checkpoint: {kept}. "
              f"Continue with `medisynth train --resume {run}`", file=sys.stderr)
        raise
    finally:
        if log is not None:
            log.close()

    seconds = time.perf_counter() - t_start
    done = step - start_step
    if resuming and done == 0:
        print(f"warning: {run} had already reached its budget at step {step}; nothing was trained. "
              "Pass a larger --steps, --epochs or --minutes (budgets count the whole run)", file=sys.stderr)
    loop_seconds = data_seconds + step_seconds  # images/s of training itself, not checkpoints and sample grids
    return RunResult(
        run=run, steps=step, epochs=step / batches, batch_size=batch_size, seconds=seconds,
        images_per_second=done * batch_size / loop_seconds if loop_seconds > 0 else 0.0,
        data_seconds=data_seconds, step_seconds=step_seconds, metrics=last_metrics, checks=last_checks,
    )


def training_autocast(config: TrainConfig, device: torch.device):
    """The mixed-precision context of the training steps: bf16 on CUDA (``amp``, where the card has bf16) and on the
    CPU only when asked for (``cpu_amp``); otherwise none (fp32)."""
    if config.amp and device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if config.cpu_amp and device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def warn_if_bf16_is_emulated(config: TrainConfig) -> None:
    """A warning on stderr when ``cpu_amp`` will train on a CPU without native bf16, where it is slower than fp32."""
    if config.cpu_amp and resolve_device(config.device).type == "cpu" and not cpu_has_native_bf16() and distributed.is_main():
        print(f"warning: --cpu-amp on a CPU without native bf16 instructions (torch uses "
              f"{torch.backends.cpu.get_cpu_capability()}): bf16 steps ran about 8x slower than fp32 on such a CPU "
              "(benchmarks/bench_cpu_amp.py); train without --cpu-amp", file=sys.stderr)


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX); without them bf16 is emulated."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _step_budget(config: TrainConfig, batches: int) -> float:
    budgets = []
    if config.steps is not None:
        budgets.append(config.steps)
    if config.epochs is not None:
        budgets.append(config.epochs * batches)
    return min(budgets) if budgets else math.inf


def _describe(step: int, batches: int, epochs_total: int | None) -> str:
    e, b = divmod(step, batches)
    if b == 0 and step > 0:
        e, b = e - 1, batches
    return f"[{e + 1}/{epochs_total or '?'}][{b}/{batches}]"


def _status(metrics: dict[str, float], keys: tuple[str, ...]) -> str:
    keys = tuple(k for k in keys if k in metrics) + tuple(k for k in metrics if k not in keys)
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys)


# -- sample grids -----------------------------------------------------------------
def _grid_labels(model_cls, spec: DataSpec, class_index: int | None, device) -> tuple[torch.Tensor, int]:
    """One row per class for conditional models; 4 rows of the (single) class otherwise."""
    if model_cls.conditional:
        labels = torch.arange(spec.num_classes).repeat_interleave(GRID_COLUMNS)
        return labels.to(device), spec.num_classes
    fill = class_index if class_index is not None else 0
    return torch.full((4 * GRID_COLUMNS,), fill, dtype=torch.long, device=device), 4


def _grid_row_names(model_cls, spec: DataSpec, class_index: int | None, rows: int) -> list[str] | None:
    """The class name drawn left of each grid row (see ``_grid_labels`` for the rows); None for an unconditional
    model trained on several classes at once, whose rows are of no one class."""
    if model_cls.conditional:
        return list(spec.class_names)
    if class_index is None and spec.num_classes > 1:
        return None
    return [spec.class_names[class_index if class_index is not None else 0]] * rows


def _sample_grid(model: GenerativeModel, path: Path, labels: torch.Tensor, rows: int, seed: int,
                 row_names: list[str] | None = None) -> None:
    """Fixed latents (a generator seeded from the run seed) so grids over time are comparable.
    Forks the global RNG so drawing a grid never changes the training trajectory."""
    if not getattr(model, "samples_from_noise", True):
        return  # pix2pix / edsr translate or upsample: they have no samples from noise to show
    device = labels.device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), eval_mode(model), torch.no_grad():
        generator = torch.Generator(device).manual_seed(seed + 12345)
        images = model.generate(labels, generator=generator)
    save_grid(path, images, nrow=len(labels) // rows, row_names=row_names)
