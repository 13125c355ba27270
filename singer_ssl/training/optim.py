"""Optimiser and learning-rate schedule of the trainer.

Optimisers (``train.optimizer``):

- ``adam``: ``torch.optim.Adam(lr, weight_decay)`` (L2 added to the gradient, as seeds 000-003).
- ``sgd``: ``torch.optim.SGD(lr, momentum, weight_decay)`` (Fonseca et al. 2021: 0.03, 0.9, 1e-4).

Parameter groups: the model (encoder + head) at ``lr``, the objective's own parameters (BYOL's
predictor, COLA's W, GE2E's w and b) at ``lr * objective.param_lr_scale`` (1 unless the objective
says otherwise, e.g. ``losses.byol.predictor_lr_scale``).

Schedule (``train.schedule``), a pure function of the optimiser step so that a resumed run lands on
exactly the same rate. With k = step (0-based), K = total planned steps, W = warm-up steps
(``train.warmup_epochs`` × steps per epoch, rounded):

- warm-up (every kind): factor = (k + 1) / W for k < W (pl_bolts ``LinearWarmupCosineAnnealingLR``
  with ``warmup_start_lr = 0`` evaluated one step later, so the first step is not wasted at lr 0);
- ``constant``: 1 after the warm-up;
- ``cosine``: (1 + cos(π (k - W) / (K - W))) / 2 after the warm-up (Torres et al.'s BYOL schedule, annealed to 0
  at K; ``eta_min = 0``);
- ``multistep``: ``gamma`` ** (number of ``milestones`` (epochs) already reached: k >= m × steps per
  epoch) (Fonseca et al.'s ``MultiStepLR``, gamma 0.1 at epochs 325 and 425).

The rate of group g at step k is ``base_lr_g * lr_factor(k, ...)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine", "multistep")


def lr_factor(step: int, total_steps: int, schedule: str = "constant", warmup_steps: int = 0,
              milestones: Sequence[int] = (), gamma: float = 0.1) -> float:
    """Multiplier of the base learning rate at optimiser step ``step`` (0-based; see module docstring).

    ``milestones`` are in optimiser steps here (the caller converts epochs). Steps beyond
    ``total_steps`` keep the last value of the cosine (0).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"lr_factor: schedule must be one of {SCHEDULES}, got {schedule!r}")
    k = max(int(step), 0)
    w = max(int(warmup_steps), 0)
    if k < w:
        return (k + 1) / w
    if schedule == "cosine":
        span = max(int(total_steps) - w, 1)
        return (1.0 + math.cos(math.pi * min(k - w, span) / span)) / 2.0
    if schedule == "multistep":
        return float(gamma) ** sum(1 for m in milestones if k >= int(m))
    return 1.0


def param_groups(model: nn.Module, objective: nn.Module, lr: float) -> list[dict[str, Any]]:
    """Optimiser groups: the model at ``lr``, the objective's parameters at ``lr * objective.param_lr_scale``."""
    groups: list[dict[str, Any]] = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": lr,
                                     "name": "model"}]
    own = [p for p in objective.parameters() if p.requires_grad]
    if own:
        scale = float(getattr(objective, "param_lr_scale", 1.0))
        groups.append({"params": own, "lr": lr * scale, "name": "objective"})
    for g in groups:
        g["base_lr"] = g["lr"]
    return groups


def build_optimizer(model: nn.Module, objective: nn.Module, name: str, lr: float, weight_decay: float,
                    momentum: float = 0.9) -> torch.optim.Optimizer:
    """Optimiser ``name`` (``train.optimizer``: adam | sgd) over :func:`param_groups`; ``momentum`` is SGD's."""
    lr, wd = float(lr), float(weight_decay)
    groups = param_groups(model, objective, lr)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=float(momentum), weight_decay=wd)
    raise ValueError(f"build_optimizer: unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Set every group's rate to its ``base_lr`` times ``factor``."""
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * factor
