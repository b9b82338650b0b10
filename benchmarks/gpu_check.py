#!/usr/bin/env python3
"""GPU checks for a machine with CUDA: one line per check (PASS, FAIL with its one-line reason, or SKIP).

Run through ``benchmarks/gpu_check.sh`` (or ``python benchmarks/gpu_check.py``) from a checkout. It needs only
medisynth's own dependencies, makes all its data (phantoms, random batches) in a temporary folder, and is
sized to finish in under 8 minutes on one GPU (``--budget-minutes``: the throughput runs share what the
fixed-cost checks leave). Without CUDA it prints that CUDA is absent and exits 0.

Checks, in order:

1. ``tests``: the CUDA tests (``pytest -m cuda``; they skip on machines without CUDA).
2. ``pipeline``: the 512 -> 1024 px vessel pipeline end to end through the ``medisynth`` CLI: phantom fundus
   images with vessel masks at 512 px, ``prepare``, tiny ``resvae --target masks``, ``pix2pix`` and ``edsr``
   runs trained for a few steps on the GPU, then ``pipeline vessels --sr-run`` writes 1024 px pairs.
3. ``train MODEL SIZE``, for cgan, fastgan (when registered), diffusion (ddpm and edm recipes) and pix2pix at
   64 and 256 px: training images/s for ``--seconds`` in bf16 autocast (what ``medisynth train`` does on
   CUDA) and in fp32 (``--no-amp``; torch's defaults, so cuDNN convolutions may use TF32), their ratio, the
   peak GPU memory of each (``torch.cuda.max_memory_allocated``), and sampling images/s (``generate``, fp32,
   as ``medisynth sample`` runs; pix2pix: ``translate``). Default hyper-parameters, random batches of
   ``--batch-size`` images (speed does not depend on the pixels), a few untimed warm-up steps first.

Every check catches its own failure, prints FAIL with the reason and the script goes on; tracebacks go to
the log file named in the last line. Exit status: 0 when nothing failed (or CUDA is absent), 1 otherwise.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import os
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: (label, registered model, hyper-parameters) for the throughput checks
TRAIN_MODELS = [
    ("cgan", "cgan", {}),
    ("fastgan", "fastgan", {}),
    ("diffusion-ddpm", "diffusion", {"recipe": "ddpm"}),
    ("diffusion-edm", "diffusion", {"recipe": "edm"}),
    ("pix2pix", "pix2pix", {}),
]
WARMUP_STEPS = 3
#: seconds kept back per throughput check for building, warm-up and sampling
OVERHEAD_PER_CHECK = 8.0


class Skip(Exception):
    """A check that does not apply here (e.g. a model that is not registered)."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="training time per model, size and precision")
    parser.add_argument("--sizes", default="64,256", help="image sizes of the throughput checks")
    parser.add_argument("--batch-size", type=int, default=32, help="images per training and sampling batch")
    parser.add_argument("--budget-minutes", type=float, default=7.5,
                        help="whole-script budget: the throughput runs get less than --seconds if it is short")
    parser.add_argument("--models", default=",".join(m[0] for m in TRAIN_MODELS),
                        help="throughput checks to run (labels above)")
    parser.add_argument("--skip", default="", help="comma-separated checks to leave out: tests, pipeline, train")
    parser.add_argument("--log", type=Path, default=None, help="where tracebacks go (default: a file in the temp folder)")
    # for a dry run of the logic on a CPU: --device cpu --seconds 2 --sizes 32 --pipeline-size 64
    parser.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline-size", type=int, default=512, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- output ------------------------------------------------------------------------
class Report:
    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "w")
        self.counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}

    def check(self, name: str, fn, *args) -> None:
        """Run one check; print exactly one line for it, whatever happens."""
        start = time.perf_counter()
        self.log.write(f"== {name}\n")
        try:
            status, detail = "PASS", fn(*args)
        except Skip as why:
            status, detail = "SKIP", str(why)
        except Exception as err:  # noqa: BLE001  (a check must never stop the others)
            status, detail = "FAIL", one_line(err)
            traceback.print_exc(file=self.log)
        self.counts[status] += 1
        self.log.write(f"{status} after {time.perf_counter() - start:.1f} s: {detail}\n")
        self.log.flush()
        print(f"{status} {name}: {detail}", flush=True)


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


