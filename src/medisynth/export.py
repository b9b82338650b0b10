"""``medisynth export RUN --out DIR``: the generator alone, to share with a colleague.

A training run keeps everything needed to resume (discriminator, live and EMA networks, optimiser
and RNG state); sampling needs only the networks ``generate`` calls. The export is itself a run
folder (``medisynth.runs``), so ``medisynth.load_run(DIR)`` and ``medisynth sample DIR`` use it
exactly like the run::

    DIR/model.json, DIR/config.json    copied byte for byte (so ``Run.id`` and provenance match the run)
    DIR/checkpoints/step-N/            model.safetensors with only the generation networks, state.json
    DIR/export.json                    what was exported: source run, step, kept and omitted networks, sizes
    DIR/README.md                      the model card (data set, classes, budget, evaluation, intended use)
    DIR/grid.png                       the run's last sample grid, when it has one
    DIR/class-<i>/                     a --model-per-class run: each class's model, exported the same way

Which networks generation needs is found, not declared: one tiny ``generate`` call records the
top-level networks it runs (the EMA copies when the run kept them, never the discriminator).
The export is then loaded back and must make the same images as the run for a fixed seed;
otherwise it is not written.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from medisynth.errors import MedisynthError
from medisynth.io import atomic_dir, atomic_write_text, follow_umask, read_json, write_json
from medisynth.runs import CHECKPOINTS, CONFIG_JSON, EXPORT_JSON, MODEL_JSON, LoadedRun, Run
from medisynth.training.checkpoint import EXPORT_FORMAT, LATEST, MODEL_FILE, STATE_JSON, checkpoint_name

MODEL_CARD = "README.md"


@dataclass
class ExportResult:
    out: Path
    run_bytes: int  # size of the run folder
    export_bytes: int  # size of the export folder
    kept: dict[str, list[str]] = field(default_factory=dict)  # sub-run ("" = the run itself) -> networks kept

    def summary(self) -> str:
        ratio = self.export_bytes / self.run_bytes if self.run_bytes else 0.0
        kept = "; ".join(f"{k or 'model'}: {', '.join(v)}" for k, v in self.kept.items())
        return (f"exported {_mib(self.export_bytes)} ({ratio:.1%} of the run's {_mib(self.run_bytes)}) to {self.out}\n"
                f"  networks kept: {kept}\n  sample it with: medisynth sample {self.out} --out DIR --n N")


def export_run(run: Path | str, out: Path | str, report: Optional[Path | str] = None, overwrite: bool = False) -> ExportResult:
    """Export the generator of the run at ``run`` into the new folder ``out`` (see the module docstring).

    ``report`` is a ``medisynth evaluate`` output folder (its metrics.json goes into the model card)."""
    source = Run.open(run)
    metrics = _read_report(report) if report is not None else None
    kept: dict[str, list[str]] = {}
    with atomic_dir(Path(out), overwrite=overwrite, kind="export", inputs=(source.path,) + ((Path(report),) if report else ())) as tmp:
        if source.per_class:
            shutil.copyfile(source.model_json, tmp / MODEL_JSON)
            shutil.copyfile(source.config_json, tmp / CONFIG_JSON)
            for index, sub in source.class_runs().items():
                (tmp / sub.path.name).mkdir()
                kept[sub.path.name] = _export_model(sub, tmp / sub.path.name)
            steps = {name: read_json(tmp / name / EXPORT_JSON)["step"] for name in kept}
        else:
            kept[""] = _export_model(source, tmp)
            steps = {"": read_json(tmp / EXPORT_JSON)["step"]}
        grid = _last_grid(source)
        if grid is not None:
            shutil.copyfile(grid, tmp / "grid.png")
        atomic_write_text(tmp / MODEL_CARD, model_card(source, tmp, steps, metrics, report, grid is not None))
    return ExportResult(Path(out), _folder_bytes(source.path), _folder_bytes(Path(out)), kept)


def _export_model(run: Run, out: Path) -> list[str]:
    """One single-model run -> ``out`` (model.json, config.json, one slim checkpoint); the networks kept."""
    loaded = run.load("cpu", ema=True)
    model = loaded.model
    if not model.samples_from_noise or model.needs_masks:
        raise MedisynthError(
            f"{run.path}: model {model.name!r} translates images rather than sampling them; export covers noise "
            "samplers (copy the run folder to share it)")
    names = _generation_networks(loaded)
    children = {name for name, _ in model.named_children()}
    omitted = sorted(children - set(names))
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k.split(".")[0] not in omitted}
    folder = out / CHECKPOINTS / checkpoint_name(loaded.step)
    folder.mkdir(parents=True)
    try:
        save_file(weights, str(folder / MODEL_FILE), metadata={
            "format": EXPORT_FORMAT, "step": str(loaded.step), "omitted": json.dumps(omitted)})
    except SafetensorError as e:  # safetensors' own error for a full disk: one line, the temporary folder goes
        raise MedisynthError(f"could not write the exported weights ({e}); free disk space, then export again") from None
    follow_umask(folder / MODEL_FILE)  # safetensors writes 0600
    write_json(folder / STATE_JSON, {"step": loaded.step, **_training_state(run)})
    atomic_write_text(out / CHECKPOINTS / LATEST, folder.name + "\n")
    shutil.copyfile(run.model_json, out / MODEL_JSON)
    shutil.copyfile(run.config_json, out / CONFIG_JSON)
    write_json(out / EXPORT_JSON, {
        "source": str(run.path.resolve()), "run_id": run.id, "step": loaded.step, "model": model.name,
        "ema": bool(model.use_ema), "kept": names, "omitted": omitted, "class_names": list(model.spec.class_names),
        "parameters": int(sum(v.numel() for k, v in weights.items() if v.is_floating_point())),
        "bytes": (folder / MODEL_FILE).stat().st_size,
    })
    _check_same_images(loaded, out)
    return names


def _generation_networks(loaded: LoadedRun) -> list[str]:
    """The top-level networks one tiny ``generate`` call runs (forward hooks record them)."""
    model = loaded.model
    called: list[str] = []
    hooks = [child.register_forward_pre_hook(lambda *_, name=name: called.append(name))
             for name, child in model.named_children()]
    try:
        loaded.generate([0], seed=0, **_quick_options(model))
    finally:
        for hook in hooks:
            hook.remove()
    return sorted(set(called))


def _quick_options(model) -> dict[str, Any]:
    """The cheapest sampling options (one diffusion step is enough to see which networks run)."""
    return {"steps": 1} if "steps" in model.sampling_options else {}


def _check_same_images(loaded: LoadedRun, out: Path) -> None:
    """The export must generate what the run generates for the same seed, or it is not written."""
    labels = list(range(min(2, len(loaded.model.spec.class_names)))) if loaded.model.conditional else [0, 0]
    options = _quick_options(loaded.model)
    expected = loaded.generate(labels, seed=1, **options)
    exported = Run(out).load("cpu", ema=True).generate(labels, seed=1, **options)
    if not torch.equal(expected, exported):
        raise MedisynthError(
            f"{loaded.path}: the generator-only export of model {loaded.model.name!r} does not reproduce the run's "
            "images (its generate uses weights outside the networks it calls); copy the run folder instead")


def _training_state(run: Run) -> dict[str, Any]:
    state = read_json(run.latest_checkpoint() / STATE_JSON)
    return {k: state[k] for k in ("epoch", "elapsed", "elapsed_seconds", "metrics") if k in state}


def _read_report(report: Path | str) -> dict[str, Any]:
    path = Path(report) / "metrics.json"
    if not path.is_file():
        raise MedisynthError(f"--report {report}: no metrics.json there; give the --out folder of `medisynth evaluate`")
    return read_json(path)


def _last_grid(run: Run) -> Optional[Path]:
    grids = sorted(run.samples.glob("step-*.png")) if run.samples.is_dir() else []
    if not grids and run.per_class:
        grids = sorted(p for sub in run.class_runs().values() if sub.samples.is_dir() for p in sub.samples.glob("step-*.png"))
    return grids[-1] if grids else None


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


# -- the model card ---------------------------------------------------------------------------------
def model_card(run: Run, out: Path, steps: dict[str, int], metrics: Optional[dict], report, has_grid: bool) -> str:
    """README.md of an export: what the generator is, what it was trained on, how it scored, what not to do."""
    from medisynth import __version__

    info, config = run.info, run.config
    spec = run.spec
    names = run.class_names or []
    data = run.data
    manifest = _manifest(run)
    budget = ", ".join(f"{k} {config[k]}" for k in ("epochs", "steps", "minutes") if config.get(k) is not None) or "default"
    exports = [read_json(p) for p in sorted(out.rglob(EXPORT_JSON))]
    lines = [
        f"# medisynth generator: {info.get('model', '?')} (run {run.id})",
        "",
        "Every image this generator makes is **synthetic**. medisynth writes that into each file it samples "
        "(PNG text chunks `synthetic=true`, model, run id, step, seed, class) and `medisynth prepare` keeps such "
        "files out of validation and test splits.",
        "",
        "## Use",
        "",
        "```bash",
        f"medisynth sample {out.name} --out synthetic --n 100 --seed 0",
        "```",
        "```python",
        "import medisynth as ms",
        f"images = ms.load_run({out.name!r}).generate([0, 0, 1], seed=0)   # N x C x H x W in [-1, 1]",
        "```",
        "",
        "## Model",
        "",
        f"- model: `{info.get('model', '?')}`{' (one model per class)' if run.per_class else ''}; "
        f"hyper-parameters: `{json.dumps(info.get('hyper', {}), sort_keys=True)}`",
        f"- images: {spec.get('image_size', '?')} x {spec.get('image_size', '?')} px, {spec.get('channels', '?')} channel(s)",
        f"- classes ({len(names)}): " + ", ".join(f"{i} = {n}" for i, n in enumerate(names)),
        f"- weights: EMA networks where the run kept them; {sum(e['parameters'] for e in exports):,} parameters, "
        f"{_mib(sum(e['bytes'] for e in exports))} "
        f"(networks kept: {', '.join(sorted({n for e in exports for n in e['kept']}))}; "
        f"omitted: {', '.join(sorted({n for e in exports for n in e['omitted']})) or 'none'})",
        f"- exported by medisynth {__version__} from `{run.path.resolve()}`",
        "",
        "## Training",
        "",
        f"- data set: `{data}`" + (f" ({manifest['source'].get('layout', '?')} layout from `{manifest['source'].get('path', '?')}`)"
                                   if manifest and isinstance(manifest.get("source"), dict) else " (manifest not found)"),
    ]
    if manifest and manifest.get("counts"):
        train = manifest["counts"].get("train", {})
        lines.append("- training images per class: " + ", ".join(f"{c}: {n}" for c, n in train.items()))
    lines += [
        f"- budget: {budget}; batch size {config.get('batch_size', '?')}; seed {config.get('seed', '?')}",
        "- trained for: " + ", ".join(f"{k or 'model'} step {v}" for k, v in steps.items()),
        "",
        "## Evaluation",
        "",
    ]
    lines += _evaluation_lines(metrics, report)
    if has_grid:
        lines += ["", "Samples from the end of training:", "", "![samples](grid.png)"]
    lines += [
        "",
        "## Intended use and limits",
        "",
        "- For research: augmenting or rebalancing the training split of classifiers, testing pipelines, teaching.",
        "- Not for diagnosis, not as a substitute for patient data, and never in a validation or test set: figures "
        "measured on synthetic images flatter a model.",
        "- The generator reflects its training data (size, classes, scanners, population above); it can miss "
        "rare appearances and may reproduce training images (see the memorization figures when a report is given).",
        "- Small training sets give generators that memorise: check near-copies before sharing its images.",
        "",
    ]
    return "\n".join(lines)


def _manifest(run: Run) -> Optional[dict]:
    path = run.data / "manifest.json"
    try:
        return read_json(path) if path.is_file() else None
    except MedisynthError:
        return None


def _evaluation_lines(metrics: Optional[dict], report) -> list[str]:
    if metrics is None:
        return ["No evaluation was given (`medisynth export RUN --out DIR --report REPORT`, REPORT from "
                "`medisynth evaluate`); judge the images before use."]
    inputs = metrics.get("inputs", {})
    lines = [f"From `{report}` (medisynth evaluate, {metrics.get('created', '?')}): {inputs.get('n_fake', '?')} synthetic "
             f"vs {inputs.get('n_real', '?')} real images ({inputs.get('real_split', '?')} split).", "",
             "| figure | value |", "|---|---|"]

    def row(name: str, value: Any) -> None:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            lines.append(f"| {name} | {value:.4g} |")

    for space, values in (metrics.get("distribution") or {}).items():
        for key in ("fid", "kid_mean", "precision", "recall"):
            row(f"{key} ({space})", (values or {}).get(key))
    cas = metrics.get("cas") or {}
    row("CAS (real-trained classifier on synthetic)", cas.get("overall"))
    row("real held-out accuracy of that classifier", cas.get("real_heldout_accuracy"))
    memo = (metrics.get("memorization") or {})
    memo = memo.get("pixel", memo)
    row("near-copies of training images (fraction)", memo.get("fraction_flagged"))
    row("the same flag on held-out real images", memo.get("heldout_fraction_flagged"))
    row("DCR ratio (synthetic / held-out)", memo.get("dcr_ratio"))
    warnings = metrics.get("warnings") or []
    if warnings:
        lines += ["", "Warnings from the evaluation:", ""] + [f"- {w}" for w in warnings]
    return lines
