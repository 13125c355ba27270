"""AudioNTT2020: the BYOL-A v1 encoder (BYOL-A, nttcslab/byol-a ``byol_a/models.py``).

Log-mel (B, 1, F, T) in BYOL-A's own order (batch, ch, mel, time) — no transpose:

    3 x [Conv2d 3x3 (64, pad 1) -> BN -> ReLU -> MaxPool 2x2]    -> (B, 64, F//8, T//8)
    permute + reshape                                              -> (B, T//8, 64 * (F//8))
    Linear(64*(F//8), d) -> ReLU -> Dropout(0.3) -> Linear(d, d) -> ReLU   (frame-wise)
    temporal max + temporal mean                                   -> (B, d)

Parameter names are the published ones (``features.{0,1,4,5,8,9}.*``, ``fc.{0,3}.*``), so
``AudioNTT2020-BYOLA-64x96d{512,1024,2048}.pth`` load with ``strict=True`` (``n_mels=64``).
The reshape orders the fc input channel-fastest (index = f * 64 + c), as the original.

BYOL-A standardises its input with dataset-level mean/std before the encoder (no normalisation
inside); the features' ``mean``/``std`` attrs serve that purpose. Needs F >= 8 and T >= 8.
"""

from __future__ import annotations

import torch
from torch import nn

from singer_ssl.encoders.common import LOGMEL, check_logmel

PUBLISHED_DIMS = (512, 1024, 2048)


class AudioNTT2020(nn.Module):
    """BYOL-A v1 encoder.

    Args:
        n_mels: mel bands F of the input (published weights: 64; fc input = 64 * (n_mels // 8)).
        embedding_dim: ``d``; the published weights exist for 512, 1024, 2048 (any d >= 1 builds).
        dropout: dropout between the two frame-wise linear layers (0.3 in BYOL-A).
    """

    input_kind = LOGMEL
    min_length = 8

    def __init__(self, n_mels: int = 64, embedding_dim: int = 512, dropout: float = 0.3) -> None:
        super().__init__()
        if int(n_mels) < 8:
            raise ValueError(f"audiontt2020: n_mels must be >= 8 (three 2x2 max-pools), got {n_mels!r}")
        if int(embedding_dim) < 1:
            raise ValueError(f"audiontt2020: embedding_dim must be >= 1, got {embedding_dim!r}")
        self.n_mels = int(n_mels)
        self.embedding_dim = int(embedding_dim)
        layers: list[nn.Module] = []
        for in_ch in (1, 64, 64):
            layers += [nn.Conv2d(in_ch, 64, 3, stride=1, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                       nn.MaxPool2d(2, stride=2)]
        self.features = nn.Sequential(*layers)
        d = self.embedding_dim
        self.fc = nn.Sequential(
            nn.Linear(64 * (self.n_mels // 8), d), nn.ReLU(), nn.Dropout(p=dropout), nn.Linear(d, d), nn.ReLU()
        )

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) -> frame-wise features (B, T // 8, d) before temporal pooling."""
        check_logmel(x, "audiontt2020", self.n_mels, 8)
        x = self.features(x)  # (B, 64, F//8, T//8)
        x = x.permute(0, 3, 2, 1)  # (B, T//8, F//8, 64)
        x = x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        return self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) log-mel -> (B, d) = max_t + mean_t of the frame features."""
        x = self.frame_features(x)
        return x.amax(dim=1) + x.mean(dim=1)
