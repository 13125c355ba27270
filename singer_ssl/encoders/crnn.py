"""CRNN encoder of Fonseca et al. 2021 (uclser20 ``models/audio_models.py`` ``CRNN_tagger``).

Fonseca et al. 2021 order is ``batch x 1 x time x freq``; this encoder takes (B, 1, F, T) and transposes
internally so the published ``CRNN_best.pth`` loads with ``strict=True``.

    conv1 128 5x5 + MaxPool (2, 5), conv2 128 5x5 + MaxPool (2, 4), conv3 128 5x5 + MaxPool (2, 2)
    (pools are (time, freq); each Conv pad 2 no bias -> BN -> ReLU -> MaxPool)
    -> (B, T', F', 128) -> (B, T', 128 * F')    with T' = T//8, F' = ((F//5)//4)//2
    BiGRU(128 * F', hidden 64)                  (published F = 96: F' = 2, GRU input 256)
    embedding = forward-direction output at the last step * backward-direction output at the
    last step (Keras ``merge_mode='mul'`` emulation of the seed; note the backward direction has
    then seen only the last frame)      -> (B, 64)          [dense -> logits, ``num_classes`` > 0]

Needs T >= 8 and F >= 40. Fonseca et al. 2021 standardised inputs with a train-set scalar mean/std.
"""

from __future__ import annotations

import torch
from torch import nn

from singer_ssl.encoders.common import LOGMEL, check_logmel, to_time_freq
from singer_ssl.encoders.vgglike import ConvBnRelu2d


def pooled_mels(n_mels: int) -> int:
    """Frequency cells left after the three pools (5, 4, 2): ((F // 5) // 4) // 2."""
    return ((n_mels // 5) // 4) // 2


class CRNN(nn.Module):
    """Fonseca et al. 2021 CRNN: log-mel (B, 1, F, T) -> (B, hidden) product of the BiGRU's last-step outputs.

    Args:
        n_mels: mel bands F (published: 96); the GRU input is 128 * pooled_mels(n_mels).
        hidden: GRU hidden size = embedding size (published: 64).
        num_classes: size of ``dense`` (published: 20); 0 (default) builds none (``load_published``
            sets 20 from the checkpoint).
    """

    input_kind = LOGMEL
    min_length = 8

    def __init__(self, n_mels: int = 96, hidden: int = 64, num_classes: int = 0) -> None:
        super().__init__()
        if pooled_mels(int(n_mels)) < 1:
            raise ValueError(f"crnn: n_mels must be >= 40 (freq pools 5, 4, 2), got {n_mels!r}")
        if int(hidden) < 1 or int(num_classes) < 0:
            raise ValueError("crnn: hidden must be >= 1 and num_classes >= 0")
        self.n_mels = int(n_mels)
        self.hidden = int(hidden)
        self.embedding_dim = self.hidden
        self.num_classes = int(num_classes)
        self.conv1 = ConvBnRelu2d(1, 128, kernel=5, pooling=(2, 5))
        self.conv2 = ConvBnRelu2d(128, 128, kernel=5, pooling=(2, 4))
        self.conv3 = ConvBnRelu2d(128, 128, kernel=5, pooling=(2, 2))
        self.rnn1 = nn.GRU(input_size=128 * pooled_mels(self.n_mels), hidden_size=self.hidden, num_layers=1,
                           batch_first=True, bidirectional=True)
        if self.num_classes > 0:
            self.dense = nn.Linear(self.hidden, self.num_classes)
        else:
            self.dense = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) log-mel -> (B, hidden)."""
        check_logmel(x, "crnn", self.n_mels, 8)
        x = self.conv3(self.conv2(self.conv1(to_time_freq(x))))  # (B, 128, T', F')
        x = x.permute(0, 2, 3, 1)  # (B, T', F', 128)
        x = x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        x, _ = self.rnn1(x)  # (B, T', 2 * hidden)
        x = x.view(x.shape[0], x.shape[1], 2, self.hidden)
        return x[:, -1, 0, :] * x[:, -1, 1, :]

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) -> class logits (B, num_classes) of the published classifier ``dense``."""
        if self.num_classes == 0:
            raise RuntimeError("crnn: built with num_classes=0, there is no dense classifier")
        return self.dense(self.forward(x))
