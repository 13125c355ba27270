"""EfficientNet-B0 on log-mel spectrograms (Torres et al. 2023, Torres et al. 2023).

Architecture and parameter names follow torchvision's ``efficientnet_b0`` (torchvision >= 0.13:
``features.*``, ``avgpool``, ``classifier.1.*``), re-implemented here because torchvision is not a
dependency: a torchvision-format state dict (e.g. Torres et al.'s ``encoder.net.2.*`` after prefix
stripping, see :func:`singer_ssl.encoders.load_published`) loads with ``strict=True``.

- stem: Conv 3x3 stride 2 (in_channels -> 32) + BN + SiLU
- 16 MBConv blocks in 7 stages (expand 1x1 -> depthwise kxk -> squeeze-excitation -> project 1x1),
  residual + stochastic depth ("row" mode, probability 0.2 * block_index / 16, as torchvision)
- head: Conv 1x1 320 -> 1280 + BN + SiLU, global average pool over freq x time,
  Dropout(0.2) -> Linear(1280, embedding_dim)  (Torres et al. 2023: embedding = this 1000-d output)

Input normalisation (inside the encoder). Torres et al. 2023 divided the whole log-mel *batch* by its
single maximum, so an item's embedding depended on the other items of the batch. Here each item is
normalised on its own (``input_norm``):

- ``"item_std"`` (default): per-item standardisation ``(x - mean) / sqrt(var + 1e-5)`` over F x T;
  robust for quiet items and invariant to a gain change (an additive offset of the log-mel).
- ``"item_max"``: Torres et al.'s scaling applied per item, ``x / max(|max(x)|, 1e-8)``. The absolute value
  keeps quiet items (whose log-mel maximum is negative) from being sign-flipped.
  On the raw log-mel (``train.input_scaling: none``, the ``torres2023`` preset) this is Torres et al.'s
  ``Grey2Rgb`` on a batch of one; after the default dataset standardisation it would be (x - mu) / (max x - mu).
- ``"none"``: no per-item normalisation (e.g. when the caller standardises with dataset statistics).

Then, with ``in_channels=3`` (default, Torres et al. 2023), the single channel is replicated to 3 channels and
ImageNet-normalised (mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]) as torchvision backbones
expect; ``in_channels=1`` feeds the normalised channel to a 1-channel stem directly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from singer_ssl.encoders.common import LOGMEL, check_logmel

INPUT_NORMS = ("item_std", "item_max", "none")

# (expand_ratio, kernel, stride, in_channels, out_channels, num_layers): torchvision's B0 table
B0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def conv_norm_act(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
) -> nn.Sequential:
    """torchvision ``Conv2dNormActivation``: Conv (no bias, 'same' padding) -> BN -> SiLU (optional)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision ``SqueezeExcitation``: x * sigmoid(fc2(SiLU(fc1(avgpool(x))))), fc = 1x1 conv."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.SiLU(inplace=True)
        self.scale_activation = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class StochasticDepth(nn.Module):
    """torchvision ``StochasticDepth(p, "row")``: in training, zero whole items with probability p
    and rescale survivors by 1/(1-p); identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = torch.empty([x.shape[0], 1, 1, 1], dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise = noise / survival
        return x * noise


class MBConv(nn.Module):
    """torchvision ``MBConv`` (``block.{0..3}`` = expand, depthwise, SE, project; no expand when ratio 1)."""

    def __init__(self, expand: int, kernel: int, stride: int, in_ch: int, out_ch: int, sd_prob: float) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and in_ch == out_ch
        hidden = in_ch * expand
        layers: list[nn.Module] = []
        if hidden != in_ch:
            layers.append(conv_norm_act(in_ch, hidden, 1))
        layers.append(conv_norm_act(hidden, hidden, kernel, stride, groups=hidden))
        layers.append(SqueezeExcitation(hidden, max(1, in_ch // 4)))
        layers.append(conv_norm_act(hidden, out_ch, 1, act=False))
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out


class EfficientNetB0(nn.Module):
    """EfficientNet-B0 encoder: log-mel (B, 1, F, T) -> embedding (B, embedding_dim).

    Any F, T >= 1 work (stride-32 stack with 'same' padding; global average pool).

    Args:
        embedding_dim: output size of ``classifier.1`` (Torres et al. 2023: 1000, torchvision's ``num_classes``).
        in_channels: 3 = replicate + ImageNet normalisation (Torres et al. 2023); 1 = single-channel stem.
        input_norm: per-item normalisation, one of ``item_std`` (default), ``item_max``, ``none``.
        dropout: classifier dropout (torchvision B0: 0.2).
        stochastic_depth: maximum stochastic-depth probability (torchvision: 0.2).
    """

    input_kind = LOGMEL
    min_length = 1

    def __init__(
        self,
        embedding_dim: int = 1000,
        in_channels: int = 3,
        input_norm: str = "item_std",
        dropout: float = 0.2,
        stochastic_depth: float = 0.2,
    ) -> None:
        super().__init__()
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"efficientnet_b0: unknown input_norm {input_norm!r}; "
                             f"valid choices: {', '.join(sorted(INPUT_NORMS))}")
        if in_channels not in (1, 3):
            raise ValueError(f"efficientnet_b0: in_channels must be 1 or 3, got {in_channels!r}")
        if int(embedding_dim) < 1:
            raise ValueError(f"efficientnet_b0: embedding_dim must be >= 1, got {embedding_dim!r}")
        if not (0.0 <= dropout < 1.0 and 0.0 <= stochastic_depth < 1.0):
            raise ValueError("efficientnet_b0: dropout and stochastic_depth must lie in [0, 1)")
        self.embedding_dim = int(embedding_dim)
        self.in_channels = int(in_channels)
        self.input_norm = input_norm
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        layers: list[nn.Module] = [conv_norm_act(in_channels, B0_STAGES[0][3], 3, stride=2)]
        total = sum(stage[5] for stage in B0_STAGES)
        block_id = 0
        for expand, kernel, stride, in_ch, out_ch, n in B0_STAGES:
            stage: list[nn.Module] = []
            for i in range(n):
                sd_prob = stochastic_depth * block_id / total
                stage.append(MBConv(expand, kernel, stride if i == 0 else 1, in_ch if i == 0 else out_ch,
                                    out_ch, sd_prob))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = B0_STAGES[-1][4]
        layers.append(conv_norm_act(last_in, 4 * last_in, 1))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True),
                                        nn.Linear(4 * last_in, self.embedding_dim))
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's initialisation (kaiming-normal fan-out convs, uniform +-1/sqrt(out) linear)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        """Per-item normalisation + channel replication / ImageNet normalisation; (B,1,F,T) -> (B,C,F,T)."""
        if self.input_norm == "item_std":
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            var = x.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
            x = (x - mean) * torch.rsqrt(var + 1e-5)
        elif self.input_norm == "item_max":
            peak = x.amax(dim=(1, 2, 3), keepdim=True).abs().clamp_min(1e-8)
            x = x / peak
        if self.in_channels == 3:
            x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) log-mel -> (B, embedding_dim)."""
        check_logmel(x, "efficientnet_b0", 0, 1)
        x = self.features(self.normalize_input(x))
        x = torch.flatten(self.avgpool(x), 1)
        return self.classifier(x)
