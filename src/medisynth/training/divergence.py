"""Divergence caught in the step it happens: non-finite losses, gradients or weights.

A learning rate far too high makes a GAN or VAE blow up to inf/NaN within a few steps. Left
alone, the NaN weights would be checkpointed, resumed, sampled (as black images) and added to
a training set. Instead every training step's figures and the gradients' norm are checked
(one small reduction per step), and the weights before each checkpoint; on the first
non-finite value the run follows ``--on-nan``:

- ``rollback`` (default): once, go back to the last good state (the newest checkpoint, or the
  initial weights when none was written yet) with every learning rate halved, and carry on;
  a second divergence stops the run;
- ``stop``: stop at once.

Stopping raises ``MedisynthError`` (exit 2 from the CLI) naming the step; the run keeps its last
good checkpoint. No checkpoint with non-finite tensors is ever written.
"""
from __future__ import annotations

import copy
import math
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import torch

from medisynth.errors import MedisynthError
from medisynth.training.checkpoint import capture_rng, non_finite_keys, restore_rng
from medisynth.training.config import ON_NAN


def non_finite_figures(figures: Mapping[str, Any]) -> list[str]:
    """Names of the step's logged figures that are inf or NaN."""
    return [k for k, v in figures.items() if isinstance(v, (int, float, torch.Tensor)) and not math.isfinite(float(v))]


def gradient_norm(model: torch.nn.Module) -> float:
    """The total 2-norm of the gradients left by the last step (0.0 when none): inf/NaN if any is."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0


class DivergenceGuard:
    """Checks each step of one training run and rolls it back or stops it (``policy``: rollback|stop).

    ``restore_checkpoint()`` reloads the newest checkpoint (weights, optimisers, RNG) and returns
    its step; it is used when a checkpoint has been written, else the initial state is restored.
    """

    def __init__(self, policy: str, model: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer],
                 restore_checkpoint: Callable[[], int], run: Path):
        if policy not in ON_NAN:
            raise MedisynthError(f"--on-nan {policy!r}: choose {' or '.join(ON_NAN)}")
        self.policy, self.model, self.optimizers, self.run = policy, model, optimizers, Path(run)
        self.restore_checkpoint = restore_checkpoint
        self.rollbacks_left = 1 if policy == "rollback" else 0
        self._initial: Optional[tuple] = None

    def remember_initial_state(self) -> None:
        """Keep (on the CPU) the state a fresh run starts from, to roll back to before its first checkpoint."""
        weights = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self._initial = (weights, {n: copy.deepcopy(o.state_dict()) for n, o in self.optimizers.items()}, capture_rng())

    def problem(self, figures: Mapping[str, Any]) -> Optional[str]:
        """What is non-finite after a step ("Loss_D nan", "gradient norm inf"), or None."""
        bad = non_finite_figures(figures)
        if bad:
            return ", ".join(f"{k} {float(figures[k])}" for k in bad)
        norm = gradient_norm(self.model)
        return None if math.isfinite(norm) else f"gradient norm {norm}"

    def weights_problem(self) -> Optional[str]:
        """Checked before a checkpoint: the weights can blow up while the step's losses were finite."""
        bad = non_finite_keys(self.model.state_dict())
        return f"{len(bad)} weight tensor(s) non-finite (e.g. {bad[0]})" if bad else None

    def recover(self, step: int, problem: str, has_checkpoint: bool) -> int:
        """Roll back (returning the step training continues from) or raise the one-line stop message."""
        if self.rollbacks_left == 0:
            kept = "its newest checkpoint is from before the divergence" if has_checkpoint else "no checkpoint was written"
            raise MedisynthError(
                f"training diverged at step {step} ({problem}); stopped (--on-nan {self.policy}). {self.run}: {kept}. "
                f"Train again with lower learning rates (--lr, --lr-g, --lr-d)"
            )
        self.rollbacks_left -= 1
        if has_checkpoint:
            back_to = self.restore_checkpoint()
        else:
            back_to = self._restore_initial()
        lrs = []
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] *= 0.5
                lrs.append(group["lr"])
        print(f"warning: training diverged at step {step} ({problem}); rolled back to step {back_to} "
              f"with the learning rates halved (now {', '.join(f'{lr:.3g}' for lr in dict.fromkeys(lrs))}); "
              f"a second divergence stops the run", file=sys.stderr, flush=True)
        return back_to

    def _restore_initial(self) -> int:
        if self._initial is None:
            raise MedisynthError(f"{self.run}: diverged before the first checkpoint and no initial state was kept")
        weights, optimizer_states, rng = self._initial
        self.model.load_state_dict(weights)
        for name, opt in self.optimizers.items():
            opt.load_state_dict(copy.deepcopy(optimizer_states[name]))
        restore_rng(rng)
        return 0
