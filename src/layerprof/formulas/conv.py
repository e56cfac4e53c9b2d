"""Convolution of any rank: plain, strided, dilated, grouped (depthwise), transposed.

Matrix FLOPs are ``2 * N * C_out * prod(out_spatial) * (C_in / groups) * prod(kernel_size)``; a
transposed convolution uses the input spatial size in place of the output's (it scatters each input
pixel through the kernel). The bias add is ``N * C_out * prod(out_spatial)`` vector FLOPs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from layerprof.formulas.registry import OpFlops, numel, register

aten = torch.ops.aten


def conv_macs(
    *,
    batch: int,
    in_channels: int,
    out_channels: int,
    spatial: Sequence[int],
    kernel_size: Sequence[int],
    groups: int,
) -> int:
    """Multiply-accumulates of a convolution; ``spatial`` is the output size (input size if transposed)."""
    return batch * out_channels * numel(spatial) * (in_channels // groups) * numel(kernel_size)


def conv_flops(
    *,
    batch: int,
    in_channels: int,
    out_channels: int,
    in_spatial: Sequence[int],
    out_spatial: Sequence[int],
    kernel_size: Sequence[int],
    groups: int,
    transposed: bool,
    bias: bool,
) -> OpFlops:
    """The one convolution formula: the counter and :func:`layerprof.conv_cost` both call it."""
    macs = conv_macs(
        batch=batch,
        in_channels=in_channels,
        out_channels=out_channels,
        spatial=in_spatial if transposed else out_spatial,
        kernel_size=kernel_size,
        groups=groups,
    )
    bias_adds = batch * out_channels * numel(out_spatial) if bias else 0
    return OpFlops(matrix=2 * macs, vector=bias_adds, kernel_size=tuple(int(k) for k in kernel_size))


def _conv_from_tensors(
    x: torch.Tensor, weight: torch.Tensor, bias: Any, out: torch.Tensor, transposed: bool
) -> OpFlops:
    # Weight is (C_out, C_in/groups, *k) for a convolution and (C_in, C_out/groups, *k) transposed.
    batch, in_channels = x.shape[0], x.shape[1]
    out_channels = out.shape[1]
    groups = out_channels // weight.shape[1] if transposed else in_channels // weight.shape[1]
    return conv_flops(
        batch=int(batch),
        in_channels=int(in_channels),
        out_channels=int(out_channels),
        in_spatial=tuple(x.shape[2:]),
        out_spatial=tuple(out.shape[2:]),
        kernel_size=tuple(weight.shape[2:]),
        groups=int(groups),
        transposed=transposed,
        bias=isinstance(bias, torch.Tensor),
    )


@register(aten.convolution, aten.convolution_overrideable)
def convolution(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)
    return _conv_from_tensors(args[0], args[1], args[2], out, bool(args[6]))


@register(aten._convolution)
def underscore_convolution(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _conv_from_tensors(args[0], args[1], args[2], out, bool(args[6]))


@register(aten.cudnn_convolution, aten.mkldnn_convolution)
def backend_convolution(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # cudnn_convolution(input, weight, padding, stride, dilation, groups, ...) has no bias argument;
    # mkldnn_convolution(input, weight, bias, padding, stride, dilation, groups).
    bias = args[2] if isinstance(args[2], torch.Tensor) else None
    return _conv_from_tensors(args[0], args[1], bias, out, False)


@register(aten.cudnn_convolution_transpose)
def backend_convolution_transpose(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _conv_from_tensors(args[0], args[1], None, out, True)
