"""LSTM speaker encoder (the GE2E singer encoder, Trebolium/singer-identity-encoder ``model.py``,
after CorentinJ's GE2E).

    log-mel (B, 1, F, T) -> frames (B, T, F) -> LSTM(F, hidden, layers, batch_first)
    -> final hidden state of the last layer (B, hidden) -> Linear(hidden, D) -> ReLU
    -> x / (||x||_2 + 1e-5)                                  (B, D)   (seed: hidden 768, D 256)

Parameter names follow the seed (``lstm.*``, ``linear.*``); the GE2E scale/bias the seed keeps in
the model (``similarity_weight``/``similarity_bias``) belong to :mod:`singer_ssl.losses` here.
The GE2E singer encoder fed 80-band dB-normalised mels in [0, 1]; any F works (``n_mels``), any T >= 1.
"""

from __future__ import annotations

import torch
from torch import nn

from singer_ssl.encoders.common import LOGMEL, check_logmel


class LSTMEncoder(nn.Module):
    """The GE2E singer encoder encoder.

    Args:
        n_mels: input features per frame (F).
        hidden: LSTM hidden size (seed: 768).
        layers: stacked LSTM layers (seed: 3).
        embedding_dim: output size D (seed: 256).
    """

    input_kind = LOGMEL
    min_length = 1

    def __init__(self, n_mels: int = 80, hidden: int = 768, layers: int = 3, embedding_dim: int = 256) -> None:
        super().__init__()
        if min(int(n_mels), int(hidden), int(layers), int(embedding_dim)) < 1:
            raise ValueError("lstm: n_mels, hidden, layers and embedding_dim must all be >= 1")
        self.n_mels = int(n_mels)
        self.embedding_dim = int(embedding_dim)
        self.lstm = nn.LSTM(input_size=self.n_mels, hidden_size=int(hidden), num_layers=int(layers), batch_first=True)
        self.linear = nn.Linear(int(hidden), self.embedding_dim)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) log-mel -> (B, D) L2-normalised (eps 1e-5 added to the norm, as the seed)."""
        check_logmel(x, "lstm", self.n_mels, 1)
        frames = x.squeeze(1).transpose(1, 2)  # (B, T, F)
        _, (hidden, _) = self.lstm(frames)
        embeds = self.relu(self.linear(hidden[-1]))
        return embeds / (torch.linalg.vector_norm(embeds, dim=1, keepdim=True) + 1e-5)
