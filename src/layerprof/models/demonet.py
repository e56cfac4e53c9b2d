"""The CNN shipped for the demo and the tests: small, but with every structure layerprof must handle.

A strided stem, a residual block (``out += identity`` runs in the block's own forward: a glue row),
a depthwise-separable block, max pooling, a bilinear upsampling merged back by concatenation,
global average pooling and a linear head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        result: torch.Tensor = self.relu(out)
        return result


class DepthwiseSeparable(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(
            in_channels, in_channels, 3, stride=stride, padding=1, groups=in_channels, bias=False
        )
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.depthwise(x)))
        result: torch.Tensor = self.act(self.bn2(self.pointwise(x)))
        return result


class DemoNet(nn.Module):
    """About 0.2 M parameters and 0.3 GFLOPs at 1x3x128x128."""

    def __init__(self, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        self.res = ResidualBlock(width)
        self.pool = nn.MaxPool2d(2)
        self.dws = DepthwiseSeparable(width, 2 * width, stride=2)
        self.lateral = nn.Conv2d(2 * width, width, 1)
        self.fuse = nn.Conv2d(2 * width, 2 * width, 5, padding=2)
        self.head_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.res(self.stem(x))
        pooled = self.pool(x)
        deep = self.dws(pooled)
        up = F.interpolate(self.lateral(deep), scale_factor=2, mode="bilinear", align_corners=False)
        x = self.fuse(torch.cat([pooled, up], dim=1))
        x = torch.flatten(self.head_pool(x), 1)
        return self.fc(x)  # type: ignore[no-any-return]


DEMO_INPUT_SIZE = (1, 3, 128, 128)


def demo_model(num_classes: int = 10) -> DemoNet:
    """A freshly initialised :class:`DemoNet` in eval mode (seeded: the same weights every time)."""
    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        model = DemoNet(num_classes)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()
