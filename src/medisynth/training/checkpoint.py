"""Checkpoints: safetensors + JSON, written atomically, validated on load.

The checkpoints of a run folder (the rest of the layout: ``medisynth.runs``)::

    RUN/checkpoints/LATEST           one line: the name of the newest complete checkpoint
    RUN/checkpoints/step-000500/
        model.safetensors            model.state_dict() (EMA copies included as ema_<net>.*)
        training.safetensors         every tensor of the optimiser states and RNG states
        training.json                the rest of them (hyper-parameters, step counts...) with
                                     {"__tensor__": key} where a tensor was
        state.json                   step, epoch, elapsed seconds, last metrics, and the
                                     checksums (SHA-256 of the tensors) of both weight files

A checkpoint is written into a temporary folder, flushed, and renamed into place;
only then does LATEST move to it (itself replaced atomically), and only then are
older checkpoints removed. An interrupt at any moment leaves the previous one intact;
the temporary folder it leaves (``.step-*.tmp-*``) is removed when the run next starts.
Nothing is ever unpickled: tensors come from safetensors, the rest from JSON. On load the
tensors' checksums are verified (flipped bytes are an error naming the file), and weights
that are not finite are refused: they can only come from a training run that diverged.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from medisynth.errors import MedisynthError
from medisynth.io import atomic_write_text, follow_umask, read_json

CHECKPOINTS = "checkpoints"
LATEST = "LATEST"
MODEL_FILE = "model.safetensors"
TRAINING_FILE = "training.safetensors"
TRAINING_JSON = "training.json"
STATE_JSON = "state.json"
#: model.safetensors metadata "format" of a generator-only export (``medisynth.export``): its "omitted"
#: metadata lists the top-level networks left out (the discriminator, live copies of EMA networks)
EXPORT_FORMAT = "medisynth-export"
CHECKPOINT_NAME = re.compile(r"step-\d{6,}")


def tensor_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (in name order)."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def non_finite_keys(tensors: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding an inf or NaN."""
    return [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]


