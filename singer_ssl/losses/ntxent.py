"""NT-Xent (SimCLR) over the 2N views, symmetric, positive kept in the denominator.

Reference: Chen et al., SimCLR (ICML 2020); Fonseca et al. 2021 edufonseca/uclser20
``src/utils_train_eval.py::train_Contrastive`` (τ = 0.2); lightly ``NTXentLoss`` (default τ = 0.5).
With u = [ẑ1; ẑ2] the 2N L2-normalised views, s_ij = u_i·u_j / τ and p(i) the other view of i:

    L = (1 / 2N) Σ_i -log( exp s_{i,p(i)} / Σ_{k≠i} exp s_ik )

Every other view (both views of the other items and the anchor's own positive) is in the
denominator; only the anchor itself is excluded. Inputs are L2-normalised here.
Shapes: z1, z2 (B, D) -> scalar. Distributed: computed on the gathered 2N views (global indices).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from singer_ssl.losses.base import Objective, full_precision, positive, require_batch
from singer_ssl.losses.distributed import gather


def ntxent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent on one (already gathered) batch. z1, z2 (N, D) -> scalar."""
    n = z1.shape[0]
    u = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    sim = u @ u.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=u.device)
    sim = sim.masked_fill(self_mask, float("-inf"))
    idx = torch.arange(2 * n, device=u.device)
    target = (idx + n) % (2 * n)
    return F.cross_entropy(sim, target)


class NTXentLoss(Objective):
    """Symmetric NT-Xent over 2N views (SimCLR / Fonseca et al. 2021).

    Args:
        temperature: τ (Fonseca et al. 2021 and Torres et al. 2023: 0.2).
    """

    def __init__(self, temperature: float = 0.2):
        super().__init__()
        self.temperature = positive(temperature, "temperature", type(self).__name__)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    @full_precision
    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels=None) -> torch.Tensor:
        z1, z2 = gather(z1), gather(z2)
        require_batch(z1.shape[0], type(self).__name__)
        return ntxent(z1, z2, self.temperature)
