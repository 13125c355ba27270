"""Alignment + uniformity on the hypersphere (Wang & Isola, ICML 2020), Torres et al.'s "unif-align".

Reference: SsnL/align_uniform (``align_loss``, ``uniform_loss``, ``examples/stl10/main.py``), used by
SonyCSLParis/ssl-singer-identity with ``uniformity-alignment.yaml`` (both weights 1, α = 2, t = 2).
With â, b̂ the L2-normalised views (N, D):

    L_align   = (1/N) Σ_i ‖â_i - b̂_i‖₂^α
    L_unif(x) = log( (2 / (N(N-1))) Σ_{i<j} exp(-t ‖x_i - x_j‖₂²) )
    L = align_weight · L_align + unif_weight · (L_unif(â) + L_unif(b̂)) / 2

Uniformity is averaged over the two views (as in the reference and Torres et al. 2023). lightly's
``HypersphereLoss`` has the same form but defaults to t = 1; we keep the reference t = 2.
The formulas are defined on the unit sphere, so inputs are L2-normalised here (a no-op for the
L2-normalised heads). Squared distances use 2 - 2·cos (exact on the sphere, differentiable at 0);
the log-mean-exp is evaluated as a log-sum-exp. Shapes: z1, z2 (B, D) -> scalar (needs >= 2 items).
Distributed: uniformity pairs span the gathered batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from singer_ssl.losses.base import Objective, full_precision, non_negative, positive, require_batch
from singer_ssl.losses.distributed import gather


def alignment(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Mean ‖a_i - b_i‖^α over rows; a, b (N, D) unit vectors."""
    sq = (a - b).pow(2).sum(dim=1)
    if alpha == 2.0:
        return sq.mean()
    return sq.clamp_min(1e-30).pow(alpha / 2).mean()


def uniformity(x: torch.Tensor, t: float) -> torch.Tensor:
    """log mean_{i<j} exp(-t ‖x_i - x_j‖²) for unit vectors x (N, D), N >= 2."""
    n = x.shape[0]
    i, j = torch.triu_indices(n, n, offset=1, device=x.device)
    sq = (2.0 - 2.0 * (x[i] * x[j]).sum(dim=1)).clamp_min(0.0)
    return torch.logsumexp(-t * sq, dim=0) - math.log(sq.numel())


class UniformityLoss(Objective):
    """Wang & Isola alignment + uniformity (Torres et al. 2023 weights 1 and 1, α = 2, t = 2).

    Args:
        align_weight: weight of L_align (Torres et al. 2023: 1; its code default 0.25).
        unif_weight: weight of the view-averaged L_unif (Torres et al. 2023: 1; its code default 0.5).
        alpha: exponent α of the alignment distance (2).
        t: uniformity temperature t (2; lightly's default 1).
    """

    def __init__(
        self, align_weight: float = 1.0, unif_weight: float = 1.0, alpha: float = 2.0, t: float = 2.0
    ):
        super().__init__()
        who = type(self).__name__
        self.align_weight = non_negative(align_weight, "align_weight", who)
        self.unif_weight = non_negative(unif_weight, "unif_weight", who)
        self.alpha = positive(alpha, "alpha", who)
        self.t = positive(t, "t", who)

    def extra_repr(self) -> str:
        return (
            f"align_weight={self.align_weight}, unif_weight={self.unif_weight}, "
            f"alpha={self.alpha}, t={self.t}"
        )

    @full_precision
    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels=None) -> torch.Tensor:
        a, b = F.normalize(gather(z1), dim=1), F.normalize(gather(z2), dim=1)
        require_batch(a.shape[0], type(self).__name__)
        align = alignment(a, b, self.alpha)
        unif = (uniformity(a, self.t) + uniformity(b, self.t)) / 2
        return self.align_weight * align + self.unif_weight * unif
