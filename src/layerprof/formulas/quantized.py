"""Quantized (int8) ops: eager-mode ``torch.ao`` models (fbgemm, qnnpack) and the quantize round trip.

Quantized convolution and linear are int8 matrix work: the same MACs as their float versions
(``2 * MACs`` matrix FLOPs, :mod:`~layerprof.formulas.conv` and :mod:`~layerprof.formulas.matmul`),
read off the packed weight (``Conv2dPackedParamsBase`` / ``LinearPackedParamsBase``, unpacked for
its shape). Their rows compute in ``int8`` (quint8 / qint8 tensors) and are priced at int8 peaks.

Per-element vector constants, on the output:

- :data:`QUANTIZE_FLOPS_PER_ELEMENT` = 5: ``clamp(round(x / scale) + zero_point, qmin, qmax)``: a
  divide, a round, an add, two compares. ``quantize_per_tensor`` / ``quantize_per_channel`` cost
  this, and so does the requantization every quantized op ends with (int32 or float back to int8).
- :data:`DEQUANTIZE_FLOPS_PER_ELEMENT` = 2: ``(q - zero_point) * scale``. ``dequantize`` costs this.
- conv and linear: bias add (1, with a bias) + requantize (5) + relu (1, the ``_relu`` variants);
  ``linear_dynamic`` (float activations, int8 weights) quantizes its input (5 per input element)
  and writes float: bias (1) + dequantize (2) per output element.
- add and mul of two quantized tensors: dequantize both (2 + 2), the op (1), requantize (5): 10,
  11 with relu; ``add_scalar`` / ``mul.Scalar``: dequantize (2), op (1), requantize (5): 8.
- cat: dequantize (2) and requantize (5) each element: 7 (8 with relu).
- batch norm: dequantize (2), scale and shift (2), requantize (5): 9 (10 with relu).
- hardswish 2 + 5 + 5 = 12 (dequantize, hardswish as in :mod:`~layerprof.formulas.activation`,
  requantize); sigmoid 2 + 4 + 5 = 11; relu6 and threshold 2 (two compares on the integers);
  leaky_relu 2 + 2 + 5 = 9; elu and celu 2 + 4 + 5 = 11.
- layer, group and instance norm: dequantize (2), the float norm's 7 (statistics 5, scale and
  shift 2), requantize (5): 14.
- matmul of two quantized tensors: its MACs as matrix work, requantize (5) per output element.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from layerprof.formulas.conv import conv_flops
from layerprof.formulas.matmul import matmul_flops
from layerprof.formulas.registry import REGISTRY, OpFlops, first_output_numel, numel, register

quantized = torch.ops.quantized
aten = torch.ops.aten

QUANTIZE_FLOPS_PER_ELEMENT = 5
DEQUANTIZE_FLOPS_PER_ELEMENT = 2


def unpacked(packed: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The (weight, bias) a packed quantized weight holds."""
    weight, bias = packed.unpack()
    return weight, bias


def packed_tensors(value: object) -> list[torch.Tensor]:
    """The tensors a packed quantized weight (a script object with ``unpack``) holds: its weight and
    bias; none for any other value."""
    packed: Any = value
    if not isinstance(value, torch.ScriptObject) or not packed._has_method("unpack"):
        return []
    return [t for t in packed.unpack() if isinstance(t, torch.Tensor)]


def _conv(args: tuple[Any, ...], out: Any, packed: Any, relu: bool) -> OpFlops:
    x = args[0]
    weight, bias = unpacked(packed)
    transposed = bool(packed.transpose()) if hasattr(packed, "transpose") else False
    in_channels = int(x.shape[1])
    out_channels = int(out.shape[1])
    groups = out_channels // int(weight.shape[1]) if transposed else in_channels // int(weight.shape[1])
    spatial = tuple(int(s) for s in x.shape[2:])
    kernel = tuple(int(k) for k in weight.shape[2:])
    if len(kernel) > len(spatial):  # conv1d runs as a conv2d with a unit height
        kernel = kernel[len(kernel) - len(spatial) :]
    cost = conv_flops(
        batch=int(x.shape[0]),
        in_channels=in_channels,
        out_channels=out_channels,
        in_spatial=spatial,
        out_spatial=tuple(int(s) for s in out.shape[2:]),
        kernel_size=kernel,
        groups=groups,
        transposed=transposed,
        bias=bias is not None,
    )
    outputs = int(out.numel())
    return OpFlops(
        matrix=cost.matrix,
        vector=cost.vector + (QUANTIZE_FLOPS_PER_ELEMENT + (1 if relu else 0)) * outputs,
        kernel_size=cost.kernel_size,
    )


