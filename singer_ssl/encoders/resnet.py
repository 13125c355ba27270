"""ResNet-18 encoder of Fonseca et al. 2021 (uclser20 ``models/resnetAudio.py``, torchvision layout, 1 channel).

Takes (B, 1, F, T) and transposes to Fonseca et al.'s ``batch x 1 x time x freq`` internally, so weights
trained there (``ResNet_best.pth``, torchvision key names ``conv1``, ``bn1``, ``layer{1..4}.*``,
``fc``) load with ``strict=True``:

    conv1 7x7 stride 2 (1 -> 64, no bias) -> BN -> ReLU -> MaxPool 3x3 stride 2 pad 1
    layer1..4: 2 BasicBlocks each (64, 128, 256, 512 channels; stride 2 from layer2 on, 1x1 conv
    + BN downsample on the shortcut)  -> global average pool -> embedding (512)
    [fc 512 -> num_classes, only when num_classes > 0; the SSL encoder has none]

Any F, T >= 1 work (padding everywhere; global pool). Initialisation as torchvision
(kaiming-normal fan-out convs, BN weight 1 / bias 0).
"""

from __future__ import annotations

import torch
from torch import nn

from singer_ssl.encoders.common import LOGMEL, check_logmel, to_time_freq


class BasicBlock(nn.Module):
    """torchvision ``BasicBlock``: conv3x3-BN-ReLU-conv3x3-BN + shortcut, ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        else:
            self.downsample = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class ResNet18(nn.Module):
    """ResNet-18 encoder: log-mel (B, 1, F, T) -> (B, 512).

    Args:
        num_classes: size of the classifier ``fc`` (0 = none, the SSL default; published: 20).
    """

    input_kind = LOGMEL
    min_length = 1

    def __init__(self, num_classes: int = 0) -> None:
        super().__init__()
        if int(num_classes) < 0:
            raise ValueError(f"resnet18: num_classes must be >= 0, got {num_classes!r}")
        self.embedding_dim = 512
        self.num_classes = int(num_classes)
        self.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, self.num_classes) if self.num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) log-mel -> (B, 512) globally average-pooled layer4 output."""
        check_logmel(x, "resnet18", 0, 1)
        x = self.maxpool(self.relu(self.bn1(self.conv1(to_time_freq(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, F, T) -> logits (B, num_classes) of the classifier ``fc``."""
        if self.num_classes == 0:
            raise RuntimeError("resnet18: built with num_classes=0, there is no fc classifier")
        return self.fc(self.forward(x))
