"""VGG-like encoder of Fonseca et al. 2021 (uclser20 ``models/audio_models.py`` ``VGGlike_small_emb_relu``).

Fonseca et al. 2021 works on ``batch x 1 x time x freq`` patches (101 frames x 96 bands). This encoder takes
the project's log-mel layout (B, 1, F, T) and transposes internally, so the published
``VGG_best.pth`` loads with ``strict=True`` and gives the published numbers.

    conv0 32, conv1 32, conv2 32 + MaxPool 2x2, conv3 64, conv4 64 + MaxPool, conv5 128 + MaxPool
    (each Conv 3x3 pad 1 no bias -> BN -> ReLU [-> MaxPool])
    global max-pool || global avg-pool over time x freq (``gapgmp``: 256) or avg only (``gap``: 128)
    dense1 -> ReLU = embedding (512)           [dense_out -> logits, ``num_classes`` > 0 only]

Needs T >= 8 and F >= 8. Fonseca et al. 2021 standardised inputs with a train-set scalar mean/std.
"""

from __future__ import annotations

import torch
from torch import nn

from singer_ssl.encoders.common import LOGMEL, check_logmel, to_time_freq

POOLINGS = ("gapgmp", "gap")


class ConvBnRelu2d(nn.Module):
    """uclser20 ``Conv_bn_relu[_mp]_2d``: Conv (k x k, pad k//2, no bias) -> BN -> ReLU [-> MaxPool]."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, pooling: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=1, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU()
        self.mpool = nn.MaxPool2d(pooling) if pooling is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mpool(self.relu(self.bn(self.conv(x))))


class VGGLike(nn.Module):
    """Fonseca et al. 2021 VGG-like encoder: log-mel (B, 1, F, T) -> ReLU(dense1) (B, embedding_dim).

    Args:
        embedding_dim: size of dense1 (Fonseca et al. 2021 ``embed_size``: 512).
        num_classes: size of ``dense_out`` (published: 20); 0 (default) builds none, so SSL training has
            no unused parameters (``load_published`` sets 20 from the checkpoint).
        pooling: ``gapgmp`` (published: max || mean, 256) or ``gap`` (mean only, 128).
    """

    input_kind = LOGMEL
    min_length = 8

    def __init__(self, embedding_dim: int = 512, num_classes: int = 0, pooling: str = "gapgmp") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"vgglike: unknown pooling {pooling!r}; valid choices: {', '.join(sorted(POOLINGS))}")
        if int(embedding_dim) < 1 or int(num_classes) < 0:
            raise ValueError("vgglike: embedding_dim must be >= 1 and num_classes >= 0")
        self.embedding_dim = int(embedding_dim)
        self.num_classes = int(num_classes)
        self.use_max = pooling == "gapgmp"
        self.conv0 = ConvBnRelu2d(1, 32)
        self.conv1 = ConvBnRelu2d(32, 32)
        self.conv2 = ConvBnRelu2d(32, 32, pooling=(2, 2))
        self.conv3 = ConvBnRelu2d(32, 64)
        self.conv4 = ConvBnRelu2d(64, 64, pooling=(2, 2))
        self.conv5 = ConvBnRelu2d(64, 128, pooling=(2, 2))
        self.dense1 = nn.Linear(256 if self.use_max else 128, self.embedding_dim)
        self.relu = nn.ReLU()
        if self.num_classes > 0:
            self.dense_out = nn.Linear(self.embedding_dim, self.num_classes)
        else:
            self.dense_out = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) log-mel -> (B, embedding_dim) = ReLU(dense1(pool(conv stack)))."""
        check_logmel(x, "vgglike", 0, 8, 8)
        x = to_time_freq(x)
        x = self.conv5(self.conv4(self.conv3(self.conv2(self.conv1(self.conv0(x))))))
        gap = x.mean(dim=(2, 3))
        summary = torch.cat([x.amax(dim=(2, 3)), gap], dim=1) if self.use_max else gap
        return self.relu(self.dense1(summary))

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) -> class logits (B, num_classes) of the published classifier ``dense_out``."""
        if self.num_classes == 0:
            raise RuntimeError("vgglike: built with num_classes=0, there is no dense_out classifier")
        return self.dense_out(self.forward(x))
