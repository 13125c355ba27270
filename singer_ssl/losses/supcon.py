"""Supervised contrastive loss, Khosla's L_out over the 2N views (SemiSupCon's ``SSNTXent`` form).

References: Khosla et al., NeurIPS 2020 (HobbitLong/SupContrast ``losses.py``, L_out);
Pliploop/SemiSupCon ``models/losses/semisupconloss.py::SSNTXent`` (Guinot et al., ISMIR 2024).
With u = [ẑ1; ẑ2] the 2N L2-normalised views, s_ij = u_i·u_j / τ, and P(i) the positives of view i:

    P(i) = { p ≠ i : p is the other view of the same item, or y_p = y_i ≥ 0 }
    L = (1 / 2N) Σ_i  -(1/|P(i)|) Σ_{p∈P(i)} log( exp s_ip / Σ_{a≠i} exp s_ia )

Positives stay in the denominator (L_out, not solo-learn's L_in with the sum inside the log). Every
view has at least its other view as a positive, so no anchor is dropped. Labels are integer singer ids;
a negative id (``-1``) marks an unlabelled item whose only positive is its other view. Without labels
the loss equals :mod:`singer_ssl.losses.ntxent` with the same τ. No ``τ/base_τ`` rescaling
(SupContrast's default scales by τ/0.07).

``eps`` (:class:`SupConLoss`: 0, Khosla's exact log-softmax, computed with a log-sum-exp): SemiSupCon's
``SSNTXent`` computes ``-log(p_ip + 1e-6)`` with p_ip = exp s_ip / Σ_{a≠i} exp s_ia (a softmax, the
1e-6 added to the probability), so :class:`~singer_ssl.losses.semisupcon.SemiSupConLoss` passes
``eps=1e-6``: the same value for p ≫ 1e-6, but each pair's loss is capped at -log(1e-6) = 13.8 and
its gradient vanishes as p → 0. Here p = exp(log-softmax), so no logit is exponentiated unshifted.

Shapes: z1, z2 (B, D), labels (B,) long or None -> scalar. Inputs are L2-normalised here.
Distributed: the 2N views and labels are gathered; item identity (the other-view positive) uses
global indices.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from singer_ssl.losses.base import Objective, as_labels, full_precision, positive, require_batch
from singer_ssl.losses.distributed import gather


def supcon(
    z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor | None, temperature: float, eps: float = 0.0
) -> torch.Tensor:
    """L_out on one (already gathered) batch; z1, z2 (N, D), labels (N,) or None -> scalar.
    ``eps > 0``: -log(p + eps) per pair instead of -log p (SemiSupCon's SSNTXent: 1e-6)."""
    n = z1.shape[0]
    u = F.normalize(torch.cat([z1, z2], dim=0), dim=1)
    sim = u @ u.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=u.device)
    log_prob = sim - torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
    if eps > 0:
        log_prob = torch.log(log_prob.exp() + eps)
    item = torch.arange(n, device=u.device).repeat(2)
    pos = item[:, None] == item[None, :]
    if labels is not None:
        y = labels.repeat(2)
        pos = pos | ((y[:, None] == y[None, :]) & (y[:, None] >= 0))
    pos = pos & ~self_mask
    per_anchor = -(log_prob.masked_fill(~pos, 0.0)).sum(dim=1) / pos.sum(dim=1)
    return per_anchor.mean()


class SupConLoss(Objective):
    """Khosla's L_out with the other view and same-singer items as positives (SemiSupCon form).

    Args:
        temperature: τ (SemiSupCon configs and PML: 0.1; SupContrast: 0.07).
    """

    needs_labels = True
    #: added to each positive's softmax probability inside the log (0: exact log-softmax)
    eps = 0.0

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        self.temperature = positive(temperature, "temperature", type(self).__name__)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    @full_precision
    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels=None) -> torch.Tensor:
        who = type(self).__name__
        labels = as_labels(labels, z1.shape[0], z1.device, who)
        z1, z2, labels = gather(z1), gather(z2), gather(labels)
        require_batch(z1.shape[0], who)
        return supcon(z1, z2, labels, self.temperature, self.eps)
