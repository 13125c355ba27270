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

Predictor input (``predictor_input``): ``l2`` (default, Torres et al.'s ``SiameseArm(normalize_projections=True)``):
the predictor gets the L2-normalised projections; ``raw`` (BYOL-A / lucidrains byol-pytorch): it gets the
projector's raw output. The predictor always takes the projections z as the head gives them, q =
normalise(predictor(z)), so the head realises the choice: ``head.l2: true`` for ``l2``, ``false`` for ``raw``
(:class:`~singer_ssl.training.config.TrainConfig` refuses a mismatch; normalising an already unit-norm z
again would only add rounding, which Adam amplifies). The teacher targets are normalised inside the loss
either way. BYOL-A's loss is the sum of the two directions of
2 - 2·cos, averaged over the batch = 2·D times this one (Adam is invariant to that factor).

- This module owns the **predictor** (Linear(D, H, bias=False) -> BatchNorm1d(H) -> ReLU -> Linear(H, D),
  H = ``predictor_hidden``); its parameters must be optimised with the student (``loss.parameters()``).
  The predictor runs on each view separately (per-view batch-norm statistics, as Torres et al.'s two
  student passes).
- The objective declares ``momentum_tau = tau_base`` (see :mod:`singer_ssl.losses.base`); the training
  loop then keeps the **teacher** = a deep copy of the student's encoder + projection head with
  ``requires_grad=False``, computes ``t1, t2 = teacher(x1), teacher(x2)`` under ``torch.no_grad()``,
  calls ``loss(z1, z2, targets=(t1, t2))``, and after each optimiser step calls
  ``ema_update(teacher, student, tau_schedule(step, total_steps, tau_base))``
  (:mod:`singer_ssl.losses.momentum`). ``selection_metric = "val_eer"``: the loss chases a moving target.

Shapes: z1, z2, t1, t2 (B, D) -> scalar; ``dim`` must equal the projection dimension D.
Distributed: q is computed on local rows, then q and t are gathered, so the value is the global mean.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from singer_ssl.losses.base import Objective, full_precision, positive_int, require_batch
from singer_ssl.losses.distributed import gather

PREDICTOR_INPUTS = ("l2", "raw")


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
        tau_base: τ₀ of the EMA schedule, declared as ``momentum_tau`` (Torres et al. 2023: 0.99).
        predictor_input: ``l2`` (Torres et al. 2023) or ``raw`` (BYOL-A), see the module docstring.
        predictor_lr_scale: the predictor's learning rate is ``train.lr`` times this (Torres et al. 2023: 1).
            BYOL relies on a near-optimal predictor (Grill et al. §3.2; the predictor's relative
            learning rate is studied by Tian et al., ICML 2021, "Understanding self-supervised
            learning dynamics without contrastive pairs"); exposed as ``param_lr_scale``.
    """

    selection_metric = "val_eer"

    def __init__(self, dim: int = 128, predictor_hidden: int = 1024, tau_base: float = 0.99,
                 predictor_lr_scale: float = 1.0, predictor_input: str = "l2"):
        super().__init__()
        who = type(self).__name__
        if predictor_input not in PREDICTOR_INPUTS:
            raise ValueError(f"{who}: predictor_input must be one of {', '.join(PREDICTOR_INPUTS)}, "
                             f"got {predictor_input!r}")
        self.predictor_input = predictor_input
        self.dim = positive_int(dim, "dim", who)
        hidden = positive_int(predictor_hidden, "predictor_hidden", who)
        try:
            tau_base = float(tau_base)
        except (TypeError, ValueError):
            raise ValueError(f"{who}: tau_base must be a number in [0, 1], got {tau_base!r}") from None
        if not 0.0 <= tau_base <= 1.0:
            raise ValueError(f"{who}: tau_base must be in [0, 1], got {tau_base!r}")
        self.momentum_tau = tau_base
        try:
            scale = float(predictor_lr_scale)
        except (TypeError, ValueError):
            scale = float("nan")
        if not scale > 0 or not math.isfinite(scale):
            raise ValueError(f"{who}: predictor_lr_scale must be a number > 0, got {predictor_lr_scale!r}")
        self.param_lr_scale = scale
        self.predictor = make_predictor(self.dim, hidden)

    @property
    def tau_base(self) -> float:
        """τ₀ of the teacher's EMA schedule (= ``momentum_tau``)."""
        return float(self.momentum_tau)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, tau_base={self.tau_base}, predictor_lr_scale={self.param_lr_scale}, "
                f"predictor_input={self.predictor_input}")

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
