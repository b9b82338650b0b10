#!/usr/bin/env python3
"""`cgan` vs `diffusion` for the same wall-clock training budget, side by side.

Same data (the fundus phantom, 5 DR grades, prepared at --size px), same budget (--minutes of
training each, through ``medisynth.training.trainer.train``), same seed, same number of samples
per class (``medisynth.sampling.sample``), same evaluation (``medisynth.evaluation`` in the
domain feature space: a small ResNet trained on the real train split, since no pretrained
Inception weights are available offline). Prints, for each model:

- training: steps done, images/s, last logged losses;
- KID (domain space, mean +- std over subsets; lower is better), FID (domain space),
  precision / recall / density / coverage (Naeem et al. 2020, k = 5);
- CAS: the domain classifier's accuracy on the synthetic images, against their labels
  (how often a synthetic grade-k image looks like grade k), with the real held-out accuracy
  as the ceiling;
- sampling throughput: images/s end to end (``sample``: generate + PNG files) and for
  ``generate`` alone (batch 64, after a warm-up), at the diffusion's --steps DDIM steps.

``--models`` also takes ``diffusion-edm`` (the diffusion model with ``--hp recipe=edm``, sampled with
--heun-steps Heun steps), to compare the two diffusion recipes at the same budget.

Results go to WORK/results.json too. On a CPU, the two minutes of a smoke run say nothing
about quality; the comparison means something from ~20-30 minutes per model on a GPU.

    .venv/bin/python benchmarks/bench_cgan_vs_diffusion.py --minutes 10 --per-class 200
    .venv/bin/python benchmarks/bench_cgan_vs_diffusion.py --minutes 0.3 --n-phantom 150 --per-class 10  # smoke
    .venv/bin/python benchmarks/bench_cgan_vs_diffusion.py --models diffusion,diffusion-edm --minutes 3
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

MODELS = ("cgan", "diffusion")
#: benchmark entries -> (registered model, hyper-parameters); "diffusion-edm" is the EDM recipe
VARIANTS = {"diffusion-edm": ("diffusion", {"recipe": "edm"})}


def model_and_hyper(name: str, args) -> tuple[str, dict]:
    model, hyper = VARIANTS.get(name, (name, {}))
    if model == "diffusion":
        steps = args.heun_steps if hyper.get("recipe") == "edm" else args.steps
        hyper = {**hyper, "sampling_steps": steps, "guidance_scale": args.guidance_scale}
    return model, hyper


def make_data(work: Path, n: int, size: int, seed: int) -> Path:
    from medisynth.data.prepare import PrepareConfig, prepare
    from medisynth.phantom.fundus import generate_fundus_dataset

    phantom = generate_fundus_dataset(work / "phantom", n=n, size=max(size, 32), seed=seed)
    prepared = work / "prepared"
    prepare(PrepareConfig(source=phantom, out=prepared, size=size, channels=3, seed=seed, workers=1))
    return prepared


def train_model(name: str, data: Path, work: Path, args) -> dict:
    from medisynth.training.config import TrainConfig
    from medisynth.training.trainer import train

    model, hyper = model_and_hyper(name, args)
    result = train(TrainConfig(
        data=data, model=model, out=work / "runs" / name, batch_size=args.batch_size,
        **({"steps": args.train_steps} if args.train_steps else {"minutes": args.minutes}),
        hyper=hyper, seed=args.seed, device=args.device, sample_every=0, checkpoint_every=10**9, progress=False,
    ))
    return {"steps": result.steps, "epochs": round(result.epochs, 2), "train_seconds": round(result.seconds, 1),
            "train_images_per_s": round(result.images_per_second, 1), "last_losses": result.metrics}


def sample_model(name: str, class_names: list[str], work: Path, args) -> tuple[Path, dict]:
    from medisynth.sampling import SampleConfig, sample

    out = work / "samples" / name
    start = time.perf_counter()
    result = sample(SampleConfig(run=work / "runs" / name, out=out, per_class={c: args.per_class for c in class_names},
                                 seed=args.seed, device=args.device, progress=False))
    seconds = time.perf_counter() - start
    written = sum(result.written.values())
    return out, {"sampled": written, "sample_images_per_s": round(written / seconds, 1),
                 "generate_images_per_s": round(generate_rate(name, work, args), 1)}


def generate_rate(name: str, work: Path, args, batch: int = 64) -> float:
    """``model.generate`` alone: one warm-up batch, then the mean over --rate-batches batches."""
    from medisynth.runs import load_run

    model = load_run(work / "runs" / name, device=args.device).model
    device = next(model.parameters()).device
    labels = torch.arange(batch, device=device) % model.spec.num_classes
    generator = torch.Generator(device).manual_seed(0)
    model.generate(labels, generator=generator)  # (diffusion: the run's sampling_steps and guidance_scale)
    sync(device)
    start = time.perf_counter()
    for _ in range(args.rate_batches):
        model.generate(labels, generator=generator)
    sync(device)
    return batch * args.rate_batches / (time.perf_counter() - start)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def evaluate_samples(name: str, data: Path, samples: Path, work: Path, args) -> dict:
    from medisynth.evaluation import EvaluateConfig, evaluate

    metrics = evaluate(EvaluateConfig(
        real=data, fake=samples, out=work / "eval" / name, feature_spaces=("domain",), cache_dir=work / "cache",
        kid_subset_size=args.kid_subset_size, seed=args.seed, device=args.device, progress=False,
    ), log=lambda line: None)
    d = metrics["distribution"].get("domain", {})
    cas = metrics.get("cas") or {}
    return {
        "kid_domain": d.get("kid_mean"), "kid_domain_std": d.get("kid_std"), "fid_domain": d.get("fid"),
        "precision": d.get("precision"), "recall": d.get("recall"), "density": d.get("density"),
        "coverage": d.get("coverage"), "cas": cas.get("overall"), "cas_per_class": cas.get("per_class"),
        "real_heldout_accuracy": cas.get("real_heldout_accuracy"),
        "ms_ssim_diversity_fake": ((metrics.get("diversity") or {}).get("fake") or {}).get("mean"),
        "warnings": metrics.get("warnings", []),
    }


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per model")
    parser.add_argument("--train-steps", type=int, default=None,
                        help="training budget per model in steps instead of --minutes (equal compute per step for "
                             "models with the same network, e.g. the two diffusion recipes, on any machine)")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--n-phantom", type=int, default=1000, help="phantom images (EyePACS grade proportions)")
    parser.add_argument("--per-class", type=int, default=100, help="synthetic images per class for the metrics")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50, help="diffusion: DDIM sampling steps")
    parser.add_argument("--heun-steps", type=int, default=18, help="diffusion-edm: Heun sampling steps")
    parser.add_argument("--guidance-scale", type=float, default=2.0, help="diffusion: classifier-free guidance scale")
    parser.add_argument("--kid-subset-size", type=int, default=100)
    parser.add_argument("--rate-batches", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="keep everything here (default: a temporary folder)")
    parser.add_argument("--models", default=",".join(MODELS),
                        help=f"comma-separated: registered models and {', '.join(VARIANTS)}")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench-cgan-diffusion-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data = make_data(work, args.n_phantom, args.size, args.seed)
        from medisynth.data.manifest import Manifest

        class_names = Manifest.load(data).class_names
        results: dict[str, dict] = {}
        for name in args.models.split(","):
            clock = time.perf_counter()
            print(f"[{name}] training for {f'{args.train_steps} steps' if args.train_steps else f'{args.minutes} min'} ...",
                  flush=True)
            row = train_model(name, data, work, args)
            print(f"[{name}] {row['steps']} steps; sampling {args.per_class} per class ...", flush=True)
            samples, rates = sample_model(name, class_names, work, args)
            row.update(rates)
            print(f"[{name}] {rates}; evaluating ...", flush=True)
            row.update(evaluate_samples(name, data, samples, work, args))
            results[name] = row
            print(f"[{name}] done in {time.perf_counter() - clock:.0f} s", flush=True)
        (work / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "results": results}, indent=2, default=str))

    names = list(results)
    keys = ["steps", "train_images_per_s", "kid_domain", "kid_domain_std", "fid_domain", "precision", "recall",
            "density", "coverage", "cas", "real_heldout_accuracy", "ms_ssim_diversity_fake",
            "sample_images_per_s", "generate_images_per_s"]
    budget = f"{args.train_steps} steps" if args.train_steps else f"{args.minutes} min"
    print(f"\n{budget} of training each, {args.size} px fundus phantom ({args.n_phantom} images), "
          f"{args.per_class} samples per class, diffusion: {args.steps} DDIM steps, diffusion-edm: {args.heun_steps} "
          f"Heun steps, guidance {args.guidance_scale}")
    print(f"{'':26s}" + "".join(f"{n:>14s}" for n in names))
    for key in keys:
        print(f"{key:26s}" + "".join(f"{fmt(results[n].get(key)):>14s}" for n in names))
    if len(names) == 2 and results[names[1]].get("generate_images_per_s"):
        ratio = results[names[0]]["generate_images_per_s"] / results[names[1]]["generate_images_per_s"]
        print(f"generate() throughput ratio {names[0]}/{names[1]}: {ratio:.1f}x")
    for n in names:
        for w in results[n]["warnings"]:
            print(f"[{n}] warning: {w}")


if __name__ == "__main__":
    main()
