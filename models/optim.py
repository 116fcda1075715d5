"""Optimisers and learning-rate schedules built from the config.

Every schedule is stepped once per optimiser step and spans the whole run (``total_steps``), so
a resumed run continues the same curve from the scheduler's saved state. ``cosine`` and
``constant`` are one ``LambdaLR`` over a pure function of the step (its state is just the step
count), ``onecycle`` is torch's ``OneCycleLR``, which also cycles the momentum (or Adam's
beta1) against the learning rate. Weight decay applies to weights only, not to biases and
batch-norm parameters, where it only fights the normalisation.
"""

from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from .config import OptimConfig, ScheduleConfig

__all__ = ["build_optimizer", "build_scheduler", "schedule_factor"]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov momentum) over ``model``'s parameters.

    Raises:
        ValueError: A non-positive learning rate, or negative weight decay or momentum.
    """
    if config.lr <= 0 or config.weight_decay < 0 or config.momentum < 0:
        msg = (f"optim.lr must be > 0, optim.weight_decay and optim.momentum >= 0; got "
               f"{config.lr}, {config.weight_decay}, {config.momentum}")
        raise ValueError(msg)
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.name == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.momentum > 0)
    return torch.optim.AdamW(groups, lr=config.lr)


def schedule_factor(step: int, *, total_steps: int, warmup_steps: int, name: str,
                    final_fraction: float) -> float:
    """The multiple of the base learning rate at ``step`` for ``cosine`` and ``constant``.

    Example:
        >>> [round(schedule_factor(s, total_steps=10, warmup_steps=2, name="cosine",
        ...                        final_fraction=0.0), 2) for s in (0, 1, 2, 6, 10)]
        [0.5, 1.0, 1.0, 0.5, 0.0]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if name == "constant":
        return 1.0
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, config: ScheduleConfig,
                    total_steps: int) -> LRScheduler:
    """The schedule of ``config`` over ``total_steps`` optimiser steps.

    Raises:
        ValueError: ``total_steps`` < 1 (< 4 for ``onecycle``), or a warm-up or final fraction
            outside [0, 1].
    """
    if total_steps < 1:
        msg = f"the run has {total_steps} optimiser steps; a schedule needs at least one"
        raise ValueError(msg)
    for key, value in (("warmup_fraction", config.warmup_fraction),
                       ("final_lr_fraction", config.final_lr_fraction)):
        if not 0.0 <= value <= 1.0:
            msg = f"schedule.{key} must lie in [0, 1], got {value}"
            raise ValueError(msg)
    if config.name == "onecycle":
        if total_steps < 4:
            msg = f"schedule 'onecycle' needs at least 4 steps, the run has {total_steps}; use 'cosine'"
            raise ValueError(msg)
        peak = [group["lr"] for group in optimizer.param_groups]
        # OneCycleLR divides by the length of each phase: both must span more than one step.
        warmup = min(max(config.warmup_fraction, 1.5 / total_steps), 1 - 1.5 / total_steps)
        return OneCycleLR(optimizer, max_lr=peak, total_steps=total_steps, pct_start=warmup,
                          div_factor=25.0, final_div_factor=1.0 / max(config.final_lr_fraction * 25.0, 1e-4))
    warmup_steps = round(config.warmup_fraction * total_steps)
    factor = partial(schedule_factor, total_steps=total_steps, warmup_steps=warmup_steps,
                     name=config.name, final_fraction=config.final_lr_fraction)
    return LambdaLR(optimizer, factor)
