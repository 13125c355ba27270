"""Decoupled contrastive loss + VICReg variance and covariance regularisers (Torres et al. 2023 "contrastive-vc").

Reference: SonyCSLParis/ssl-singer-identity ``train_configs/contrastive-vc.yaml`` (``decouple: true``,
τ 0.2, 250 negatives, ``fact_var: 25``, ``fact_cov: 100``) with γ = 1/√D from ``trainer.py``:

    L = DCL(z1, z2) + μ·(v(z1) + v(z2))/2 + ν·(c(z1) + c(z2))

DCL is :mod:`singer_ssl.losses.dcl` (one-way, rolled cross-view negatives, positive not in the
denominator; cosines computed inside); v and c are :func:`singer_ssl.losses.vicreg.variance_hinge` and
:func:`~singer_ssl.losses.vicreg.covariance_penalty` on the projections as given (Torres et al. 2023 feeds
L2-normalised projections, hence γ = 1/√D by default). No invariance term (the DCL positive plays
that role). Shapes: z1, z2 (B, D) -> scalar. Distributed: all terms on the gathered batch.
"""

from __future__ import annotations

import torch

from singer_ssl.losses.base import (
    Objective,
    full_precision,
    non_negative,
    positive,
    positive_int,
    require_batch,
)
from singer_ssl.losses.contrastive import rolled_contrastive
from singer_ssl.losses.distributed import gather
from singer_ssl.losses.vicreg import covariance_penalty, resolve_gamma, variance_hinge


class ContrastiveVCLoss(Objective):
    """Torres et al.'s contrastive-vc objective: DCL + 25·variance + 100·covariance.

    Args:
        temperature: τ of the DCL term (0.2).
        n_negatives: maximum rolled negatives per anchor (250).
        var_weight: μ on the variance hinge averaged over both views (25).
        cov_weight: ν on the covariance penalty summed over both views (100).
        gamma: variance target; ``None`` = 1/√D (Torres et al. 2023 with L2-normalised projections).
        eps: ε inside the square root of the variance (1e-8).
    """

    def __init__(
        self,
        temperature: float = 0.2,
        n_negatives: int = 250,
        var_weight: float = 25.0,
        cov_weight: float = 100.0,
        gamma: float | None = None,
        eps: float = 1e-8,
    ):
        super().__init__()
        who = type(self).__name__
        self.temperature = positive(temperature, "temperature", who)
        self.n_negatives = positive_int(n_negatives, "n_negatives", who)
        self.var_weight = non_negative(var_weight, "var_weight", who)
        self.cov_weight = non_negative(cov_weight, "cov_weight", who)
        self.gamma = None if gamma is None else positive(gamma, "gamma", who)
        self.eps = positive(eps, "eps", who)

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, n_negatives={self.n_negatives}, var_weight={self.var_weight}, "
            f"cov_weight={self.cov_weight}, gamma={self.gamma}, eps={self.eps}"
        )

    @full_precision
    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels=None) -> torch.Tensor:
        z1, z2 = gather(z1), gather(z2)
        require_batch(z1.shape[0], type(self).__name__)
        gamma = resolve_gamma(self.gamma, z1.shape[1])
        dcl = rolled_contrastive(z1, z2, self.temperature, self.n_negatives, decouple=True)
        variance = (variance_hinge(z1, gamma, self.eps) + variance_hinge(z2, gamma, self.eps)) / 2
        covariance = covariance_penalty(z1) + covariance_penalty(z2)
        return dcl + self.var_weight * variance + self.cov_weight * covariance
