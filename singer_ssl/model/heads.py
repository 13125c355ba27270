"""Projection heads: embedding (B, in_dim) -> projection (B, dim), L2-normalised unless ``l2=False``.

- ``silu_linear`` (Torres et al. 2023 ``Projection`` with ``l2_normalize: true``): SiLU -> Linear(in_dim, dim) -> L2.
- ``mlp`` (Fonseca et al. 2021 ``MLPHead``; BYOL-A's projector): Linear(in_dim, hidden) -> BatchNorm1d -> ReLU
  -> Linear(hidden, dim) -> L2.
- ``mlp_nobias`` (SemiSupCon's projection head, ``models/semisupcon.py``): Linear(in_dim, hidden, bias=False)
  -> ReLU -> Linear(hidden, dim, bias=False) -> L2, no batch norm. SemiSupCon's SSNTXent takes cosine
  similarities, so the L2 here does not change its loss.
- ``none``: no projection; the objective trains the embedding itself (the GE2E singer encoder and
  Real-Time-Voice-Cloning train the encoder's 256-d output): identity -> L2, output size ``in_dim``
  (``dim`` and ``hidden`` are not used).

L2 normalisation is ``torch.nn.functional.normalize`` (x / max(||x||_2, 1e-12)), as the papers' code.
``l2=False`` leaves the projection raw (BYOL-A: the predictor takes the raw projector output, and its
loss normalises afterwards; see :mod:`singer_ssl.losses.byol`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from singer_ssl.core.errors import ConfigError, choice_error

KINDS = ("silu_linear", "mlp", "mlp_nobias", "none")


class ProjectionHead(nn.Module):
    """``net`` followed by L2 normalisation over the last dimension (skipped when ``l2`` is False)."""

    def __init__(self, net: nn.Sequential, output_dim: int, l2: bool = True) -> None:
        super().__init__()
        self.net = net
        self.output_dim = output_dim
        self.l2 = bool(l2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, dim), unit L2 norm per row when ``l2``."""
        y = self.net(x)
        return F.normalize(y, p=2.0, dim=-1) if self.l2 else y


def make_head(kind: str, in_dim: int, dim: int = 128, hidden: int = 512, l2: bool = True) -> ProjectionHead:
    """Build a projection head; ``hidden`` is used by ``mlp``/``mlp_nobias`` only, ``dim`` by all but ``none``.
    Unknown kind -> ConfigError."""
    if kind not in KINDS:
        raise choice_error("head kind", kind, KINDS)
    for key, value in (("in_dim", in_dim), ("dim", dim), ("hidden", hidden)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"head: {key} must be a positive integer, got {value!r}")
    if not isinstance(l2, bool):
        raise ConfigError(f"head: l2 must be true or false, got {l2!r}")
    if kind == "silu_linear":
        net = nn.Sequential(nn.SiLU(), nn.Linear(in_dim, dim))
    elif kind == "mlp":
        net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                            nn.Linear(hidden, dim))
    elif kind == "mlp_nobias":
        net = nn.Sequential(nn.Linear(in_dim, hidden, bias=False), nn.ReLU(inplace=True),
                            nn.Linear(hidden, dim, bias=False))
    else:
        net, dim = nn.Sequential(nn.Identity()), in_dim
    return ProjectionHead(net, dim, l2)
