"""Tiny models for the tests: each exercises one counting rule, with shapes small enough to count by hand."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class Single(nn.Module):
    """One module as the child ``layer``, so its row is named ``layer``."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.layer(*inputs)  # type: ignore[no-any-return]


class Apply(nn.Module):
    """A leaf module running a function of its inputs (a functional op gets a row of its own)."""

    def __init__(self, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.fn(*inputs)


def op_model(fn: Callable[..., torch.Tensor]) -> Single:
    """A model whose only row, ``layer``, runs ``fn``."""
    return Single(Apply(fn))


class Dot(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.dot(a, b)


class MatVec(nn.Module):
    def forward(self, matrix: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
        return torch.mv(matrix, vector)


class MatMul(nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.matmul(a, b)


class Residual(nn.Module):
    """conv -> relu, then ``out + x`` in its own forward: the add is the glue row ``block/add``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x)) + x  # type: ignore[no-any-return]


class ResidualNet(nn.Module):
    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.block = Residual(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)  # type: ignore[no-any-return]


class ConvBnReluNet(nn.Module):
    """Conv, batch norm, in-place ReLU, pooling and a linear head: a small eval-mode CNN."""

    def __init__(self, in_channels: int = 3, width: int = 8, classes: int = 5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn(self.conv(x))))
        return self.fc(torch.flatten(x, 1))  # type: ignore[no-any-return]


class Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom in the middle of the network")


class RaisingNet(nn.Module):
    """``layer2`` raises: analyze must say so."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Linear(8, 8)
        self.layer2 = Boom()
        self.layer3 = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(self.layer2(self.layer1(x)))  # type: ignore[no-any-return]


class Attention(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)
