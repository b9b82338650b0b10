"""Training and sampling on several processes with torch.distributed, launched by ``torchrun``.

``torchrun --nproc_per_node N -m medisynth.cli train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK
(and MASTER_ADDR / MASTER_PORT); :func:`setup` sees them and joins the process group (NCCL on
CUDA, Gloo on the CPU) with a timeout on every collective, so a rank that dies ends the job
instead of hanging it. Without those variables everything here is a no-op for one process.

How the trainer uses it (data parallel, the scheme of StyleGAN2-ADA's training loop):
- every rank builds the same model from the same seed; rank 0's weights are broadcast once;
- ``--batch-size`` is the GLOBAL batch: each rank takes its contiguous slice of the step's
  indices (the epoch permutation is a function of (seed, epoch), identical on every rank);
- at the end of every backward pass the gradients it made are averaged over the ranks (one
  all-reduce of a flat buffer, :func:`average_gradients`). This is what DDP's reducer does, done
  with autograd hooks on the optimisers' parameters instead of a ``DistributedDataParallel``
  wrapper because a GAN step runs the discriminator several times (real, fake, generator pass)
  before one backward, which DDP does not support without ``static_graph``; it also keeps the
  checkpoint's parameter names unchanged, so any checkpoint resumes with any number of ranks;
- every rank holds the same RNG state (the run's, saved in checkpoints) and a training step's
  per-sample draws are taken for the global batch, each rank keeping its rows
  (:class:`GlobalBatchDraws`): image i gets the same latent/noise whatever the number of ranks,
  so a run resumes exactly with the same number of ranks, and with another number or against one
  process on the global batch matches up to the order of floating-point sums;
- BatchNorm normalises over the global batch (:func:`sync_batchnorm`, on Gloo too);
- rank 0 alone writes the run folder (config, checkpoints, metrics, grids).
"""
from __future__ import annotations

import contextlib
import datetime
import os
import time

import torch
import torch.distributed as dist
from torch.overrides import TorchFunctionMode

from medisynth.errors import MedisynthError
from medisynth.models.layers import share_bounds

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


def shard_bounds(count: int) -> tuple[int, int]:
    """This rank's contiguous share ``[start, stop)`` of ``count`` items; shares differ by one item at most.

    Unlike :func:`shard` (a training step's equal slices of the global batch) any count is split:
    feature extraction takes whole sets, whatever their size."""
    return share_bounds(count, world_size(), rank())


