"""Decoupled contrastive loss (DCL): the positive is removed from the denominator.

Reference: Yeh et al., "Decoupled Contrastive Learning", ECCV 2022 (Eq. 6), in the form used by
Torres et al. 2023 (SonyCSLParis/ssl-singer-identity ``contrastive_loss(..., decouple=True)``, the configuration
of its published "contrastive" and "contrastive-vc" models). With s(a, b) = cos(a, b) / τ:

    L = mean_i [ -s(z1_i, z2_i) + log Σ_{k=1..K} exp s(z1_i, z2_{(i-k) mod N}) ],  K = min(N-1, n_negatives)

Convention chosen: **Torres et al.'s one-way, rolled, cross-view negatives** (anchors z1; negatives are the
other items' z2), so that ``dcl`` is exactly the contrastive term of ``contrastive-vc``. This differs
from lightly's ``DCLLoss``, which symmetrises over both views and also uses same-view negatives
(2N-2 negatives per anchor, default τ=0.1). ``contrastive`` is the same loss with the positive kept
in the log-sum-exp.

Cosines are computed here. Shapes: z1, z2 (B, D) -> scalar; needs a (global) batch of >= 2 items.
"""

from __future__ import annotations

from singer_ssl.losses.contrastive import ContrastiveLoss


class DCLLoss(ContrastiveLoss):
    """Torres et al.'s decoupled contrastive loss (rolled one-way negatives, positive not in the denominator).

    Args:
        temperature: τ (Torres et al. 2023: 0.2; lightly's default 0.1).
        n_negatives: maximum number of rolled negatives per anchor (Torres et al. 2023: 250).
    """

    decouple = True
