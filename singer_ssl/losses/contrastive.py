"""One-way contrastive loss with rolled negatives from the other view (Torres et al. 2023, ``decouple=False``).

Reference: SonyCSLParis/ssl-singer-identity ``singer_identity/losses.py::contrastive_loss``
(Torres et al., ISMIR 2023). With s(a, b) = cos(a, b) / τ and N items in the (global) batch:

    L = mean_i [ -s(z1_i, z2_i) + log( exp s(z1_i, z2_i) + Σ_{k=1..K} exp s(z1_i, z2_{(i-k) mod N}) ) ]

K = min(N - 1, n_negatives). Anchors are z1 only (not symmetrised); negatives are the *other view's*
projections of other items, obtained by rolling z2 by 1..K positions (no z1-z1 negatives). With
``n_negatives >= N - 1`` every other item is a negative. The positive is kept in the log-sum-exp
(NT-Xent style). Removing it gives :mod:`singer_ssl.losses.dcl`, which is what Torres et al.'s published
"contrastive" model used (``contrastive.yaml``: ``decouple: true``).

Cosines are computed here (inputs need not be normalised). Shapes: z1, z2 (B, D) -> scalar.
Distributed: computed on the gathered batch, so rolled negatives use global indices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from singer_ssl.losses.base import Objective, full_precision, positive, positive_int, require_batch
from singer_ssl.losses.distributed import gather


def rolled_contrastive(
    z1: torch.Tensor, z2: torch.Tensor, temperature: float, n_negatives: int, decouple: bool
) -> torch.Tensor:
    """Seed-000 contrastive loss on one (already gathered) batch; see the module docstring.

    ``decouple=True`` drops the positive from the log-sum-exp (DCL, Yeh et al. 2022).
    z1, z2: (N, D), N >= 2 -> scalar.
    """
    n = z1.shape[0]
    n_rolls = min(n - 1, n_negatives)
    sim = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T / temperature  # sim[i, j] = s(z1_i, z2_j)
    pos = sim.diagonal()
    rows = torch.arange(n, device=z1.device)
    shifts = torch.arange(1, n_rolls + 1, device=z1.device)
    neg_idx = (rows[:, None] - shifts[None, :]) % n  # (N, K): item rolled k places onto row i
    logits = sim.gather(1, neg_idx)
    if not decouple:
        logits = torch.cat([logits, pos[:, None]], dim=1)
    return (-pos + torch.logsumexp(logits, dim=1)).mean()


class ContrastiveLoss(Objective):
    """Torres et al.'s one-way contrastive loss with rolled negatives, positive in the denominator.

    Args:
        temperature: τ (Torres et al. 2023: 0.2).
        n_negatives: maximum number of rolled negatives per anchor (Torres et al. 2023: 250, i.e. all others
            for its batch of 140).
    """

    decouple = False

    def __init__(self, temperature: float = 0.2, n_negatives: int = 250):
        super().__init__()
        who = type(self).__name__
        self.temperature = positive(temperature, "temperature", who)
        self.n_negatives = positive_int(n_negatives, "n_negatives", who)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, n_negatives={self.n_negatives}"

    @full_precision
    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels=None) -> torch.Tensor:
        z1, z2 = gather(z1), gather(z2)
        require_batch(z1.shape[0], type(self).__name__)
        return rolled_contrastive(z1, z2, self.temperature, self.n_negatives, self.decouple)