def gather_rows(rows):
    """Every rank's ``rows`` (numpy arrays or None), concatenated in rank order on every rank.

    The inverse of :func:`shard_bounds`: rank r's share lands where it was cut from. ``None`` (a
    rank whose share was empty) contributes nothing; all None gives None."""
    import numpy as np

    if not active():
        return rows
    parts = [None] * world_size()
    dist.all_gather_object(parts, rows)
    parts = [p for p in parts if p is not None]
    return np.concatenate(parts) if parts else None


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank hold rank 0's parameters and buffers."""
    if not active():
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def sync_batchnorm(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """On several ranks, BatchNorm layers normalise with the global batch's statistics, as one process would.

    CUDA: torch's SyncBatchNorm. Gloo on the CPU, which torch's SyncBatchNorm refuses:
    :class:`GlooSyncBatchNorm`, the same computation with Gloo all-reduces. The parameters and
    buffers stay the same objects (optimisers built before still hold them) and the state-dict
    names do not change, so checkpoints move freely between any numbers of ranks."""
    if not active() or world_size() == 1:
        return model
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return GlooSyncBatchNorm.convert(model)


class _GlobalBatchNorm(torch.autograd.Function):
    """Batch normalisation over the union of every rank's slice; the backward sums the cross-rank terms.

    Forward: mean, then the centred sum of squares (two passes, as precise as one process's
    kernel), each all-reduced. Backward: dx needs the global sums of dy and dy * x_hat; the
    weight and bias gradients stay local, and the optimiser hook averages them like the rest."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        figures = torch.cat([x.sum(dims, dtype=torch.float64), x.new_tensor([x.numel() // x.shape[1]], dtype=torch.float64)])
        dist.all_reduce(figures)
        count = figures[-1].clone()
        mean = (figures[:-1] / count).to(x.dtype)
        centred = x - mean.view(shape)
        squares = (centred * centred).sum(dims, dtype=torch.float64)
        dist.all_reduce(squares)
        var = (squares / count).to(x.dtype)
        invstd = torch.rsqrt(var + eps)
        x_hat = centred * invstd.view(shape)
        out = x_hat if weight is None else x_hat * weight.view(shape) + bias.view(shape)
        ctx.save_for_backward(x_hat, invstd, weight)
        ctx.count, ctx.dims, ctx.shape = float(count), dims, shape
        ctx.mark_non_differentiable(mean, var, count)
        return out, mean, var, count

    @staticmethod
    def backward(ctx, grad_out, *_):
        x_hat, invstd, weight = ctx.saved_tensors
        dims, shape = ctx.dims, ctx.shape
        sum_dy = grad_out.sum(dims)
        sum_dy_x_hat = (grad_out * x_hat).sum(dims)
        sums = torch.cat([sum_dy, sum_dy_x_hat])
        dist.all_reduce(sums)
        global_dy, global_dy_x_hat = (sums / ctx.count).chunk(2)
        scale = invstd if weight is None else invstd * weight
        grad_x = scale.view(shape) * (grad_out - global_dy.view(shape) - x_hat * global_dy_x_hat.view(shape))
        grad_weight = sum_dy_x_hat if weight is not None and ctx.needs_input_grad[1] else None
        grad_bias = sum_dy if weight is not None and ctx.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias, None


class GlooSyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the global batch on Gloo (CPU) ranks; in eval mode plain BatchNorm on the running statistics."""

    def _check_input_dim(self, input):
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and active()):
            return super().forward(input)
        out, mean, var, count = _GlobalBatchNorm.apply(input, self.weight, self.bias, self.eps)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                unbiased = var * (count / (count - 1).clamp(min=1)).to(var.dtype)
                self.running_mean.lerp_(mean, momentum)
                self.running_var.lerp_(unbiased, momentum)
        return out

    @classmethod
    def convert(cls, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` with every BatchNorm layer replaced by one sharing its parameters and buffers."""
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(
                module, (cls, torch.nn.SyncBatchNorm)):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
            for name in ("weight", "bias"):
                setattr(converted, name, getattr(module, name))
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(converted, name, getattr(module, name))
            converted.train(module.training)
            return converted
        for name, child in list(module.named_children()):
            module._modules[name] = cls.convert(child)
        return module


def average_gradients(optimizers) -> list:
    """Average the gradients of the optimisers' parameters over the ranks as each backward pass makes them.

    As DDP: every parameter that receives a gradient in a ``backward()`` is noted, and when the
    backward pass ends one all-reduce of a flat buffer averages all of them. So whatever runs
    between backward and the optimiser step (gradient clipping, a gradient-norm check) sees the
    global batch's gradients, as one process would. Gradients accumulated over several backward
    passes stay right: each pass's share is averaged once (averaging is linear). Returns the
    hook handles."""
    if not active() or world_size() == 1:
        return []
    optimizer_list = optimizers.values() if isinstance(optimizers, dict) else (
        optimizers if isinstance(optimizers, (list, tuple)) else [optimizers])
    pending: dict[int, torch.nn.Parameter] = {}  # in the order backward made them, the same on every rank

    def flush() -> None:
        global communication_seconds
        started = time.perf_counter()
        params = [p for p in pending.values() if p.grad is not None]
        pending.clear()
        if not params:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= world_size()
        offset = 0
        for p in params:
            p.grad.copy_(flat[offset : offset + p.grad.numel()].view_as(p.grad))
            offset += p.grad.numel()
        communication_seconds += time.perf_counter() - started

    def noted(param: torch.nn.Parameter) -> None:
        if not pending:  # the first gradient of this backward pass: average them all when it ends
            torch.autograd.Variable._execution_engine.queue_callback(flush)
        pending[id(param)] = param

    params = {id(p): p for optimizer in optimizer_list for group in optimizer.param_groups for p in group["params"]}
    return [p.register_post_accumulate_grad_hook(noted) for p in params.values()]


communication_seconds = 0.0  # time spent averaging gradients in this process (for benchmarks)


class GlobalBatchDraws(TorchFunctionMode):
    """Inside a training step: a random draw for the rank's slice of the batch is the slice of the global batch's draw.

    Every rank holds the same RNG state (seeded alike, resumed from the same checkpoint). A draw
    whose first dimension is this rank's batch (``torch.randn(b, ...)``, ``rand``, ``randint``,
    their ``*_like`` forms, dropout's mask) is drawn for the whole global batch instead, and the
    rank keeps rows ``rank * b ... (rank + 1) * b``: the rows its images hold in the global batch.
    So image i gets the same latent, noise level or augmentation whatever the number of ranks, the
    RNG moves the same way on every rank and as on one process, and a run resumes exactly with any
    number of ranks. Any other draw (a scalar, a 0-dim tensor) is left alone: with the same RNG
    state it gives every rank the value one process would get. The price is drawing ``world``
    times the per-sample random numbers, small next to a network's forward pass.

    A draw that is not per-sample must not have the rank's batch as its first dimension (use a
    0-dim tensor: ``torch.randint(4, ())``), or it would be sliced."""

    def __init__(self, local_batch: int):
        super().__init__()
        self.local_batch, self.world, self.rank = local_batch, world_size(), rank()
        self.handlers = {
            torch.randn: self._factory, torch.rand: self._factory, torch.randint: self._randint,
            torch.randn_like: self._like, torch.rand_like: self._like, torch.randint_like: self._like,
            torch.nn.functional.dropout: self._dropout,
        }

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        handler = self.handlers.get(func)
        return handler(func, args, kwargs) if handler is not None else func(*args, **kwargs)

    def _per_sample(self, size) -> bool:
        return len(size) > 0 and int(size[0]) == self.local_batch

    def _rows(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor[self.rank * self.local_batch : (self.rank + 1) * self.local_batch]

    def _global(self, size) -> tuple:
        return (self.local_batch * self.world, *size[1:])

    def _global_like(self, like: torch.Tensor) -> torch.Tensor:
        """An empty global-batch tensor laid out like ``like`` (channels_last stays channels_last): the
        generators fill memory in order, so the layout decides which number lands in which element."""
        order = sorted(range(like.dim()), key=lambda d: -like.stride(d))  # outermost dimension first
        shape = self._global(like.shape)
        inverse = sorted(range(like.dim()), key=order.__getitem__)
        return like.new_empty([shape[d] for d in order]).permute(inverse)

    def _factory(self, func, args, kwargs):
        if "size" in kwargs:
            size = tuple(kwargs.pop("size"))
        else:
            size = tuple(args[0]) if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else tuple(args)
        if not self._per_sample(size):
            return func(size, **kwargs)
        return self._rows(func(self._global(size), **kwargs))

    def _randint(self, func, args, kwargs):
        if "size" in kwargs:
            size, bounds = tuple(kwargs.pop("size")), args
        else:
            size, bounds = tuple(args[-1]), args[:-1]
        if not self._per_sample(size):
            return func(*bounds, size, **kwargs)
        return self._rows(func(*bounds, self._global(size), **kwargs))

    def _like(self, func, args, kwargs):
        like, rest = args[0], args[1:]
        if not self._per_sample(like.shape):
            return func(like, *rest, **kwargs)
        return self._rows(func(self._global_like(like), *rest, **kwargs))

    def _dropout(self, func, args, kwargs):
        names = ("input", "p", "training", "inplace")
        options = {**dict(zip(names, args)), **kwargs}
        x, p = options["input"], float(options.get("p", 0.5))
        if not options.get("training", True) or p == 0.0 or not self._per_sample(x.shape):
            return func(**options)
        if p == 1.0:
            return x.mul_(0.0) if options.get("inplace", False) else x * 0.0
        # the mask as torch's CPU dropout draws it (bernoulli over the input's shape), for the global batch
        mask = self._rows(self._global_like(x).bernoulli_(1.0 - p))
        if options.get("inplace", False):
            return x.mul_(mask).mul_(1.0 / (1.0 - p))
        return x.mul(mask).mul_(1.0 / (1.0 - p))


def global_batch_draws(local_batch: int):
    """The context a training step runs in: :class:`GlobalBatchDraws` on several ranks, nothing on one."""
    return GlobalBatchDraws(local_batch) if active() and world_size() > 1 else contextlib.nullcontext()


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


def agree_on_step(seconds: float, flag: bool, device: torch.device) -> tuple[float, bool]:
    """Rank 0's ``seconds`` and whether ``flag`` is true on any rank, on every rank: one small all-reduce.

    The trainer calls it once per step: the interval clocks and the ``--minutes`` budget read rank 0's
    clock and a divergence on any rank is one on all, so every rank takes the same decisions (which
    are followed by collectives) at the same step."""
    if not active():
        return seconds, flag
    figures = torch.tensor([seconds if is_main() else 0.0, 1.0 if flag else 0.0], dtype=torch.float64,
                           device=device if dist.get_backend() == "nccl" else None)
    dist.all_reduce(figures, op=dist.ReduceOp.MAX)  # seconds >= 0: the maximum is rank 0's
    main_seconds, any_flag = figures.tolist()
    return main_seconds, any_flag > 0


def share_cuda_rng(device: torch.device) -> None:
    """Give every rank's GPU rank 0's CUDA RNG state (after a checkpoint's RNG was restored).

    A checkpoint holds rank 0's process's view of every GPU's generator, of which only its own
    GPU's moved; rank r draws on its own GPU, so it takes the state of rank 0's instead."""
    if not active() or device.type != "cuda":
        return
    state = broadcast_from_main(torch.cuda.get_rng_state(device))
    torch.cuda.set_rng_state(state.cpu(), device)


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
