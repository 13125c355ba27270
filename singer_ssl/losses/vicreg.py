"""VICReg as configured by Torres et al. 2023: 25·invariance + 25·variance(γ=1/√D) + 100·covariance.

Reference: SonyCSLParis/ssl-singer-identity ``singer_identity/losses.py`` (``invariance_loss``,
``variance_hinge_reg``, ``covariance_reg``) with ``train_configs/vicreg.yaml`` and the γ override in
``trainer.py`` (γ = 1/√D when the projection is L2-normalised); original method: Bardes, Ponce & LeCun,
ICLR 2022. For views Z, Z' (N, D):

    s(Z, Z')  = (1/(N·D)) Σ_{n,d} (z_nd - z'_nd)²                         (MSE)
    v(Z)      = (1/D) Σ_d max(0, γ - sqrt(Var(z_·d) + ε))                  (unbiased variance, 1/(N-1))
    c(Z)      = (1/D) Σ_{i≠j} C(Z)_ij²,  C(Z) = (Z - mean)ᵀ(Z - mean) / (N-1)
    L = λ·s(Z, Z') + μ·(v(Z) + v(Z'))/2 + ν·(c(Z) + c(Z'))

Differences from the original VICReg (official code = lightly ``VICRegLoss`` = PML): the original
uses λ=25, μ=25, **ν=1**, γ=1, ε=1e-4 on un-normalised projections; Torres et al. 2023 uses **ν=100**,
**γ=1/√D on L2-normalised projections** and ε=1e-8. Both halve the variance term (mean of the two
views) — solo-learn does not (its μ is effectively doubled). The covariance terms are summed over the
two views in all of them. No normalisation happens here: VICReg works on the projections as given;
``gamma=None`` (1/√D) presumes unit-norm inputs, set ``gamma: 1.0`` for the original recipe.

Shapes: z1, z2 (B, D) -> scalar; needs a (global) batch of >= 2 items (the variance uses 1/(N-1)).
Distributed: computed on the gathered batch, so variance and covariance are global statistics.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from singer_ssl.losses.base import Objective, full_precision, non_negative, positive, require_batch
from singer_ssl.losses.distributed import gather


def variance_hinge(z: torch.Tensor, gamma: float, eps: float) -> torch.Tensor:
    """v(Z) = mean_d ReLU(γ - sqrt(Var(z_d) + ε)), unbiased variance over the batch. z (N, D)."""
    std = torch.sqrt(z.var(dim=0, unbiased=True) + eps)
    return F.relu(gamma - std).mean()


def covariance_penalty(z: torch.Tensor) -> torch.Tensor:
    """c(Z) = Σ_{i≠j} C_ij² / D with C the (N-1)-normalised covariance of z (N, D)."""
    n, d = z.shape
    zc = z - z.mean(dim=0)
    cov = zc.T @ zc / (n - 1)
    off = cov - torch.diag(torch.diagonal(cov))
    return off.pow(2).sum() / d


def resolve_gamma(gamma: float | None, dim: int) -> float:
    """γ, with ``None`` meaning Torres et al.'s 1/√D for L2-normalised projections."""
    return 1.0 / math.sqrt(dim) if gamma is None else gamma


class VICRegLoss(Objective):
    """Torres et al.'s VICReg (see the module docstring for the formula and how it differs from VICReg).

    Args:
        inv_weight: λ on the MSE invariance (25).
        var_weight: μ on the variance hinge, averaged over the two views (25).
        cov_weight: ν on the covariance penalty, summed over the two views (Torres et al. 2023: 100; original 1).
        gamma: target standard deviation γ; ``None`` = 1/√D (Torres et al. 2023 with L2-normalised projections).
        eps: ε inside the square root (Torres et al. 2023: 1e-8; original 1e-4).
    """

    def __init__(
        self,
        inv_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 100.0,
        gamma: float | None = None,
        eps: float = 1e-8,
    ):
        super().__init__()
        who = type(self).__name__
        self.inv_weight = non_negative(inv_weight, "inv_weight", who)
        self.var_weight = non_negative(var_weight, "var_weight", who)
        self.cov_weight = non_negative(cov_weight, "cov_weight", who)
        self.gamma = None if gamma is None else positive(gamma, "gamma", who)
        self.eps = positive(eps, "eps", who)

    def extra_repr(self) -> str:
        return (
            f"inv_weight={self.inv_weight}, var_weight={self.var_weight}, cov_weight={self.cov_weight}, "
            f"gamma={self.gamma}, eps={self.eps}"
        )

    @full_precision
    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels=None) -> torch.Tensor:
        z1, z2 = gather(z1), gather(z2)
        require_batch(z1.shape[0], type(self).__name__)
        gamma = resolve_gamma(self.gamma, z1.shape[1])
        invariance = F.mse_loss(z1, z2)
        variance = (variance_hinge(z1, gamma, self.eps) + variance_hinge(z2, gamma, self.eps)) / 2
        covariance = covariance_penalty(z1) + covariance_penalty(z2)
        return self.inv_weight * invariance + self.var_weight * variance + self.cov_weight * covariance