# -- nested state <-> (tensors, JSON) ---------------------------------------
def flatten_state(obj: Any, tensors: dict[str, torch.Tensor], prefix: str = "t") -> Any:
    """Replace every tensor/ndarray in a nested structure by a reference, collecting tensors by key.

    Dict keys keep their type (optimiser states use int keys), so dicts become lists of pairs.
    """
    if isinstance(obj, torch.Tensor):
        key = f"{prefix}"
        tensors[key] = obj.detach().to("cpu").clone().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"{prefix}"
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).astype(np.int64 if obj.dtype.kind in "ui" else obj.dtype))
        return {"__ndarray__": key, "dtype": str(obj.dtype)}
    if isinstance(obj, dict):
        return {"__dict__": [[k, flatten_state(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [flatten_state(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot checkpoint a {type(obj).__name__}")


def unflatten_state(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy().astype(obj["dtype"])
        if "__dict__" in obj:
            return {k: unflatten_state(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(unflatten_state(v, tensors) for v in obj["__tuple__"])
        return {k: unflatten_state(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unflatten_state(v, tensors) for v in obj]
    return obj


# -- RNG states -------------------------------------------------------------
def capture_rng() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].to(torch.uint8))
    random.setstate(_python_rng_state(state["python"]))
    np.random.set_state(tuple(state["numpy"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = [s.to(torch.uint8) for s in state["cuda"]]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def _python_rng_state(state) -> tuple:
    version, internal, gauss = state
    return (version, tuple(int(x) for x in internal), gauss)


# -- writing ----------------------------------------------------------------
def checkpoint_name(step: int) -> str:
    return f"step-{step:06d}"


def save_checkpoint(
    run_dir: Path,
    step: int,
    model: torch.nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    state: dict[str, Any],
    extra: dict[str, Any] | None = None,
    keep: int = 1,
) -> Path:
    """Write RUN/checkpoints/step-<step>/ atomically, point LATEST at it, drop older ones beyond ``keep``."""
    folder = Path(run_dir) / CHECKPOINTS
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(step)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=folder))
    follow_umask(tmp)  # mkdtemp makes 0700 (and safetensors 0600 files, below)
    try:
        weights = {k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
        bad = non_finite_keys(weights)
        if bad:  # the trainer's divergence guard stops before this; nothing may ever save such weights
            raise MedisynthError(f"{run_dir}: refusing to checkpoint step {step}: {len(bad)} weight tensor(s) are "
                                 f"not finite (e.g. {bad[0]}); the training diverged: lower the learning rates")
        save_file(weights, str(tmp / MODEL_FILE), metadata={"format": "medisynth-checkpoint", "step": str(step)})
        tensors: dict[str, torch.Tensor] = {}
        tree = {
            "optimizers": {name: flatten_state(opt.state_dict(), tensors, f"opt.{name}") for name, opt in optimizers.items()},
            "rng": flatten_state(capture_rng(), tensors, "rng"),
            "extra": flatten_state(extra or {}, tensors, "extra"),
        }
        save_file(tensors, str(tmp / TRAINING_FILE))
        (tmp / TRAINING_JSON).write_text(json.dumps(tree))
        checksums = {MODEL_FILE: tensor_checksum(weights), TRAINING_FILE: tensor_checksum(tensors)}
        (tmp / STATE_JSON).write_text(json.dumps({"step": step, **state, "checksums": checksums}, indent=2, default=float))
        for path in tmp.iterdir():
            follow_umask(path)
        _fsync_dir_files(tmp)
        if final.exists():  # re-saving the same step (a resumed run that ends where it started)
            trash = folder / f".{final.name}.old-{os.getpid()}"
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(tmp, final)
    except (OSError, SafetensorError) as e:  # a full disk, a lost mount: one line, not a traceback
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            earlier = newest_checkpoint(folder, run_dir)
            then = (f"{earlier.name} is intact: free disk space (or move the run folder), then continue from it with "
                    f"--resume {run_dir}")
        except MedisynthError:  # none complete: --resume would refuse the run
            then = f"the run has no checkpoint yet: free disk space, then train it again with --out {run_dir} --overwrite"
        raise MedisynthError(f"could not write the checkpoint {final} ({e}); {then}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(folder / LATEST, final.name + "\n")
    complete = sorted(p for p in folder.glob("step-*") if p.is_dir() and p != final)
    for old in complete[: max(0, len(complete) - (keep - 1))] if keep >= 1 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _fsync_dir_files(folder: Path) -> None:
    for p in folder.iterdir():
        with open(p, "rb") as f, contextlib.suppress(OSError):
            os.fsync(f.fileno())


# -- finding ----------------------------------------------------------------
def newest_checkpoint(folder: Path, run_dir: Path) -> Path:
    """The newest complete checkpoint in ``folder`` (RUN/checkpoints): LATEST, or the highest step
    folder if LATEST is lost. ``run_dir`` names the run in the error message."""
    folder = Path(folder)
    pointer = folder / LATEST
    if pointer.is_file():
        try:
            name = pointer.read_bytes().decode("ascii").strip()
        except UnicodeDecodeError:
            name = None
        if name is None or not CHECKPOINT_NAME.fullmatch(name):  # never follow it out of the run
            raise MedisynthError(
                f"{pointer} is damaged: it must name a checkpoint of this run (step-NNNNNN); "
                f"delete it to use the newest complete step-* folder"
            )
        candidate = folder / name
        if (candidate / STATE_JSON).is_file():
            return candidate
    complete = sorted(p for p in folder.glob("step-*") if (p / STATE_JSON).is_file()) if folder.is_dir() else []
    if not complete:
        raise MedisynthError(
            f"{run_dir} has no checkpoint yet (nothing in {folder}); the run was stopped before its first "
            f"checkpoint: train again, or lower --checkpoint-every"
        )
    return complete[-1]


def remove_interrupted_writes(folder: Path) -> list[Path]:
    """Remove the temporary folders a checkpoint write killed midway left in RUN/checkpoints (they are
    never read: only step-* folders count); returns what was removed."""
    folder = Path(folder)
    stale = sorted(p for p in folder.glob(".step-*") if p.is_dir() and (".tmp-" in p.name or ".old-" in p.name))
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def _verify(path: Path, tensors: dict[str, torch.Tensor], checksums: Any) -> None:
    """Compare the tensors with the checksum state.json recorded for ``path`` (older checkpoints have none)."""
    expected = checksums.get(path.name) if isinstance(checksums, dict) else None
    if expected is not None and tensor_checksum(tensors) != expected:
        raise MedisynthError(f"{path} is damaged: its tensors do not match the checksum in {STATE_JSON} "
                             f"(bytes changed on disk); restore it from a backup or retrain")


def _read_state(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / STATE_JSON
    state = read_json(path)
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or isinstance(state["step"], bool) \
            or state["step"] < 0:
        raise MedisynthError(f"{path} is damaged: it must hold a mapping with a non-negative integer 'step'; "
                             f"restore the checkpoint or retrain")
    return state


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise MedisynthError(f"{path} is missing; the checkpoint is incomplete: resume from another run or retrain")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise MedisynthError(
            f"{path} is damaged ({e}); the file is truncated or not a safetensors file: "
            f"restore it from a backup or retrain"
        ) from None


def load_weights(checkpoint: Path, model: torch.nn.Module) -> None:
    """Load model.safetensors into ``model``, explaining key/shape mismatches (another model, other settings)."""
    path = Path(checkpoint) / MODEL_FILE
    weights = _load_tensors(path)
    _verify(path, weights, _read_state(Path(checkpoint)).get("checksums"))
    bad = non_finite_keys(weights)
    if bad:
        raise MedisynthError(
            f"{path} holds weights that are not finite ({len(bad)} of {len(weights)} tensors, e.g. {bad[0]}): "
            f"the training diverged before this checkpoint; retrain with lower learning rates"
        )
    expected = model.state_dict()
    omitted = _omitted_networks(path)
    missing = sorted(k for k in set(expected) - set(weights) if k.split(".")[0] not in omitted)
    unexpected = sorted(set(weights) - set(expected))
    mismatched = [
        f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if k in weights and weights[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} (e.g. {', '.join(unexpected[:3])})")
        if mismatched:
            parts.append(f"shape mismatch {len(mismatched)} (e.g. {'; '.join(mismatched[:3])})")
        raise MedisynthError(
            f"{path} does not fit model {getattr(model, 'name', type(model).__name__)!r}: {', '.join(parts)}. "
            f"It was written by another model or other hyper-parameters; check model.json of the run"
        )
    model.load_state_dict(weights, strict=not omitted)


def _omitted_networks(path: Path) -> set[str]:
    """The networks a generator-only export left out (empty for a training checkpoint)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        metadata = f.metadata() or {}
    if metadata.get("format") != EXPORT_FORMAT:
        return set()
    return set(json.loads(metadata.get("omitted", "[]")))


def load_checkpoint(
    checkpoint: Path,
    model: torch.nn.Module,
    optimizers: dict[str, torch.optim.Optimizer] | None = None,
    rng: bool = False,
) -> dict[str, Any]:
    """Restore weights (always), optimiser states and RNG states (when asked); return state.json + extra."""
    checkpoint = Path(checkpoint)
    load_weights(checkpoint, model)
    state = _read_state(checkpoint)
    if optimizers is None and not rng:
        return state
    tensors = _load_tensors(checkpoint / TRAINING_FILE)
    _verify(checkpoint / TRAINING_FILE, tensors, state.get("checksums"))
    tree_json = read_json(checkpoint / TRAINING_JSON)
    try:
        tree = unflatten_state(tree_json, tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise MedisynthError(f"{checkpoint / TRAINING_JSON} is damaged ({type(e).__name__}: {e}); "
                             f"restore the checkpoint or retrain") from None
    for key in ("optimizers", "rng") if rng else ("optimizers",):
        if not isinstance(tree, dict) or not isinstance(tree.get(key), dict):
            raise MedisynthError(f"{checkpoint / TRAINING_JSON} is damaged: no {key!r} mapping in it; "
                                 f"restore the checkpoint or retrain")
    if optimizers is not None:
        saved = tree["optimizers"]
        if set(saved) != set(optimizers):
            raise MedisynthError(
                f"{checkpoint}: optimisers {sorted(saved)} saved, the model has {sorted(optimizers)}; "
                f"the checkpoint is from another model"
            )
        for name, opt in optimizers.items():
            try:
                opt.load_state_dict(saved[name])
            except (ValueError, KeyError) as e:
                raise MedisynthError(f"{checkpoint}: optimiser {name!r} state does not fit this model ({e})") from None
    if rng:
        try:
            restore_rng(tree["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise MedisynthError(f"{checkpoint / TRAINING_JSON}: the saved random-number state is damaged ({e}); "
                                 f"restore the checkpoint or retrain") from None
    state["extra"] = tree.get("extra", {})
    return state
