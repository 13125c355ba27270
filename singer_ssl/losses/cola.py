"""COLA: cross-entropy over a learned bilinear similarity, negatives = the other items' positives.

Reference: Saeed, Grangier & Zeghidour, ICASSP 2021; google-research ``cola/network.py``
(``BilinearProduct``, ``ContrastiveModel.train_step``). With anchors a = z1 and positives p = z2:

    s_ij = a_iᵀ W p_j                       (W ∈ R^{D×D}, learned, owned by this module)
    L = (1/N) Σ_i -log( exp s_ii / Σ_j exp s_ij )

One direction only, as in COLA: each anchor is classified against all positives of the batch, so
the negatives are the other items' second views and there are no anchor-anchor negatives. No
temperature (COLA divides by τ only for its dot-product variant). W is initialised N(0, 0.05²), the
Keras ``random_normal`` initialiser the reference uses. Inputs are used as given (COLA's bilinear
variant feeds LayerNorm + tanh embeddings; our heads give L2-normalised projections, which keeps
the logits bounded by ‖W‖₂); nothing is normalised here.

Shapes: z1, z2 (B, D) -> scalar; ``dim`` must equal D. Trainable state: ``W`` (optimise it with the
model). Distributed: W is applied to the local positives (W p_j), then anchors and W p are
gathered, so negatives span the global batch and W's gradient is this rank's share.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from singer_ssl.losses.base import Objective, full_precision, positive_int, require_batch
from singer_ssl.losses.distributed import gather

INIT_STD = 0.05


class COLALoss(Objective):
    """COLA's bilinear-similarity cross-entropy (see the module docstring).

    Args:
        dim: projection dimension D (the trainer passes ``head.dim``).
    """

    def __init__(self, dim: int = 128):
        super().__init__()
        self.dim = positive_int(dim, "dim", type(self).__name__)
        self.W = nn.Parameter(torch.randn(self.dim, self.dim) * INIT_STD)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"

    @full_precision
    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels=None) -> torch.Tensor:
        who = type(self).__name__
        if z1.shape[1] != self.dim:
            raise ValueError(
                f"{who}: W built for dim={self.dim} but projections have D={z1.shape[1]}; "
                "pass dim=<head.dim> to losses.get('cola', ...)"
            )
        projected = z2 @ self.W.T  # row j = W p_j
        anchors, projected = gather(z1), gather(projected)
        require_batch(anchors.shape[0], who)
        logits = anchors @ projected.T  # logits[i, j] = a_iᵀ W p_j
        target = torch.arange(logits.shape[0], device=logits.device)
        return F.cross_entropy(logits, target)
