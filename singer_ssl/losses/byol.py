"""BYOL: a predictor on the student's projections regresses the EMA teacher's projections (Torres et al. 2023).

References: Grill et al., NeurIPS 2020; SonyCSLParis/ssl-singer-identity ``trainer_byol.py``
(``MSELoss`` on normalised vectors, symmetrised), ``model.py`` (``MLP([128, 1024, 128],
use_batchnorm=True)``, ``SiameseArm(normalize_projections=True)``) and ``callbacks/ma_updates.py``
(``MAWeightUpdate``: cosine τ schedule, EMA after every batch).

Loss, with q = normalise(predictor(z_student)) and t = normalise(z_teacher):

    L(q, t) = (1/(B·D)) Σ_{n,d} (q_nd - t_nd)²  = (2 - 2·mean_n cos(q_n, t_n)) / D
    loss    = ( L(q(z1), t2) + L(q(z2), t1) ) / 2

i.e. Torres et al.'s MSE over B×D, which is the paper's 2 - 2·cos divided by D (same minimiser and
direction, gradient scaled by 1/D; lucidrains/BYOL-A sum the two directions of 2 - 2·cos instead).

Division of labour with the trainer:

- This module owns the **predictor** (Linear(D, H, bias=False) -> BatchNorm1d(H) -> ReLU -> Linear(H, D),
  H = ``predictor_hidden``); its parameters must be optimised with the student (``loss.parameters()``).
  The predictor runs on each view separately (per-view batch-norm statistics, as Torres et al.'s two
  student passes).
- The trainer keeps the **teacher** = a deep copy of the student's encoder + projection head with
  ``requires_grad=False``, computes ``t1, t2 = teacher(x1), teacher(x2)`` under ``torch.no_grad()``,
  calls ``loss(z1, z2, targets=(t1, t2))``, and after each optimiser step calls
  ``ema_update(teacher, student, tau_schedule(step, total_steps, loss.tau_base))``.

Shapes: z1, z2, t1, t2 (B, D) -> scalar; ``dim`` must equal the projection dimension D.
Distributed: q is computed on local rows, then q and t are gathered, so the value is the global mean.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from singer_ssl.core.errors import ConfigError
from singer_ssl.losses.base import Objective, full_precision, positive_int, require_batch
from singer_ssl.losses.distributed import gather


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


def make_predictor(dim: int, hidden: int) -> nn.Sequential:
    """Torres et al.'s predictor: Linear(dim, hidden, bias=False) -> BN -> ReLU -> Linear(hidden, dim)."""
    return nn.Sequential(
        nn.Linear(dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, dim),
    )


class BYOLLoss(Objective):
    """Symmetrised normalised-MSE between the predictor's outputs and the teacher's projections.

    Args:
        dim: projection dimension D (the trainer passes ``head.dim``; Torres et al. 2023: 128).
        predictor_hidden: hidden width of the predictor (Torres et al. 2023: 1024).
        tau_base: τ₀ of the EMA schedule, read by the trainer (Torres et al. 2023: 0.99).
        predictor_lr_scale: the predictor's learning rate is ``train.lr`` times this (Torres et al. 2023: 1).
            BYOL relies on a near-optimal predictor (Grill et al. §3.2; the predictor's relative
            learning rate is studied by Tian et al., ICML 2021, "Understanding self-supervised
            learning dynamics without contrastive pairs"); exposed as ``param_lr_scale``.
    """

    needs_teacher = True

    def __init__(self, dim: int = 128, predictor_hidden: int = 1024, tau_base: float = 0.99,
                 predictor_lr_scale: float = 1.0):
        super().__init__()
        who = type(self).__name__
        self.dim = positive_int(dim, "dim", who)
        hidden = positive_int(predictor_hidden, "predictor_hidden", who)
        try:
            tau_base = float(tau_base)
        except (TypeError, ValueError):
            raise ConfigError(f"{who}: tau_base must be a number in [0, 1], got {tau_base!r}") from None
        if not 0.0 <= tau_base <= 1.0:
            raise ConfigError(f"{who}: tau_base must be in [0, 1], got {tau_base!r}")
        self.tau_base = tau_base
        try:
            scale = float(predictor_lr_scale)
        except (TypeError, ValueError):
            scale = float("nan")
        if not scale > 0 or not math.isfinite(scale):
            raise ConfigError(f"{who}: predictor_lr_scale must be a number > 0, got {predictor_lr_scale!r}")
        self.param_lr_scale = scale
        self.predictor = make_predictor(self.dim, hidden)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, tau_base={self.tau_base}, predictor_lr_scale={self.param_lr_scale}"

    @full_precision
    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels=None, targets=None) -> torch.Tensor:
        who = type(self).__name__
        if targets is None or len(targets) != 2:
            raise ValueError(f"{who}: needs targets=(t1, t2), the teacher's projections of the two views")
        t1, t2 = (t.detach().float() for t in targets)
        if t1.shape != z1.shape or t2.shape != z1.shape:
            raise ValueError(
                f"{who}: targets must have the student's shape {tuple(z1.shape)}, got "
                f"{tuple(t1.shape)} and {tuple(t2.shape)}"
            )
        if z1.shape[1] != self.dim:
            raise ValueError(
                f"{who}: predictor built for dim={self.dim} but projections have D={z1.shape[1]}; "
                "pass dim=<head.dim> to losses.get('byol', ...)"
            )
        if self.training:
            require_batch(z1.shape[0], f"{who} (batch-norm in the predictor)")
        q1 = F.normalize(self.predictor(z1), dim=1)
        q2 = F.normalize(self.predictor(z2), dim=1)
        q1, q2 = gather(q1), gather(q2)
        t1, t2 = F.normalize(gather(t1), dim=1), F.normalize(gather(t2), dim=1)
        return (F.mse_loss(q1, t2) + F.mse_loss(q2, t1)) / 2
