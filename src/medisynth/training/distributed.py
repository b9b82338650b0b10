"""Training and sampling on several processes with torch.distributed, launched by ``torchrun``.

``torchrun --nproc_per_node N -m medisynth.cli train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK
(and MASTER_ADDR / MASTER_PORT); :func:`setup` sees them and joins the process group (NCCL on
CUDA, Gloo on the CPU) with a timeout on every collective, so a rank that dies ends the job
instead of hanging it. Without those variables everything here is a no-op for one process.

How the trainer uses it (data parallel, the scheme of StyleGAN2-ADA's training loop):
- every rank builds the same model from the same seed; rank 0's weights are broadcast once;
- ``--batch-size`` is the GLOBAL batch: each rank takes its contiguous slice of the step's
  indices (the epoch permutation is a function of (seed, epoch), identical on every rank);
- before every optimiser step the gradients of that optimiser's parameters are averaged over
  the ranks (one all-reduce of a flat buffer per optimiser). This is what DDP's reducer does,
  done at the optimiser instead of with a ``DistributedDataParallel`` wrapper because a GAN step
  runs the discriminator several times (real, fake, generator pass) before one backward, which
  DDP's autograd hooks do not support without ``static_graph``; it also keeps the checkpoint's
  parameter names unchanged, so any checkpoint resumes with any number of ranks;
- each rank draws its own latents/noise: rank 0 continues the run's RNG (saved in checkpoints),
  rank r > 0 reseeds from (seed, rank, step) at the start and after every checkpoint, so a resume
  with the same number of ranks is exact;
- rank 0 alone writes the run folder (config, checkpoints, metrics, grids).
"""
from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from medisynth.errors import MedisynthError

DEFAULT_TIMEOUT_SECONDS = 120.0
TIMEOUT_ENV = "MEDISYNTH_DIST_TIMEOUT"  # seconds; a collective waiting longer fails the job


def launched() -> bool:
    """True when started by torchrun (or any launcher that sets WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank: from the process group, else from torchrun's RANK (before setup / after teardown)."""
    if active():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if launched() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0: the one process that writes outputs."""
    return rank() == 0


def setup(device: torch.device) -> torch.device:
    """Join the process group when launched by torchrun; return this rank's device.

    CUDA: one GPU per local rank (``cuda:LOCAL_RANK``), NCCL; CPU: Gloo. Safe to call twice."""
    if not launched():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not active():
        try:
            seconds = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_SECONDS))
        except ValueError:
            raise MedisynthError(f"{TIMEOUT_ENV} must be a number of seconds (got {os.environ[TIMEOUT_ENV]!r})") from None
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=seconds))
    return device


def teardown() -> None:
    """Leave the process group (after the last collective)."""
    if active():
        dist.destroy_process_group()


def barrier() -> None:
    if active():
        dist.barrier()


def local_batch_size(global_batch: int) -> int:
    """This rank's share of ``--batch-size`` (the global batch); an error when it does not divide."""
    world = world_size()
    if global_batch % world:
        raise MedisynthError(
            f"--batch-size {global_batch} is the global batch and must divide by the {world} processes; "
            f"use a multiple of {world}"
        )
    return global_batch // world


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of a global batch of indices."""
    size = len(indices) // world_size()
    return indices[rank() * size : (rank() + 1) * size]


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank hold rank 0's parameters and buffers."""
    if not active():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def sync_batchnorm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """On several CUDA ranks, BatchNorm layers normalise with the global batch's statistics (SyncBatchNorm).

    The parameters stay the same objects (optimisers built before still hold them) and the state-dict
    names do not change. Gloo on the CPU has no SyncBatchNorm: there BatchNorm uses each rank's slice."""
    if not active() or device.type != "cuda":
        return model
    return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)


def average_gradients_before_step(optimizers) -> list:
    """Average each optimiser's gradients over the ranks just before it steps; returns the hook handles."""
    if not active():
        return []
    optimizer_list = optimizers.values() if isinstance(optimizers, dict) else (
        optimizers if isinstance(optimizers, (list, tuple)) else [optimizers])
    handles = []
    for optimizer in optimizer_list:
        handles.append(optimizer.register_step_pre_hook(_all_reduce_gradients))
    return handles


communication_seconds = 0.0  # time spent averaging gradients in this process (for benchmarks)


def _all_reduce_gradients(optimizer, args, kwargs) -> None:
    global communication_seconds
    started = time.perf_counter()
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()
    communication_seconds += time.perf_counter() - started


def reseed_rank(seed: int, step: int) -> None:
    """Ranks > 0 draw their own noise from (seed, rank, step); rank 0 keeps the run's saved RNG."""
    if rank() > 0:
        torch.manual_seed((seed * 1_000_003 + rank()) * 1_000_003 + step)


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """Average logged figures over the ranks (each saw its own shard)."""
    if not active() or not values:
        return values
    keys = sorted(values)
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    tensor /= world_size()
    return dict(zip(keys, tensor.tolist()))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (ranks stop on the same step under --minutes)."""
    if not active():
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device if dist.get_backend() == "nccl" else None)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


def gather_to_main(obj) -> list:
    """Every rank's ``obj`` on rank 0, in rank order (``[obj]`` on one process; ``[]`` on other ranks)."""
    if not active():
        return [obj]
    gathered = [None] * world_size() if is_main() else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered if is_main() else []


def broadcast_from_main(obj):
    """Rank 0's ``obj`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