def conv(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _conv(args, out, args[1], relu=False)


def conv_relu(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _conv(args, out, args[1], relu=True)


def conv_add(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # (qx, qaccum, packed, scale, zero_point): the convolution, then a quantized add (10) in place of
    # its requantize (5), the relu inside the add's requantize
    cost = _conv(args, out, args[2], relu=False)
    extra = (2 * DEQUANTIZE_FLOPS_PER_ELEMENT + 1) * int(out.numel())
    return OpFlops(matrix=cost.matrix, vector=cost.vector + extra, kernel_size=cost.kernel_size)


def _linear(args: tuple[Any, ...], out: Any, per_output: int) -> OpFlops:
    x = args[0]
    weight, bias = unpacked(args[1])
    n, k = int(weight.shape[0]), int(weight.shape[1])
    m = int(x.numel()) // k
    outputs = m * n
    vector = (1 if bias is not None else 0) * outputs + per_output * outputs
    return OpFlops(matrix=matmul_flops(m, n, k), vector=vector)


@register(quantized.linear)
def linear(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _linear(args, out, QUANTIZE_FLOPS_PER_ELEMENT)


@register(quantized.linear_relu)
def linear_relu(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _linear(args, out, QUANTIZE_FLOPS_PER_ELEMENT + 1)


def linear_dynamic(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    cost = _linear(args, out, DEQUANTIZE_FLOPS_PER_ELEMENT)
    return OpFlops(matrix=cost.matrix, vector=cost.vector + QUANTIZE_FLOPS_PER_ELEMENT * int(args[0].numel()))


def _per_output(constant: int) -> Any:
    def formula(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
        return OpFlops(vector=constant * first_output_numel(out))

    formula.__doc__ = f"{constant} FLOPs per output element (the module docstring gives the sum)."
    return formula


_BINARY = 2 * DEQUANTIZE_FLOPS_PER_ELEMENT + 1 + QUANTIZE_FLOPS_PER_ELEMENT  # 10
_UNARY = DEQUANTIZE_FLOPS_PER_ELEMENT + QUANTIZE_FLOPS_PER_ELEMENT  # 7: dequantize, requantize


def _binary(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any, relu: int) -> OpFlops:
    # a scalar operand (add_scalar, mul.Scalar; add_scalar.Tensor's 0-d tensor) is not dequantized
    both = all(isinstance(a, torch.Tensor) and a.dim() > 0 for a in args[:2])
    constant = _BINARY if both else _UNARY + 1
    return OpFlops(vector=(constant + relu) * first_output_numel(out))


def binary(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _binary(args, kwargs, out, 0)


def binary_relu(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _binary(args, kwargs, out, 1)


# (constant per output element, op names in torch.ops.quantized), as the module docstring sums them
PER_OUTPUT: tuple[tuple[int, tuple[str, ...]], ...] = (
    (_UNARY, ("cat",)),
    (_UNARY + 1, ("cat_relu",)),
    (_UNARY + 2, ("batch_norm", "batch_norm1d", "batch_norm2d", "batch_norm3d", "leaky_relu")),
    (_UNARY + 3, ("batch_norm2d_relu", "batch_norm3d_relu")),
    (_UNARY + 4, ("sigmoid", "elu", "celu")),
    (_UNARY + 5, ("hardswish",)),
    (_UNARY + 7, ("layer_norm", "group_norm", "instance_norm")),
    (2, ("relu6", "threshold")),
)


def _quantized_ops(*names: str) -> list[Any]:
    """The named ops this torch build has (some are missing from some builds)."""
    return [getattr(quantized, name) for name in names if hasattr(quantized, name)]


REGISTRY.add_all(
    _quantized_ops("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"),
    conv,
)
REGISTRY.add_all(_quantized_ops("conv1d_relu", "conv2d_relu", "conv3d_relu"), conv_relu)
REGISTRY.add_all(_quantized_ops("conv2d_add", "conv2d_add_relu"), conv_add)
REGISTRY.add_all(_quantized_ops("linear_dynamic", "linear_relu_dynamic"), linear_dynamic)
REGISTRY.add_all(_quantized_ops("add", "mul", "add_scalar", "mul_scalar"), binary)
REGISTRY.add_all(_quantized_ops("add_relu", "mul_relu", "add_scalar_relu", "mul_scalar_relu"), binary_relu)
for _constant, _names in PER_OUTPUT:
    REGISTRY.add_all(_quantized_ops(*_names), _per_output(_constant))
REGISTRY.add_all(
    [aten.quantize_per_tensor, aten.quantize_per_channel], _per_output(QUANTIZE_FLOPS_PER_ELEMENT)
)
REGISTRY.add_all([aten.dequantize], _per_output(DEQUANTIZE_FLOPS_PER_ELEMENT))


@register(quantized.matmul)
def matmul(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    a, b = args[0], args[1]
    m, k, n = int(a.shape[-2]), int(a.shape[-1]), int(b.shape[-1])
    batch = numel(out.shape[:-2])
    return OpFlops(
        matrix=matmul_flops(m, n, k, batch=batch), vector=QUANTIZE_FLOPS_PER_ELEMENT * int(out.numel())
    )
