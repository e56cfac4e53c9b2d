"""What-ifs without a model: the cost of one convolution from its parameters.

:func:`conv_cost` calls the very formula the counter uses (:func:`layerprof.formulas.conv_flops`) and
prices bytes the way the counter does (input, weight, bias read; output written; each at ``dtype``),
so a what-if and a counted layer always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from layerprof.core.dtypes import parse_dtype
from layerprof.core.records import intensity_of
from layerprof.core.validate import as_int, check_bool, positive_int
from layerprof.errors import InvalidArgumentError
from layerprof.formulas import conv_flops
from layerprof.formulas.registry import numel


@dataclass(frozen=True, slots=True)
class ConvCost:
    output_size: tuple[int, ...]
    kernel_size: tuple[int, ...]
    flops: int
    matrix_flops: int
    macs: int
    params: int
    bytes_read: int
    bytes_written: int
    intensity: float


def _per_dim(name: str, value: int | Sequence[int], rank: int, minimum: int) -> tuple[int, ...]:
    single = as_int(value)
    if single is not None:
        values: tuple[int | None, ...] = (single,) * rank
    elif isinstance(value, (tuple, list)):
        values = tuple(as_int(v) for v in value)
    else:
        values = ()
    if len(values) != rank or not all(v is not None and v >= minimum for v in values):
        raise InvalidArgumentError(f"{name} must be an int >= {minimum} or {rank} of them, got {value!r}")
    return tuple(v for v in values if v is not None)


def _check_output_padding(
    output_padding: tuple[int, ...], stride: tuple[int, ...], dilation: tuple[int, ...], *, transposed: bool
) -> None:
    """torch's rule: output padding only on a transposed convolution, and there smaller than either the
    stride or the dilation in every dimension."""
    if not transposed:
        if any(output_padding):
            raise InvalidArgumentError(
                f"output_padding={output_padding} applies to transposed convolutions only (transposed=True)"
            )
        return
    for pad, s, d in zip(output_padding, stride, dilation, strict=True):
        if not (pad < s or pad < d):
            raise InvalidArgumentError(
                f"output_padding {output_padding} must be smaller than either stride or dilation in each "
                f"dimension (torch's rule), got stride {stride} and dilation {dilation}"
            )


def conv_output_size(
    input_size: Sequence[int],
    kernel_size: Sequence[int],
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    *,
    transposed: bool = False,
    output_padding: Sequence[int] | None = None,
) -> tuple[int, ...]:
    """PyTorch's output-size formula, per spatial dimension."""
    sizes = []
    for i, (size, k, s, p, d) in enumerate(
        zip(input_size, kernel_size, stride, padding, dilation, strict=True)
    ):
        if transposed:
            extra = output_padding[i] if output_padding is not None else 0
            sizes.append((size - 1) * s - 2 * p + d * (k - 1) + extra + 1)
        else:
            sizes.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
    return tuple(sizes)


def conv_cost(
    in_channels: int,
    out_channels: int,
    input_size: int | Sequence[int],
    kernel_size: int | Sequence[int],
    stride: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    dilation: int | Sequence[int] = 1,
    groups: int = 1,
    batch: int = 1,
    dtype: torch.dtype | str = torch.float32,
    *,
    bias: bool = True,
    transposed: bool = False,
    output_padding: int | Sequence[int] = 0,
) -> ConvCost:
    """FLOPs, MACs, bytes and intensity of one convolution; ``input_size`` is spatial only.

    Sizes are ints (numpy and torch integers too), ``bias`` and ``transposed`` bools. ``output_padding``
    applies to a transposed convolution only and, as torch requires, must be smaller than either the
    stride or the dilation in each dimension. ``dtype`` is a real dtype: torch runs a complex
    convolution as three real ones, which :func:`layerprof.analyze` counts on a model.
    """
    bias = check_bool("bias", bias)
    transposed = check_bool("transposed", transposed)
    rank = (
        1
        if as_int(input_size) is not None
        else len(input_size)
        if isinstance(input_size, (tuple, list))
        else 0
    )
    if rank not in (1, 2, 3):
        raise InvalidArgumentError(f"input_size must have 1 to 3 spatial dimensions, got {input_size!r}")
    spatial = _per_dim("input_size", input_size, rank, 1)
    kernel = _per_dim("kernel_size", kernel_size, rank, 1)
    strides = _per_dim("stride", stride, rank, 1)
    pads = _per_dim("padding", padding, rank, 0)
    dilations = _per_dim("dilation", dilation, rank, 1)
    out_pads = _per_dim("output_padding", output_padding, rank, 0)
    in_channels = positive_int("in_channels", in_channels)
    out_channels = positive_int("out_channels", out_channels)
    batch = positive_int("batch", batch)
    group_count = as_int(groups)
    if group_count is None or group_count < 1 or in_channels % group_count or out_channels % group_count:
        raise InvalidArgumentError(
            f"groups={groups!r} must divide in_channels={in_channels} and out_channels={out_channels}"
        )
    groups = group_count
    _check_output_padding(out_pads, strides, dilations, transposed=transposed)
    out_spatial = conv_output_size(
        spatial, kernel, strides, pads, dilations, transposed=transposed, output_padding=out_pads
    )
    if min(out_spatial) < 1:
        raise InvalidArgumentError(
            f"input_size {spatial} is too small for kernel {kernel}: output {out_spatial}"
        )
    element = parse_dtype(dtype)
    if element.is_complex:
        raise InvalidArgumentError(
            f"conv_cost prices real convolutions, got dtype {element}: torch runs a complex convolution "
            "as three real ones (analyze a model to count it)"
        )
    itemsize = element.itemsize
    cost = conv_flops(
        batch=batch,
        in_channels=in_channels,
        out_channels=out_channels,
        in_spatial=spatial,
        out_spatial=out_spatial,
        kernel_size=kernel,
        groups=groups,
        transposed=transposed,
        bias=bias,
    )
    weight = (
        (in_channels if transposed else out_channels)
        * ((out_channels if transposed else in_channels) // groups)
        * numel(kernel)
    )
    params = weight + (out_channels if bias else 0)
    bytes_read = (batch * in_channels * numel(spatial) + params) * itemsize
    bytes_written = batch * out_channels * numel(out_spatial) * itemsize
    return ConvCost(
        output_size=out_spatial,
        kernel_size=kernel,
        flops=cost.total,
        matrix_flops=cost.matrix,
        macs=cost.matrix // 2,
        params=params,
        bytes_read=bytes_read,
        bytes_written=bytes_written,
        intensity=intensity_of(cost.total, bytes_read, bytes_written),
    )