# -- 1. the CUDA tests ----------------------------------------------------------------
def check_tests(env: dict, timeout: float, on_cuda: bool, log) -> str:
    if not (REPO / "tests").is_dir():
        raise RuntimeError(f"no tests folder at {REPO / 'tests'} (run from a checkout)")
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
           "-W", "ignore", "tests"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    log.write(proc.stdout[-20000:] + proc.stderr[-5000:])  # pytest's own report, for the failures' details
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else (proc.stderr.strip().splitlines() or ["no output"])[-1]
    if proc.returncode != 0:
        failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
        raise RuntimeError(f"pytest exit {proc.returncode}: {summary}" + (f"; first: {failed[0]}" if failed else ""))
    if " passed" not in summary and on_cuda:
        raise RuntimeError(f"no CUDA test ran: {summary}")
    if "skipped" in summary:
        if not on_cuda:
            raise Skip(f"dry run without CUDA: {summary}")
        raise RuntimeError(f"CUDA tests skipped on a CUDA machine: {summary}")
    return summary


# -- 2. the vessel pipeline ---------------------------------------------------------------
def medisynth_cli(args: list, env: dict, timeout: float = 300) -> str:
    """Run ``medisynth ARGS`` in a fresh interpreter (as a user would); its output, or an error with its last line."""
    cmd = [sys.executable, "-c", "from medisynth.cli import main; main()", *map(str, args)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise RuntimeError(f"medisynth {args[0]} {args[1] if len(args) > 1 else ''} exit {proc.returncode}: {last}")
    return proc.stdout


def check_pipeline(work: Path, size: int, device: str, env: dict) -> str:
    from PIL import Image

    start = time.perf_counter()
    phantom, data, runs = work / "phantom", work / "prepared", work / "runs"
    medisynth_cli(["phantom", "fundus", "--out", phantom, "--n", 20, "--size", size, "--proportions", "1,1,1,1,1",
                   "--workers", 4], env)
    medisynth_cli(["prepare", phantom, "--out", data, "--size", size, "--workers", 4], env)
    common = ["--steps", 3, "--batch-size", 2, "--device", device, "--sample-every", 0]
    medisynth_cli(["train", data, "--model", "resvae", "--target", "masks", "--out", runs / "vessels", *common,
                   "--hp", "width=8", "--hp", "max_channels=32", "--hp", "blocks=1", "--latent-dim", 8], env)
    medisynth_cli(["train", data, "--model", "pix2pix", "--out", runs / "p2p", *common,
                   "--hp", "ngf=8", "--hp", "ndf=8"], env)
    medisynth_cli(["train", data, "--model", "edsr", "--out", runs / "sr", *common,
                   "--hp", "n_resblocks=1", "--hp", "n_feats=8"], env)
    trained = time.perf_counter()
    n = 4
    medisynth_cli(["pipeline", "vessels", "--vessel-run", runs / "vessels", "--translate-run", runs / "p2p",
                   "--sr-run", runs / "sr", "--n", n, "--out", work / "pairs", "--device", device], env)
    done = time.perf_counter()
    images = sorted((work / "pairs" / "training" / "images").glob("*"))
    masks = sorted((work / "pairs" / "training" / "1st_manual").glob("*"))
    if len(images) != n or len(masks) != n:
        raise RuntimeError(f"expected {n} images and {n} vessel masks, found {len(images)} and {len(masks)}")
    sizes = set()
    for path in images + masks:
        with Image.open(path) as image:
            sizes.add(image.size)
    if sizes != {(2 * size, 2 * size)}:
        raise RuntimeError(f"expected {2 * size} px pairs, got sizes {sorted(sizes)}")
    return (f"{size} -> {2 * size} px, {n} pairs in {done - trained:.1f} s (pipeline command, start-up included); "
            f"data + 3 tiny runs took {trained - start:.1f} s")


# -- 3. training and sampling throughput ------------------------------------------------------
def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_batch(model, n: int, device) -> dict:
    import torch

    spec = model.spec
    g = torch.Generator(device).manual_seed(0)
    batch = {"image": torch.rand(n, spec.channels, spec.image_size, spec.image_size, device=device, generator=g) * 2 - 1,
             "label": torch.randint(0, spec.num_classes, (n,), device=device, generator=g)}
    if getattr(model, "needs_masks", False):
        batch["mask"] = (torch.rand(n, 1, spec.image_size, spec.image_size, device=device, generator=g) > 0.8).float()
    return batch


def train_rate(name: str, hyper: dict, size: int, device, bf16: bool, seconds: float, batch_size: int):
    """(images/s, peak GiB, the model) for ``seconds`` of training steps after WARMUP_STEPS untimed ones."""
    import torch

    from medisynth.models import DataSpec, build_model

    torch.manual_seed(0)
    model = build_model(name, DataSpec(size, 3, ["0", "1", "2", "3", "4"]), hyper).to(device)
    optimizers = model.configure_optimizers()
    batch = random_batch(model, batch_size, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for step in range(WARMUP_STEPS):
        with autocast:
            model.training_step(batch, optimizers, step)
    sync(device)
    steps, start = 0, time.perf_counter()
    while True:
        with autocast:
            figures = model.training_step(batch, optimizers, WARMUP_STEPS + steps)
        steps += 1
        if time.perf_counter() - start >= seconds:
            break
    sync(device)
    elapsed = time.perf_counter() - start
    bad = {k: v for k, v in figures.items() if v != v or abs(v) == float("inf")}
    if bad:
        raise RuntimeError(f"non-finite training figures {bad} ({'bf16' if bf16 else 'fp32'})")
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return steps * batch_size / elapsed, peak, model


def sample_rate(model, device, batch_size: int, seconds: float = 2.0) -> float:
    """Images/s of ``generate`` (``translate`` for pix2pix) after one warm-up batch, for about ``seconds``."""
    import torch

    model.eval()
    if getattr(model, "samples_from_noise", True):
        labels = torch.arange(batch_size, device=device) % model.spec.num_classes
        generator = torch.Generator(device).manual_seed(0)

        def once():
            return model.generate(labels, generator=generator)
    else:
        masks = random_batch(model, batch_size, device)["mask"]

        def once():
            return model.translate(masks, batch_size=batch_size)

    first = once()
    if not torch.isfinite(first).all():
        raise RuntimeError("sampling gave non-finite images")
    sync(device)
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < seconds:
        once()
        calls += 1
        sync(device)
    return calls * batch_size / (time.perf_counter() - start)


def check_train(label: str, name: str, hyper: dict, size: int, device, seconds: float, batch_size: int) -> str:
    import torch

    from medisynth.errors import MedisynthError
    from medisynth.models import get_model_class

    try:
        get_model_class(name)
    except (MedisynthError, KeyError):
        raise Skip(f"model {name!r} is not registered in this checkout") from None
    if seconds < 1:
        raise RuntimeError(f"no time left in --budget-minutes for this check ({seconds:.1f} s)")
    bf16, peak_bf16, model = train_rate(name, hyper, size, device, True, seconds, batch_size)
    sampled = sample_rate(model, device, batch_size)
    steps = getattr(model, "default_sampling_steps", None)  # diffusion: the recipe's default DDIM / Heun steps
    how = f" ({steps()} {'Heun' if hyper.get('recipe') == 'edm' else 'DDIM'} steps, guided)" if steps else ""
    del model
    free(device)
    fp32, peak_fp32, model = train_rate(name, hyper, size, device, False, seconds, batch_size)
    del model
    free(device)
    return (f"batch {batch_size}, {seconds:.0f} s each: bf16 {bf16:.1f} img/s, fp32 {fp32:.1f} img/s "
            f"(bf16/fp32 x{bf16 / fp32:.2f}); peak GPU memory bf16 {peak_bf16:.2f} GiB, fp32 {peak_fp32:.2f} GiB; "
            f"sampling {sampled:.1f} img/s{how}")


def free(device) -> None:
    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# -- main ------------------------------------------------------------------------------------
def main(argv=None) -> int:
    args = parse_args(argv)
    script_start = time.perf_counter()
    deadline = script_start + 60 * args.budget_minutes
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: CUDA is absent (torch.cuda.is_available() is False); skipping all GPU checks", flush=True)
        return 0
    warnings.simplefilter("ignore")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer does on CUDA
        name = f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    else:
        name = f"{device} (dry run), torch {torch.__version__}"
    print(f"gpu_check on {name}", flush=True)

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO / "src"), env.get("PYTHONPATH", "")] if p)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    wanted = set(args.models.split(","))
    skip = set(args.skip.split(",")) - {""}
    with tempfile.TemporaryDirectory(prefix="medisynth-gpu-check-") as tmp:
        work = Path(tmp)
        log_path = args.log or Path(tempfile.gettempdir()) / f"medisynth-gpu-check-{time.strftime('%Y%m%d-%H%M%S')}.log"
        report = Report(log_path)
        if "tests" not in skip:
            report.check("tests (pytest -m cuda)", check_tests, env, max(60.0, min(240.0, deadline - time.perf_counter() - 240)),
                         device.type == "cuda", report.log)
        if "pipeline" not in skip:
            size = args.pipeline_size
            report.check(f"pipeline vessels {size} -> {2 * size} px", check_pipeline, work / "pipeline", size,
                         args.device, env)
        if "train" not in skip:
            jobs = [(label, name, hyper, size) for label, name, hyper in TRAIN_MODELS if label in wanted for size in sizes]
            for i, (label, name, hyper, size) in enumerate(jobs):
                left = deadline - time.perf_counter()
                share = (left / (len(jobs) - i) - OVERHEAD_PER_CHECK) / 2  # two timed runs: bf16 and fp32
                seconds = min(args.seconds, share)
                report.check(f"train {label} {size} px", check_train, label, name, hyper, size, device, seconds,
                             args.batch_size)
        counts = report.counts
        print(f"gpu_check: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped in "
              f"{time.perf_counter() - script_start:.0f} s; details in {log_path}", flush=True)
        report.log.close()
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
