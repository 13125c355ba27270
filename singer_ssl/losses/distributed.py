"""All-gather across processes so that every objective sees the *global* batch.

Contract (what the trainer relies on)
-------------------------------------
Every whole-batch objective (contrastive negatives, NT-Xent/DCL/SupCon denominators, VICReg
variance/covariance, uniformity pairs, GE2E centroids, COLA negatives, BYOL's batch mean) calls
:func:`gather` on its inputs and then evaluates the formula on the concatenation
``[rank 0 rows, rank 1 rows, ...]``. Consequently, with ``W`` processes each holding ``b`` items:

1. **Value**: every rank returns the same number, equal to the 1-process loss on the concatenated
   ``W*b`` items (index-based positives, rolled negatives and labels all use *global* indices
   because they are computed after the gather).
2. **Gradient w.r.t. the local projections**: :func:`gather`'s backward returns the rows of the
   incoming gradient that belong to this rank and does no communication. Rank ``r`` therefore gets
   exactly ``dL/dz_r``, the slice of the 1-process gradient (rows of other ranks are constants here;
   their own rank differentiates them).
3. **Parameter gradients**: encoder/head parameters on rank ``r`` receive ``dL/dz_r * dz_r/dθ``,
   i.e. this rank's share; the shares sum to ``dL/dθ``. DDP *averages* gradients over ranks, so
   **the trainer multiplies the loss by the world size** (``loss * world_size()`` before
   ``backward``) to turn DDP's mean back into that sum. Parameters owned by an objective that are
   applied to local rows before the gather (BYOL's predictor, COLA's bilinear W) follow the same
   rule. Parameters applied to the *gathered* batch (GE2E's w and b) would receive the full
   gradient on every rank; those objectives wrap them in :func:`local_share`, which leaves the value
   unchanged and scales their gradient by ``1/world_size`` so that ×world + DDP mean is exact too.

Without ``torch.distributed`` initialised, :func:`gather` is the identity and :func:`world_size`
is 1, so single-process training needs no special case. Batch-norm layers inside an objective
(BYOL's predictor) still normalise with local statistics; wrap the objective with
``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` if that matters.

Reference: lightly ``lightly/utils/dist.py`` (``GatherLayer``, ``gather``); lightly's backward
all-reduces the gradient and each rank computes a *local* loss, which needs no ×world factor but
makes the per-rank loss value depend on the split. We keep the value split-independent instead.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank in the default group (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


class _Gather(torch.autograd.Function):
    """All-gather along dim 0 (sizes may differ per rank); backward keeps the local slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        n_world = dist.get_world_size()
        local_n = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
        sizes = [torch.zeros_like(local_n) for _ in range(n_world)]
        dist.all_gather(sizes, local_n)
        sizes_list = [int(s.item()) for s in sizes]
        max_n = max(sizes_list)
        padded = x.contiguous()
        if x.shape[0] < max_n:
            pad = x.new_zeros((max_n - x.shape[0], *x.shape[1:]))
            padded = torch.cat([padded, pad], dim=0)
        parts = [torch.empty_like(padded) for _ in range(n_world)]
        dist.all_gather(parts, padded)
        me = dist.get_rank()
        ctx.start = sum(sizes_list[:me])
        ctx.stop = ctx.start + sizes_list[me]
        return torch.cat([p[:n] for p, n in zip(parts, sizes_list)], dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad[ctx.start : ctx.stop]


def gather(x: torch.Tensor | None) -> torch.Tensor | None:
    """Concatenate ``x`` (n_r, ...) from all ranks in rank order -> (Σ n_r, ...).

    Gradients flow back to this rank's rows only (see the module docstring). Identity when not
    distributed; ``None`` passes through (e.g. absent labels). Works for integer tensors (labels).
    """
    if x is None or not is_distributed() or world_size() == 1:
        return x
    return _Gather.apply(x)


class _ScaleGrad(torch.autograd.Function):
    """Identity in the forward pass; multiplies the gradient by ``factor`` in the backward pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, factor: float) -> torch.Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return grad * ctx.factor, None


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Return ``x`` unchanged but with its gradient multiplied by ``factor`` (exact value)."""
    if factor == 1.0:
        return x
    return _ScaleGrad.apply(x, float(factor))


def local_share(p: torch.Tensor) -> torch.Tensor:
    """Scale the gradient of a parameter used on the gathered batch by ``1/world_size``.

    Every rank computes the full global loss, so such a parameter gets the full gradient on every
    rank; after the trainer's ×world and DDP's mean it must come out once, not ``world`` times.
    """
    return scale_grad(p, 1.0 / world_size())
