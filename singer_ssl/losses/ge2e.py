"""Generalised end-to-end (GE2E) softmax loss over a batch of S singers × M utterances (the GE2E singer encoder).

References: Wan et al., ICASSP 2018; CorentinJ/Real-Time-Voice-Cloning ``encoder/model.py``
(``similarity_matrix``, ``loss``, ``do_gradient_ops``), used unchanged by the GE2E singer encoder
Trebolium/singer-identity-encoder ``model.py``. With ê the L2-normalised embeddings, c_k the centroid
of singer k and c_k^(-ji) the exclusive centroid of singer k = j without ê_ji:

    S_ji,k = w · cos(ê_ji, c_k^(-ji) if k = j else c_k) + b
    L = mean_{j,i} [ -S_ji,j + log Σ_k exp S_ji,k ]          (cross-entropy over singers)

Conventions chosen:

- **Embeddings**: both views are utterances: e = cat(z1, z2), labels repeated, so a batch of S singers
  × U sampled items gives M = 2U embeddings per singer (the two crops of an item are two utterances
  of its singer). Items may come in any order; they are grouped by label.
- **Batch check**: every label must appear the same number of times U >= 2 among the B items, and
  there must be >= 2 singers; otherwise ValueError naming the counts (the sampler's ``batch``
  options: ``singers`` S, ``utterances`` U, B = S·U).
- **w > 0**: w is clamped to >= 1e-6 in the forward pass (the constraint of Wan et al.). clovaai's
  ``torch.clamp(self.w, 1e-6)`` discards its result, so it never enforces it; RTVC has no clamp.
- **Gradient scale**: RTVC multiplies the gradients of w and b by 0.01 (``do_gradient_ops``); we do
  the same inside the graph (``wb_grad_scale``), so the trainer only clips the total norm (RTVC: 3).
- Centroids are normalised exactly (RTVC adds 1e-5 to the norms; negligible).

Shapes: z1, z2 (B, D), labels (B,) int -> scalar. Trainable state: ``w`` and ``b`` (optimise them
with the model). Distributed: embeddings and labels are gathered (centroids are global); w and b are
applied to the gathered batch, so their gradients go through :func:`distributed.local_share`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from singer_ssl.losses.base import Objective, as_labels, full_precision, non_negative, positive_int
from singer_ssl.losses.distributed import gather, local_share, scale_grad

W_MIN = 1e-6


def group_by_label(labels: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Return ``(class_index (N,), n_classes, count)``; ValueError unless all counts are equal and >= 2."""
    uniq, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    counts_list = counts.tolist()
    if len(set(counts_list)) != 1 or counts_list[0] < 2 or len(uniq) < 2:
        shown = dict(zip(uniq.tolist()[:10], counts_list[:10]))
        raise ValueError(
            "ge2e: the batch must hold >= 2 singers with the same number (>= 2) of items each "
            f"(sample S singers x U utterances); got {len(uniq)} singers with counts {shown}"
            + (" ..." if len(uniq) > 10 else "")
        )
    return inverse, len(uniq), counts_list[0]


def ge2e_similarity(e: torch.Tensor, labels: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """S (N, K): S[n, k] = w·cos(e_n, centroid_k) + b, own centroid exclusive of e_n.

    e (N, D) embeddings (normalised here), labels (N,) with K distinct values, each M >= 2 times;
    column k is the k-th smallest label.
    """
    cls, n_classes, m = group_by_label(labels)
    e = F.normalize(e, dim=1)
    sums = torch.zeros(n_classes, e.shape[1], dtype=e.dtype, device=e.device).index_add(0, cls, e)
    centroids = F.normalize(sums / m, dim=1)  # (K, D), inclusive
    excl = F.normalize((sums[cls] - e) / (m - 1), dim=1)  # (N, D), own centroid without e_n
    cos = e @ centroids.T
    own = (e * excl).sum(dim=1)
    cos = cos.scatter(1, cls[:, None], own[:, None])
    return w * cos + b


class GE2ELoss(Objective):
    """GE2E softmax loss with learnable scale w and bias b (see the module docstring).

    Args:
        w_init: initial w (10.0, Wan et al. / RTVC / the GE2E singer encoder).
        b_init: initial b (-5.0).
        wb_grad_scale: factor on the gradients of w and b (RTVC and the GE2E singer encoder: 0.01; 1 = none).
    """

    needs_labels = True
    sampler = "singers"
    batch_defaults = {"singers": 8, "utterances": 4}

    def __init__(self, w_init: float = 10.0, b_init: float = -5.0, wb_grad_scale: float = 0.01):
        super().__init__()
        who = type(self).__name__
        try:
            w_init, b_init = float(w_init), float(b_init)
        except (TypeError, ValueError):
            raise ValueError(
                f"{who}: w_init and b_init must be numbers, got {w_init!r}, {b_init!r}"
            ) from None
        if not w_init > 0:
            raise ValueError(f"{who}: w_init must be > 0 (w scales cosine similarities), got {w_init!r}")
        self.wb_grad_scale = non_negative(wb_grad_scale, "wb_grad_scale", who)
        self.w = nn.Parameter(torch.tensor(w_init))
        self.b = nn.Parameter(torch.tensor(b_init))

    def extra_repr(self) -> str:
        return f"w={self.w.item():.4g}, b={self.b.item():.4g}, wb_grad_scale={self.wb_grad_scale}"

    @staticmethod
    def validate_batch(batch: dict[str, Any]) -> None:
        positive_int(batch["singers"], "batch.singers", "ge2e")
        positive_int(batch["utterances"], "batch.utterances", "ge2e")
        if batch["singers"] < 2 or batch["utterances"] < 2:
            raise ValueError(
                f"ge2e: batch.singers and batch.utterances must be >= 2, got {batch['singers']}, "
                f"{batch['utterances']}"
            )

    @full_precision
    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels=None) -> torch.Tensor:
        who = type(self).__name__
        if labels is None:
            raise ValueError(f"{who}: needs labels (integer singer ids, shape (B,))")
        labels = as_labels(labels, z1.shape[0], z1.device, who)
        z1, z2, labels = gather(z1), gather(z2), gather(labels)
        group_by_label(labels)  # validate the item counts before doubling
        w = local_share(scale_grad(self.w, self.wb_grad_scale)).clamp_min(W_MIN)
        b = local_share(scale_grad(self.b, self.wb_grad_scale))
        e = torch.cat([z1, z2], dim=0)
        y = torch.cat([labels, labels], dim=0)
        sim = ge2e_similarity(e, y, w, b)
        target = torch.unique(y, return_inverse=True)[1]
        return F.cross_entropy(sim, target)
