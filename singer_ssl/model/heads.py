"""Projection heads: embedding (B, in_dim) -> L2-normalised projection (B, dim).

- ``silu_linear`` (Torres et al. 2023 ``Projection`` with ``l2_normalize: true``): SiLU -> Linear(in_dim, dim) -> L2.
- ``mlp`` (Fonseca et al. 2021 ``MLPHead``): Linear(in_dim, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, dim) -> L2.

L2 normalisation is ``torch.nn.functional.normalize`` (x / max(||x||_2, 1e-12)), as both seeds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from singer_ssl.core.errors import ConfigError, choice_error

KINDS = ("silu_linear", "mlp")


class ProjectionHead(nn.Module):
    """``net`` followed by L2 normalisation over the last dimension."""

    def __init__(self, net: nn.Sequential, output_dim: int) -> None:
        super().__init__()
        self.net = net
        self.output_dim = output_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, dim), unit L2 norm per row."""
        return F.normalize(self.net(x), p=2.0, dim=-1)


def make_head(kind: str, in_dim: int, dim: int = 128, hidden: int = 512) -> ProjectionHead:
    """Build a projection head; ``hidden`` is used by ``mlp`` only. Unknown kind -> ConfigError."""
    if kind not in KINDS:
        raise choice_error("head kind", kind, KINDS)
    for key, value in (("in_dim", in_dim), ("dim", dim), ("hidden", hidden)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"head: {key} must be a positive integer, got {value!r}")
    if kind == "silu_linear":
        net = nn.Sequential(nn.SiLU(), nn.Linear(in_dim, dim))
    else:
        net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                            nn.Linear(hidden, dim))
    return ProjectionHead(net, dim)
