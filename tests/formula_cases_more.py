"""Expected costs of the quantized, float8, sampling and sorting formulas, for tests/test_formulas.py.

Each is arithmetic on the call's concrete shapes from the constants the formula modules' docstrings
document (layerprof.formulas.quantized, .matmul, .sampling, .sorting, .norm, .attention). Quantized
ops get real packed weights (their formulas unpack them for the weight's shape) and hand-made
outputs; their activations are meta stand-ins, since a formula reads shapes only.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

aten = torch.ops.aten
quantized = torch.ops.quantized

QUANTIZE = 5  # clamp(round(x / scale) + zero_point): divide, round, add, two compares
DEQUANTIZE = 2  # (q - zero_point) * scale


def _q(*shape: int) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized tensor creation is deprecated
        return torch.quantize_per_tensor(torch.randn(shape), 0.1, 0, torch.qint8)


def _packed() -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            # 4 -> 6 channels, 3x3, groups 2, with a bias
            "conv2d": quantized.conv2d_prepack(_q(6, 2, 3, 3), torch.zeros(6), [1, 1], [1, 1], [1, 1], 2),
            "conv1d": quantized.conv1d_prepack(_q(6, 4, 3), None, [1], [0], [1], 1),
            "conv3d": quantized.conv3d_prepack(_q(6, 4, 3, 3, 3), None, [1, 1, 1], [0, 0, 0], [1, 1, 1], 1),
            # transposed: weight (C_in=4, C_out=3, k...)
            "t1d": quantized.conv_transpose1d_prepack(_q(4, 3, 3), None, [1], [0], [0], [1], 1),
            "t2d": quantized.conv_transpose2d_prepack(
                _q(4, 3, 3, 3), None, [1, 1], [0, 0], [0, 0], [1, 1], 1
            ),
            "t3d": quantized.conv_transpose3d_prepack(
                _q(4, 3, 3, 3, 3), None, [1, 1, 1], [0, 0, 0], [0, 0, 0], [1, 1, 1], 1
            ),
            "linear": quantized.linear_prepack(_q(5, 8), torch.zeros(5)),  # 8 -> 5, with a bias
        }


def more_structured(call: type, t: Callable[..., torch.Tensor]) -> dict[str, Callable[[], Any]]:
    """Cases keyed as tests/test_formulas.py keys them (``quantized.`` before a quantized op)."""
    packed = _packed()
    X = (2, 4, 8, 8)
    N_X = 2 * 4 * 8 * 8
    f8 = torch.float8_e4m3fn

    def per_output(op: Any, constant: int) -> Callable[[], Any]:
        return lambda: call(op, (t(*X),), out=t(*X), vector=constant * N_X)

    # conv2d, 4 -> 6, groups 2, 3x3, padding 1 on (1, 4, 8, 8): MACs 1*6*8*8 * (4/2)*3*3; bias 384
    conv2d_macs = 1 * 6 * 8 * 8 * 2 * 3 * 3
    conv2d_out = 6 * 8 * 8
    # conv1d 4 -> 6, k 3 on (1, 4, 10) -> (1, 6, 8); conv3d 4 -> 6, 3x3x3 on (1, 4, 5, 5, 5) -> 3^3
    conv1d_macs, conv1d_out = 6 * 8 * 4 * 3, 6 * 8
    conv3d_macs, conv3d_out = 6 * 27 * 4 * 27, 6 * 27
    # transposed 4 -> 3: MACs on the input's spatial size: 3 * in_spatial * 4 * k
    linear_out = 3 * 5  # (3, 8) @ (8, 5)
    cases: dict[str, Callable[[], Any]] = {
        "quantized.conv2d": lambda: call(
            quantized.conv2d.new, (t(1, 4, 8, 8), packed["conv2d"], 0.1, 0), out=t(1, 6, 8, 8),
            matrix=2 * conv2d_macs, vector=conv2d_out + QUANTIZE * conv2d_out, kernel_size=(3, 3),
        ),
        "quantized.conv2d_relu": lambda: call(
            quantized.conv2d_relu.new, (t(1, 4, 8, 8), packed["conv2d"], 0.1, 0), out=t(1, 6, 8, 8),
            matrix=2 * conv2d_macs, vector=conv2d_out + (QUANTIZE + 1) * conv2d_out, kernel_size=(3, 3),
        ),
        "quantized.conv2d_add": lambda: call(
            quantized.conv2d_add.default, (t(1, 4, 8, 8), t(1, 6, 8, 8), packed["conv2d"], 0.1, 0),
            out=t(1, 6, 8, 8), matrix=2 * conv2d_macs,
            vector=conv2d_out + (2 * DEQUANTIZE + 1 + QUANTIZE) * conv2d_out, kernel_size=(3, 3),
        ),
        "quantized.conv2d_add_relu": lambda: call(
            quantized.conv2d_add_relu.default, (t(1, 4, 8, 8), t(1, 6, 8, 8), packed["conv2d"], 0.1, 0),
            out=t(1, 6, 8, 8), matrix=2 * conv2d_macs,
            vector=conv2d_out + (2 * DEQUANTIZE + 1 + QUANTIZE) * conv2d_out, kernel_size=(3, 3),
        ),
        "quantized.conv1d": lambda: call(
            quantized.conv1d.default, (t(1, 4, 10), packed["conv1d"], 0.1, 0), out=t(1, 6, 8),
            matrix=2 * conv1d_macs, vector=QUANTIZE * conv1d_out, kernel_size=(3,),
        ),
        "quantized.conv1d_relu": lambda: call(
            quantized.conv1d_relu.default, (t(1, 4, 10), packed["conv1d"], 0.1, 0), out=t(1, 6, 8),
            matrix=2 * conv1d_macs, vector=(QUANTIZE + 1) * conv1d_out, kernel_size=(3,),
        ),
        "quantized.conv3d": lambda: call(
            quantized.conv3d.new, (t(1, 4, 5, 5, 5), packed["conv3d"], 0.1, 0), out=t(1, 6, 3, 3, 3),
            matrix=2 * conv3d_macs, vector=QUANTIZE * conv3d_out, kernel_size=(3, 3, 3),
        ),
        "quantized.conv3d_relu": lambda: call(
            quantized.conv3d_relu.new, (t(1, 4, 5, 5, 5), packed["conv3d"], 0.1, 0), out=t(1, 6, 3, 3, 3),
            matrix=2 * conv3d_macs, vector=(QUANTIZE + 1) * conv3d_out, kernel_size=(3, 3, 3),
        ),
        "quantized.conv_transpose1d": lambda: call(
            quantized.conv_transpose1d.default, (t(1, 4, 5), packed["t1d"], 0.1, 0), out=t(1, 3, 7),
            matrix=2 * 3 * 5 * 4 * 3, vector=QUANTIZE * 3 * 7, kernel_size=(3,),
        ),
        "quantized.conv_transpose2d": lambda: call(
            quantized.conv_transpose2d.default, (t(1, 4, 5, 5), packed["t2d"], 0.1, 0), out=t(1, 3, 7, 7),
            matrix=2 * 3 * 25 * 4 * 9, vector=QUANTIZE * 3 * 49, kernel_size=(3, 3),
        ),
        "quantized.conv_transpose3d": lambda: call(
            quantized.conv_transpose3d.default, (t(1, 4, 2, 2, 2), packed["t3d"], 0.1, 0),
            out=t(1, 3, 4, 4, 4), matrix=2 * 3 * 8 * 4 * 27, vector=QUANTIZE * 3 * 64, kernel_size=(3, 3, 3),
        ),
        "quantized.linear": lambda: call(
            quantized.linear.default, (t(3, 8), packed["linear"], 0.1, 0), out=t(3, 5),
            matrix=2 * 3 * 5 * 8, vector=linear_out + QUANTIZE * linear_out,
        ),
        "quantized.linear_relu": lambda: call(
            quantized.linear_relu.default, (t(3, 8), packed["linear"], 0.1, 0), out=t(3, 5),
            matrix=2 * 3 * 5 * 8, vector=linear_out + (QUANTIZE + 1) * linear_out,
        ),
        # float in, int8 weights: quantize the input (5 x 24), bias and dequantize each output (1 + 2)
        "quantized.linear_dynamic": lambda: call(
            quantized.linear_dynamic.default, (t(3, 8), packed["linear"]), out=t(3, 5),
            matrix=2 * 3 * 5 * 8, vector=QUANTIZE * 24 + (1 + DEQUANTIZE) * linear_out,
        ),
        "quantized.linear_relu_dynamic": lambda: call(
            quantized.linear_relu_dynamic.default, (t(3, 8), packed["linear"]), out=t(3, 5),
            matrix=2 * 3 * 5 * 8, vector=QUANTIZE * 24 + (1 + DEQUANTIZE) * linear_out,
        ),
        # two quantized operands: dequantize both, the op, requantize = 2 + 2 + 1 + 5 = 10
        **{
            f"quantized.{name}": (
                lambda op=op, c=c: call(op, (t(*X), t(*X), 0.1, 0), out=t(*X), vector=c * N_X)
            )
            for name, op, c in (
                ("add", quantized.add.default, 10), ("add_relu", quantized.add_relu.default, 11),
                ("mul", quantized.mul.default, 10), ("mul_relu", quantized.mul_relu.default, 11),
            )
        },
        # a scalar operand: dequantize, the op, requantize = 2 + 1 + 5 = 8
        **{
            f"quantized.{name}": (lambda op=op, c=c: call(op, (t(*X), 2.0), out=t(*X), vector=c * N_X))
            for name, op, c in (
                ("add_scalar", quantized.add_scalar.default, 8),
                ("add_scalar_relu", quantized.add_scalar_relu.default, 9),
                ("mul_scalar", quantized.mul_scalar.default, 8),
                ("mul_scalar_relu", quantized.mul_scalar_relu.default, 9),
            )
        },
        # cat: dequantize and requantize every element written (2 + 5), relu + 1
        "quantized.cat": lambda: call(
            quantized.cat.default, ([t(*X), t(*X)], 1, 0.1, 0), out=t(2, 8, 8, 8), vector=7 * 2 * N_X
        ),
        "quantized.cat_relu": lambda: call(
            quantized.cat_relu.default, ([t(*X), t(*X)], 1, 0.1, 0), out=t(2, 8, 8, 8), vector=8 * 2 * N_X
        ),
        # batch norm 2 + 2 + 5 = 9; sigmoid / elu / celu 2 + 4 + 5 = 11; hardswish 2 + 5 + 5 = 12
        **{f"quantized.{n}": per_output(getattr(quantized, n).default, 9) for n in (
            "batch_norm", "batch_norm1d", "batch_norm2d", "batch_norm3d", "leaky_relu",
        )},
        **{f"quantized.{n}": per_output(getattr(quantized, n).default, 10) for n in (
            "batch_norm2d_relu", "batch_norm3d_relu",
        )},
        **{f"quantized.{n}": per_output(getattr(quantized, n).default, 11) for n in (
            "sigmoid", "elu", "celu",
        )},
        "quantized.hardswish": per_output(quantized.hardswish.default, 12),
        # relu6 and threshold: two compares on the integers
        "quantized.relu6": per_output(quantized.relu6.default, 2),
        "quantized.threshold": per_output(quantized.threshold.default, 2),
        # norms: dequantize 2, the float norm's 7, requantize 5
        **{f"quantized.{n}": per_output(getattr(quantized, n).default, 14) for n in (
            "layer_norm", "group_norm", "instance_norm",
        )},
        "quantized.matmul": lambda: call(
            quantized.matmul.default, (t(2, 3, 4), t(2, 4, 5), 0.1, 0), out=t(2, 3, 5),
            matrix=2 * 2 * 3 * 5 * 4, vector=QUANTIZE * 30,
        ),
        "quantize_per_tensor": per_output(aten.quantize_per_tensor.default, QUANTIZE),
        "quantize_per_channel": per_output(aten.quantize_per_channel.default, QUANTIZE),
        "dequantize": per_output(aten.dequantize.self, DEQUANTIZE),
        # float8 GEMM: 2*M*N*K, and the scale multiply per output
        "_scaled_mm": lambda: call(
            aten._scaled_mm.default, (t(16, 32, dtype=f8), t(32, 8, dtype=f8), t(), t()), out=t(16, 8),
            matrix=2 * 16 * 8 * 32, vector=16 * 8,
        ),
        # grid sampling on 4x5 locations of 2 coordinates: unnormalize 2 per coordinate, bilinear
        # weights 6 per location, 7 per output element (3 channels)
        "grid_sampler_2d": lambda: call(
            aten.grid_sampler_2d.default, (t(1, 3, 8, 8), t(1, 4, 5, 2), 0, 0, False), out=t(1, 3, 4, 5),
            vector=(2 * 2 + 6) * 20 + 7 * 3 * 20,
        ),
        "cudnn_grid_sampler": lambda: call(
            aten.cudnn_grid_sampler.default, (t(1, 3, 8, 8), t(1, 4, 5, 2)), out=t(1, 3, 4, 5),
            vector=(2 * 2 + 6) * 20 + 7 * 3 * 20,
        ),
        # trilinear, 2x3x3 locations of 3 coordinates, 2 channels: 15 per output element
        "grid_sampler_3d": lambda: call(
            aten.grid_sampler_3d.default, (t(1, 2, 4, 4, 4), t(1, 2, 3, 3, 3), 0, 0, False),
            out=t(1, 2, 2, 3, 3), vector=(2 * 3 + 6) * 18 + 15 * 2 * 18,
        ),
        "im2col": lambda: call(
            aten.im2col.default, (t(1, 3, 8, 8), [3, 3], [1, 1], [0, 0], [1, 1]), vector=0
        ),
        # col2im sums each of the 12 x 4 column elements into the image once (4 blocks of 2x2 on 4x4)
        "col2im": lambda: call(
            aten.col2im.default, (t(1, 12, 4), [4, 4], [2, 2], [1, 1], [0, 0], [2, 2]), vector=12 * 4
        ),
        "max_unpool2d": lambda: call(
            aten.max_unpool2d.default, (t(1, 3, 4, 4), t(1, 3, 4, 4, dtype=torch.long), [8, 8]),
            out=t(1, 3, 8, 8), vector=0,
        ),
        "max_unpool3d": lambda: call(
            aten.max_unpool3d.default,
            (t(1, 3, 2, 2, 2), t(1, 3, 2, 2, 2, dtype=torch.long), [4, 4, 4], [2, 2, 2], [0, 0, 0]),
            out=t(1, 3, 4, 4, 4), vector=0,
        ),
        # sort: 64 slices of 8, 8 * ceil(log2 8) = 24 compares each; topk 3: 8 * ceil(log2 4) = 16
        "sort": lambda: call(aten.sort.default, (t(*X), -1, False), out=(t(*X), t(*X)), vector=64 * 8 * 3),
        "topk": lambda: call(
            aten.topk.default, (t(*X), 3), out=(t(2, 4, 8, 3), t(2, 4, 8, 3)), vector=64 * 8 * 2
        ),
        # scans: 1 per element (cumsum, cumprod), 3 for logcumsumexp
        **{
            name: (lambda op=op: call(op, (t(*X), 1), out=t(*X), vector=N_X))
            for name, op in (
                ("cumsum", aten.cumsum.default), ("cumsum_", aten.cumsum_.default),
                ("cumprod", aten.cumprod.default), ("cumprod_", aten.cumprod_.default),
            )
        },
        "logcumsumexp": lambda: call(aten.logcumsumexp.default, (t(*X), 1), out=t(*X), vector=3 * N_X),
        # nonzero: a compare per element; unique: a sort of 512 (9 compares each) and a neighbour compare
        "nonzero": lambda: call(aten.nonzero.default, (t(*X),), out=t(10, 4, dtype=torch.long), vector=N_X),
        "argwhere": lambda: call(aten.argwhere.default, (t(*X),), out=t(10, 4, dtype=torch.long), vector=N_X),
        **{
            name: (lambda op=op, rest=rest: call(op, (t(*X), *rest), out=(t(10),), vector=N_X * 9 + N_X))
            for name, op, rest in (
                ("_unique2", aten._unique2.default, (True, False, False)),
                ("_unique", aten._unique.default, (True, False)),
                ("unique_dim", aten.unique_dim.default, (0,)),
                ("unique_consecutive", aten.unique_consecutive.default, ()),
            )
        },
        # rms norm: 4 per element with a weight, 2 per normalized row
        "rms_norm": lambda: call(aten.rms_norm.default, (t(2, 5, 8), [8], t(8), 1e-5), out=t(2, 5, 8),
                                 vector=4 * 80 + 2 * 10),
        # the sdpa composite, priced as the fused kernels: Q K^T and P V; scale + softmax (6) per score
        "scaled_dot_product_attention": lambda: call(
            aten.scaled_dot_product_attention.default, (t(2, 3, 5, 8), t(2, 3, 7, 8), t(2, 3, 7, 6)),
            out=t(2, 3, 5, 6), matrix=2 * 6 * 5 * 7 * 8 + 2 * 6 * 5 * 7 * 6, vector=6 * 6 * 5 * 7,
        ),
    }  # fmt: skip
    return cases
