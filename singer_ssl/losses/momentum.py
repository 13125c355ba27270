"""The momentum teacher's update: an exponential moving average on a cosine τ schedule.

Used by the training loop for every objective that declares ``momentum_tau`` (BYOL; MoCo or DINO would
do the same): after each optimiser step each (online, momentum) pair moves by
``θ_m ← τ_k θ_m + (1 - τ_k) θ_o``. References: Grill et al., NeurIPS 2020 (BYOL, cosine schedule);
SonyCSLParis/ssl-singer-identity ``callbacks/ma_updates.py`` (``MAWeightUpdate``, Torres et al. 2023);
solo-learn ``solo/utils/momentum.py`` (``MomentumUpdater``, ``initialize_momentum_params``).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def momentum_copy(online: nn.Module) -> nn.Module:
    """The momentum (teacher) copy of ``online``: same weights and buffers, no gradients."""
    return copy.deepcopy(online).requires_grad_(False)


def tau_schedule(step: int, total_steps: int, tau_base: float = 0.99) -> float:
    """EMA rate at optimiser step k of K: τ_k = 1 - (1 - τ₀)(cos(πk/K) + 1)/2 (Torres et al. 2023, BYOL paper).

    τ(0) = τ₀, τ(K/2) = (1 + τ₀)/2, τ(K) = 1; steps beyond K stay at 1 (k is clamped to [0, K]).
    """
    if total_steps < 1:
        raise ValueError(f"tau_schedule: total_steps must be >= 1, got {total_steps}")
    if not 0.0 <= tau_base <= 1.0:
        raise ValueError(f"tau_schedule: tau_base must be in [0, 1], got {tau_base}")
    k = min(max(step, 0), total_steps)
    return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, tau: float) -> None:
    """In place: θ_t ← τ·θ_t + (1 - τ)·θ_s for every parameter and floating-point buffer.

    Integer buffers (BatchNorm's ``num_batches_tracked``) are copied from the student. Torres et al. 2023 and
    lightly average parameters only; averaging the float buffers too keeps the teacher's batch-norm
    running statistics consistent with its averaged weights. ``student`` is not modified.
    Raises ValueError when the two modules' parameter/buffer names or shapes differ.
    """
    if not 0.0 <= tau <= 1.0:
        raise ValueError(f"ema_update: tau must be in [0, 1], got {tau}")
    for kind, t_items, s_items in (
        ("parameter", teacher.named_parameters(), student.named_parameters()),
        ("buffer", teacher.named_buffers(), student.named_buffers()),
    ):
        t_dict, s_dict = dict(t_items), dict(s_items)
        if t_dict.keys() != s_dict.keys():
            diff = sorted(set(t_dict) ^ set(s_dict))[:5]
            raise ValueError(f"ema_update: teacher and student differ in {kind}s {diff}")
        for name, t in t_dict.items():
            s = s_dict[name]
            if t.shape != s.shape:
                raise ValueError(
                    f"ema_update: {kind} {name!r} has shape {tuple(t.shape)} vs {tuple(s.shape)}"
                )
            if t.is_floating_point():
                t.mul_(tau).add_(s.detach().to(t.dtype), alpha=1.0 - tau)
            else:
                t.copy_(s)
