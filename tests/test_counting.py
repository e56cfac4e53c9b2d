"""Hand counts through ``layerprof.analyze``: each expected value is arithmetic from DESIGN.md's
conventions and the constants documented in the formulas, next to the layer it describes.

Bytes: every distinct tensor an op reads plus every tensor it writes, at its own element size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch._ops import OpOverload
from torch.utils._python_dispatch import TorchDispatchMode

import layerprof
from conftest import restored_torch_flags
from layerprof import LayerRow, Report
from layerprof.formulas import FORMULAS, WRITE_ONLY_DESTINATION, is_free
from models import Attention, ConvBnReluNet, MatMul, ResidualNet, Single, op_model

F32 = 4  # bytes per float32 element


def only_row(report: Report) -> LayerRow:
    (row,) = report.layers
    return row


def params_of(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- convolution ------------------------------------------------------------------------------------------
# (layer, input size, matrix FLOPs = 2 * N * Cout * prod(out) * Cin/g * prod(k), bias FLOPs, output shape)
CONVS = [
    pytest.param(
        nn.Conv1d(4, 8, 1), (2, 4, 32), 2 * 2 * 8 * 32 * 4 * 1, 2 * 8 * 32, (2, 8, 32), id="1d-k1-bias",
    ),
    pytest.param(
        nn.Conv1d(4, 6, 5, stride=2, padding=2), (1, 4, 33),
        2 * 1 * 6 * 17 * 4 * 5, 1 * 6 * 17, (1, 6, 17), id="1d-k5-s2-bias",
    ),
    pytest.param(
        nn.Conv1d(3, 5, 7, dilation=2, bias=False), (1, 3, 40),
        2 * 1 * 5 * 28 * 3 * 7, 0, (1, 5, 28), id="1d-k7-d2",  # 40 - 2 * (7 - 1) = 28
    ),
    pytest.param(
        nn.Conv2d(16, 32, 1, bias=False), (1, 16, 14, 14),
        2 * 1 * 32 * 14 * 14 * 16 * 1, 0, (1, 32, 14, 14), id="2d-k1-pointwise",
    ),
    pytest.param(
        nn.Conv2d(3, 8, 2, stride=2), (2, 3, 16, 16),
        2 * 2 * 8 * 8 * 8 * 3 * 4, 2 * 8 * 8 * 8, (2, 8, 8, 8), id="2d-k2-s2-bias",
    ),
    pytest.param(
        nn.Conv2d(64, 64, 3, padding=1, bias=False), (1, 64, 56, 56),
        2 * 1 * 64 * 56 * 56 * 64 * 9, 0, (1, 64, 56, 56), id="2d-k3-resnet",  # = 231_211_008
    ),
    pytest.param(
        nn.Conv2d(4, 6, 4, stride=2, padding=1, bias=False), (1, 4, 10, 10),
        2 * 1 * 6 * 5 * 5 * 4 * 16, 0, (1, 6, 5, 5), id="2d-k4-s2",
    ),
    pytest.param(
        nn.Conv2d(8, 8, 5, padding=2), (1, 8, 12, 12),
        2 * 1 * 8 * 12 * 12 * 8 * 25, 1 * 8 * 12 * 12, (1, 8, 12, 12), id="2d-k5-bias",
    ),
    pytest.param(
        nn.Conv2d(2, 3, 6, bias=False), (1, 2, 11, 11),
        2 * 1 * 3 * 6 * 6 * 2 * 36, 0, (1, 3, 6, 6), id="2d-k6",
    ),
    pytest.param(
        nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), (1, 3, 224, 224),
        2 * 1 * 64 * 112 * 112 * 3 * 49, 0, (1, 64, 112, 112), id="2d-k7-s2-resnet-stem",  # = 236_027_904
    ),
    pytest.param(
        nn.Conv2d(4, 4, 3, padding=2, dilation=2), (1, 4, 9, 9),
        2 * 1 * 4 * 9 * 9 * 4 * 9, 1 * 4 * 9 * 9, (1, 4, 9, 9), id="2d-k3-d2-bias",
    ),
    pytest.param(
        nn.Conv2d(4, 6, (3, 5), padding=(1, 2), bias=False), (1, 4, 7, 9),
        2 * 1 * 6 * 7 * 9 * 4 * 15, 0, (1, 6, 7, 9), id="2d-k3x5",
    ),
    pytest.param(
        nn.Conv2d(8, 16, 3, padding=1, groups=4), (1, 8, 6, 6),
        2 * 1 * 16 * 6 * 6 * (8 // 4) * 9, 1 * 16 * 6 * 6, (1, 16, 6, 6), id="2d-k3-g4-bias",
    ),
    pytest.param(
        nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False), (1, 32, 16, 16),
        2 * 1 * 32 * 16 * 16 * 1 * 9, 0, (1, 32, 16, 16), id="2d-k3-depthwise",
    ),
    pytest.param(
        nn.Conv3d(2, 4, 1), (1, 2, 3, 4, 5),
        2 * 1 * 4 * 60 * 2 * 1, 1 * 4 * 60, (1, 4, 3, 4, 5), id="3d-k1-bias",
    ),
    pytest.param(
        nn.Conv3d(2, 4, 3, padding=1, bias=False), (2, 2, 4, 4, 4),
        2 * 2 * 4 * 64 * 2 * 27, 0, (2, 4, 4, 4, 4), id="3d-k3",
    ),
    pytest.param(
        nn.Conv3d(3, 4, 3, stride=2, padding=1), (1, 3, 8, 8, 8),
        2 * 1 * 4 * 64 * 3 * 27, 1 * 4 * 64, (1, 4, 4, 4, 4), id="3d-k3-s2-bias",
    ),
    pytest.param(
        nn.Conv3d(4, 4, 3, padding=1, groups=4, bias=False), (1, 4, 5, 5, 5),
        2 * 1 * 4 * 125 * 1 * 27, 0, (1, 4, 5, 5, 5), id="3d-k3-depthwise",
    ),
    # Transposed: the input's spatial size replaces the output's in the matrix FLOPs; bias uses the output.
    pytest.param(
        nn.ConvTranspose2d(8, 4, 2, stride=2), (1, 8, 7, 7),
        2 * 1 * 4 * 7 * 7 * 8 * 4, 1 * 4 * 14 * 14, (1, 4, 14, 14), id="2d-transposed-k2-s2-bias",
    ),
    pytest.param(
        nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, bias=False), (2, 6, 5, 5),
        2 * 2 * 4 * 5 * 5 * 6 * 9, 0, (2, 4, 10, 10), id="2d-transposed-k3-s2",
    ),
    pytest.param(
        nn.ConvTranspose2d(8, 6, 3, stride=2, groups=2, bias=False), (1, 8, 4, 4),
        2 * 1 * 6 * 4 * 4 * (8 // 2) * 9, 0, (1, 6, 9, 9), id="2d-transposed-k3-s2-g2",
    ),
    pytest.param(
        nn.ConvTranspose1d(4, 2, 4, stride=2, padding=1), (1, 4, 10),
        2 * 1 * 2 * 10 * 4 * 4, 1 * 2 * 20, (1, 2, 20), id="1d-transposed-k4-s2-bias",
    ),
    pytest.param(
        nn.ConvTranspose3d(2, 2, 2, stride=2, bias=False), (1, 2, 3, 3, 3),
        2 * 1 * 2 * 27 * 2 * 8, 0, (1, 2, 6, 6, 6), id="3d-transposed-k2-s2",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("layer", "input_size", "matrix", "bias", "out_shape"), CONVS)
def test_convolution(
    layer: nn.Module, input_size: tuple[int, ...], matrix: int, bias: int, out_shape: tuple[int, ...]
) -> None:
    row = only_row(layerprof.analyze(Single(layer), input_size=input_size))
    assert row.name == "layer"
    assert row.output_shapes == (out_shape,)
    assert row.matrix_flops == matrix
    assert row.macs == matrix // 2
    assert row.vector_flops == bias
    assert row.flops == matrix + bias
    assert row.params == params_of(layer)
    # Reads the input, the weight and the bias; writes the output.
    assert row.bytes_read == (math.prod(input_size) + params_of(layer)) * F32
    assert row.bytes_written == math.prod(out_shape) * F32


def test_convolution_counts_the_same_on_real_inputs() -> None:
    layer = nn.Conv2d(4, 6, 3, stride=2, padding=1)
    on_meta = only_row(layerprof.analyze(Single(layer), input_size=(2, 4, 9, 9)))
    on_cpu = only_row(layerprof.analyze(Single(layer), torch.randn(2, 4, 9, 9)))
    assert on_meta.flops == on_cpu.flops == 2 * 2 * 6 * 5 * 5 * 4 * 9 + 2 * 6 * 5 * 5
    assert (on_meta.bytes_read, on_meta.bytes_written) == (on_cpu.bytes_read, on_cpu.bytes_written)


# -- matrix products --------------------------------------------------------------------------------------


def test_linear_on_3d_input() -> None:
    # (2, 5, 8) -> (2, 5, 6): one addmm on the (10 x 8) view; the bias adds 10 * 6.
    row = only_row(layerprof.analyze(Single(nn.Linear(8, 6)), input_size=(2, 5, 8)))
    assert row.matrix_flops == 2 * (2 * 5) * 6 * 8
    assert row.vector_flops == (2 * 5) * 6
    assert row.bytes_read == (2 * 5 * 8 + 6 * 8 + 6) * F32
    assert row.bytes_written == 2 * 5 * 6 * F32
    assert row.output_shapes == ((2, 5, 6),)


def test_linear_without_bias() -> None:
    row = only_row(layerprof.analyze(Single(nn.Linear(8, 6, bias=False)), input_size=(3, 8)))
    assert (row.matrix_flops, row.vector_flops) == (2 * 3 * 6 * 8, 0)


@pytest.mark.parametrize(
    ("sizes", "matrix"),
    [
        pytest.param([(5, 8), (8, 6)], 2 * 5 * 6 * 8, id="mm"),
        pytest.param([(2, 5, 8), (8, 6)], 2 * (2 * 5) * 6 * 8, id="3d-by-2d"),
        pytest.param([(3, 5, 8), (3, 8, 6)], 2 * 3 * 5 * 6 * 8, id="bmm"),
        pytest.param([(2, 3, 5, 8), (2, 3, 8, 6)], 2 * (2 * 3) * 5 * 6 * 8, id="4d-batched"),
        pytest.param([(5, 8), (8,)], 2 * 5 * 8, id="matrix-vector"),
    ],
)
def test_matmul(sizes: list[tuple[int, ...]], matrix: int) -> None:
    row = only_row(layerprof.analyze(MatMul(), input_size=sizes))
    assert row.matrix_flops == row.flops == matrix


def test_bmm() -> None:
    row = only_row(layerprof.analyze(op_model(torch.bmm), input_size=[(3, 5, 8), (3, 8, 6)]))
    assert row.matrix_flops == 2 * 3 * 5 * 6 * 8
    assert row.bytes_read == (3 * 5 * 8 + 3 * 8 * 6) * F32
    assert row.bytes_written == 3 * 5 * 6 * F32


def test_scaled_dot_product_attention() -> None:
    batch, heads, q_len, kv_len, head_dim, value_dim = 2, 3, 5, 7, 8, 6
    report = layerprof.analyze(
        Attention(),
        input_size=[
            (batch, heads, q_len, head_dim),
            (batch, heads, kv_len, head_dim),
            (batch, heads, kv_len, value_dim),
        ],
    )
    row = only_row(report)
    # Q K^T and P V.
    qk = 2 * batch * heads * q_len * kv_len * head_dim
    pv = 2 * batch * heads * q_len * kv_len * value_dim
    assert row.matrix_flops == qk + pv  # = 3360 + 2520
    assert row.output_shapes == ((batch, heads, q_len, value_dim),)
    assert report.unsupported == {}


# -- normalisation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["meta", "cpu"])
def test_batch_norm_inference(where: str) -> None:
    model = Single(nn.BatchNorm2d(4)).eval()
    size = (2, 4, 10, 10)
    report = (
        layerprof.analyze(model, input_size=size)
        if where == "meta"
        else layerprof.analyze(model, torch.randn(size))
    )
    row = only_row(report)
    elements = 2 * 4 * 10 * 10
    assert row.flops == 2 * elements  # folded scale and shift
    # Reads x, weight, bias, running mean, running var; writes only y.
    assert row.bytes_read == (elements + 4 * 4) * F32
    assert row.bytes_written == elements * F32


def test_batch_norm_training() -> None:
    model = Single(nn.BatchNorm2d(4)).train()
    row = only_row(layerprof.analyze(model, torch.randn(2, 4, 10, 10)))
    elements = 2 * 4 * 10 * 10
    # 3 statistics + 2 normalise + 2 affine per element, and num_batches_tracked += 1 (one add).
    assert row.flops == (3 + 2 + 2) * elements + 1
    # x, weight, bias and the running statistics (fp32), the int64 counter.
    assert row.bytes_read == (elements + 4 * 4) * F32 + 8
    # y, the saved mean and inverse std, the running mean and var updated in place, and the
    # int64 counter written back.
    assert row.bytes_written == (elements + 2 * 4 + 2 * 4) * F32 + 8


def test_layer_norm() -> None:
    row = only_row(layerprof.analyze(Single(nn.LayerNorm(10)), input_size=(2, 4, 10)))
    elements = 2 * 4 * 10
    assert row.flops == (3 + 2 + 2) * elements
    assert row.bytes_read == (elements + 2 * 10) * F32
    # y, and a mean and an inverse std per normalised row (2 * 4 rows).
    assert row.bytes_written == (elements + 2 * (2 * 4)) * F32


def test_layer_norm_without_affine() -> None:
    row = only_row(
        layerprof.analyze(Single(nn.LayerNorm(10, elementwise_affine=False)), input_size=(2, 4, 10))
    )
    assert row.flops == (3 + 2) * 2 * 4 * 10


def test_group_norm() -> None:
    row = only_row(layerprof.analyze(Single(nn.GroupNorm(2, 4)), input_size=(2, 4, 6, 6)))
    assert row.flops == (3 + 2 + 2) * 2 * 4 * 6 * 6


# -- pooling ----------------------------------------------------------------------------------------------
# (layer, input size, FLOPs: K - 1 per max window, K per average window, bytes written)
POOLS = [
    pytest.param(
        nn.MaxPool2d(3, stride=2, padding=1), (2, 4, 10, 10),
        2 * 4 * 5 * 5 * (9 - 1), 2 * 4 * 5 * 5 * (F32 + 8), id="max2d-k3-s2",  # values + int64 indices
    ),
    pytest.param(
        nn.MaxPool1d(2), (2, 3, 8), 2 * 3 * 4 * (2 - 1), 2 * 3 * 4 * (F32 + 8), id="max1d-k2",
    ),
    pytest.param(
        nn.MaxPool3d(2), (1, 2, 4, 4, 4), 1 * 2 * 8 * (8 - 1), 1 * 2 * 8 * (F32 + 8), id="max3d-k2",
    ),
    pytest.param(
        nn.AvgPool2d(3, stride=2, padding=1), (2, 4, 10, 10), 2 * 4 * 5 * 5 * 9, 2 * 4 * 5 * 5 * F32,
        id="avg2d-k3-s2",
    ),
    pytest.param(nn.AvgPool1d(4), (1, 2, 12), 1 * 2 * 3 * 4, 1 * 2 * 3 * F32, id="avg1d-k4"),
    # Global average pooling runs as a mean: one add per element (K - 1 per window) and one divide.
    pytest.param(nn.AdaptiveAvgPool2d(1), (2, 4, 10, 10), 2 * 4 * 100, 2 * 4 * F32, id="adaptive-avg-1"),
    # Adaptive 10 -> 3: windows [0, 4), [3, 7), [6, 10): 4 + 4 + 4 = 12 per dimension.
    pytest.param(
        nn.AdaptiveAvgPool2d(3), (2, 4, 10, 10), 2 * 4 * 12 * 12, 2 * 4 * 9 * F32, id="adaptive-avg-3",
    ),
    pytest.param(
        nn.AdaptiveMaxPool2d(3), (2, 4, 10, 10), 2 * 4 * 12 * 12 - 2 * 4 * 9, 2 * 4 * 9 * (F32 + 8),
        id="adaptive-max-3",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("layer", "input_size", "flops", "written"), POOLS)
def test_pooling(layer: nn.Module, input_size: tuple[int, ...], flops: int, written: int) -> None:
    row = only_row(layerprof.analyze(Single(layer), input_size=input_size))
    assert row.flops == row.vector_flops == flops
    assert row.bytes_read == math.prod(input_size) * F32
    assert row.bytes_written == written


def test_max_pool_kernel_size_is_reported() -> None:
    row = only_row(layerprof.analyze(Single(nn.MaxPool2d(3, stride=2)), input_size=(1, 1, 9, 9)))
    assert row.kernel_size == (3, 3)


# -- interpolation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "per_element"),
    [
        pytest.param("nearest", 0, id="nearest-0"),
        pytest.param("bilinear", 2 * 4 - 1, id="bilinear-7"),
        pytest.param("bicubic", 2 * 16 - 1, id="bicubic-31"),
    ],
)
def test_interpolation(mode: str, per_element: int) -> None:
    model = op_model(lambda x: F.interpolate(x, scale_factor=2, mode=mode))
    row = only_row(layerprof.analyze(model, input_size=(2, 4, 10, 10)))
    outputs = 2 * 4 * 20 * 20
    assert row.flops == per_element * outputs
    assert row.bytes_read == 2 * 4 * 10 * 10 * F32
    assert row.bytes_written == outputs * F32


def test_trilinear_interpolation() -> None:
    model = op_model(lambda x: F.interpolate(x, scale_factor=2, mode="trilinear"))
    row = only_row(layerprof.analyze(model, input_size=(1, 2, 3, 3, 3)))
    assert row.flops == (2 * 8 - 1) * 1 * 2 * 6 * 6 * 6


# -- elementwise: the residual add and in-place ReLU -------------------------------------------------------


def test_residual_add_is_a_glue_row() -> None:
    report = layerprof.analyze(ResidualNet(4), input_size=(1, 4, 8, 8))
    assert [r.name for r in report.layers] == ["block.conv", "block.relu", "block/add"]
    add = report.row("block/add")
    elements = 1 * 4 * 8 * 8
    assert add.kind == "add"
    assert add.depth == 2
    assert add.flops == elements
    assert add.bytes_read == 2 * elements * F32  # relu(conv(x)) and x
    assert add.bytes_written == elements * F32


def test_in_place_relu_reads_and_writes_the_same_tensor() -> None:
    row = only_row(layerprof.analyze(Single(nn.ReLU(inplace=True)), input_size=(2, 4, 10, 10)))
    elements = 2 * 4 * 10 * 10
    assert row.flops == 1 * elements
    assert row.bytes_read == row.bytes_written == elements * F32


def test_hardswish() -> None:
    row = only_row(layerprof.analyze(Single(nn.Hardswish()), input_size=(2, 4, 5, 5)))
    assert row.flops == 5 * 2 * 4 * 5 * 5


def test_softmax() -> None:
    row = only_row(layerprof.analyze(Single(nn.Softmax(dim=-1)), input_size=(3, 7)))
    assert row.flops == 5 * 3 * 7


def test_shared_module_is_one_row_with_calls() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.act(x) - 1)  # type: ignore[no-any-return]

    report = layerprof.analyze(Twice(), input_size=(2, 5))
    act = report.row("act")
    assert act.calls == 2
    assert act.flops == 2 * (2 * 5)
    assert report.row("(root)/sub").flops == 2 * 5


def test_weights_a_container_uses_without_calling_their_module_are_counted() -> None:
    class UsesWeights(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 3)  # never called: its weights are used functionally
            self.unused = nn.Linear(4, 5)  # never called, never used
            self.act = nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(F.linear(x, self.proj.weight, self.proj.bias))  # type: ignore[no-any-return]

    report = layerprof.analyze(UsesWeights(), input_size=(2, 4))
    assert [r.name for r in report.layers] == ["(root)/addmm", "act"]
    glue = report.row("(root)/addmm")
    assert glue.matrix_flops == 2 * 2 * 3 * 4
    assert glue.params == 4 * 3 + 3  # proj's weight and bias; not the unused layer's
    assert report.total.params == 4 * 3 + 3


# -- dtypes -----------------------------------------------------------------------------------------------


def test_fp16_and_bf16_bytes_are_exactly_half() -> None:
    model = ConvBnReluNet().eval()
    fp32 = layerprof.analyze(model, input_size=(2, 3, 16, 16))
    fp16 = layerprof.analyze(model, input_size=(2, 3, 16, 16), dtype=torch.float16)
    bf16 = layerprof.analyze(model, input_size=(2, 3, 16, 16), dtype="bf16")
    assert [r.name for r in fp32.layers] == [r.name for r in fp16.layers] == [r.name for r in bf16.layers]
    for r32, r16, rb16 in zip(fp32.layers, fp16.layers, bf16.layers, strict=True):
        assert r16.flops == rb16.flops == r32.flops, r32.name
        assert r16.bytes_read * 2 == r32.bytes_read, r32.name
        assert r16.bytes_written * 2 == r32.bytes_written, r32.name
        assert (rb16.bytes_read, rb16.bytes_written) == (r16.bytes_read, r16.bytes_written), r32.name
        assert (r32.dtype, r16.dtype, rb16.dtype) == ("float32", "float16", "bfloat16")
    assert fp16.total.bytes_total * 2 == fp32.total.bytes_total
    conv = fp16.row("conv")
    assert conv.bytes_written == 2 * 8 * 16 * 16 * 2  # fp16: 2 bytes per element


def test_fp16_on_real_tensors() -> None:
    layer = nn.Linear(8, 4)
    fp32 = only_row(layerprof.analyze(Single(layer), torch.randn(3, 8)))
    fp16 = only_row(layerprof.analyze(Single(nn.Linear(8, 4).half()), torch.randn(3, 8).half()))
    assert fp16.bytes_read == (3 * 8 + 4 * 8 + 4) * 2
    assert fp16.bytes_read * 2 == fp32.bytes_read
    assert fp16.flops == fp32.flops


# -- rows add up to the totals, and every op lands in some row -------------------------------------------

SUMMED = ("flops", "matrix_flops", "macs", "bytes_read", "bytes_written", "params")


def _models() -> list[Any]:
    return [
        pytest.param(lambda: layerprof.demo_model(), (1, 3, 128, 128), id="DemoNet"),
        pytest.param(lambda: torchvision.models.resnet18().eval(), (1, 3, 224, 224), id="resnet18"),
        pytest.param(
            lambda: torchvision.models.mobilenet_v3_small().eval(), (1, 3, 224, 224), id="mobilenet_v3"
        ),
        pytest.param(lambda: torchvision.models.vit_b_32().eval(), (1, 3, 224, 224), id="vit_b_32"),
        pytest.param(lambda: ResidualNet(4), (1, 4, 8, 8), id="ResidualNet"),
    ]


def _build(factory: Callable[[], nn.Module]) -> nn.Module:
    with torch.device("meta"):
        return factory()


@pytest.mark.parametrize(("factory", "size"), _models())
def test_rows_sum_to_the_totals(factory: Callable[[], nn.Module], size: tuple[int, ...]) -> None:
    model = _build(factory)
    report = layerprof.analyze(model, input_size=size)
    for field in SUMMED:
        assert sum(getattr(r, field) for r in report.layers) == getattr(report.total, field), field
    assert report.total.params == params_of(model)
    assert report.total.intensity == report.total.flops / report.total.bytes_total


class PlainCount(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """An independent count of a whole forward: the same formulas, bytes by DESIGN.md, no modules."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.flops = 0
        self.matrix_flops = 0
        self.bytes_read = 0
        self.bytes_written = 0

    def __torch_dispatch__(
        self, func: OpOverload, types: Any, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if is_free(func):
            return out
        formula = FORMULAS.get(func)
        cost = formula(tuple(args), kwargs, out) if formula is not None else None
        if cost is not None:
            self.flops += cost.total
            self.matrix_flops += cost.matrix
        skip = WRITE_ONLY_DESTINATION.get(func)
        read_from = list(args if skip is None else args[:skip] + args[skip + 1 :])
        out_names = {a.name for a in func._schema.arguments if a.is_out}
        read_from += [v for k, v in kwargs.items() if k not in out_names]
        self.bytes_read += sum(_nbytes(t) for t in _distinct(read_from))
        outputs = (
            out[: cost.written_outputs] if cost is not None and cost.written_outputs is not None else [out]
        )
        self.bytes_written += sum(_nbytes(t) for t in _distinct(outputs))
        return out


def _distinct(values: Sequence[Any]) -> list[torch.Tensor]:
    found: dict[int, torch.Tensor] = {}
    for value in values:
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, torch.Tensor):
                found.setdefault(id(item), item)
    return list(found.values())


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


@pytest.mark.parametrize(
    ("factory", "size"),
    [
        pytest.param(lambda: layerprof.demo_model(), (1, 3, 128, 128), id="DemoNet"),
        pytest.param(lambda: torchvision.models.resnet18().eval(), (1, 3, 224, 224), id="resnet18"),
    ],
)
def test_every_op_lands_in_some_row(factory: Callable[[], nn.Module], size: tuple[int, ...]) -> None:
    torch.manual_seed(0)
    model = factory()
    x = torch.randn(size)
    report = layerprof.analyze(model, x)
    plain = PlainCount()
    with torch.no_grad(), plain:
        model(x)
    assert report.total.flops == plain.flops
    assert report.total.matrix_flops == plain.matrix_flops
    assert report.total.bytes_read == plain.bytes_read
    assert report.total.bytes_written == plain.bytes_written
    assert report.unsupported == {}


def test_demonet_totals_by_hand() -> None:
    report = layerprof.analyze(layerprof.demo_model(), input_size=(1, 3, 128, 128))
    w = 32
    matrix = 2 * (
        w * 64 * 64 * 3 * 9  # stem conv, stride 2: 128 -> 64
        + 2 * w * 64 * 64 * w * 9  # the residual block's two 3x3 convs
        + w * 16 * 16 * 1 * 9  # depthwise 3x3, stride 2 after the 2x2 max pool: 32 -> 16
        + 2 * w * 16 * 16 * w * 1  # pointwise 32 -> 64
        + w * 16 * 16 * 2 * w * 1  # lateral 64 -> 32
        + 2 * w * 32 * 32 * 2 * w * 25  # fuse 5x5 on the 32 x 32 concatenation
        + 1 * 10 * 2 * w  # fc
    )
    assert report.total.matrix_flops == matrix  # = 370_033_920
    vector = (
        (2 + 1) * w * 64 * 64  # stem: folded batch norm (2), ReLU (1)
        + (2 + 2 * 1 + 2 + 1) * w * 64 * 64  # res: bn1, relu called twice, bn2, the glue add
        + w * 32 * 32 * (4 - 1)  # 2x2 max pool
        + 2 * w * 16 * 16
        + 2 * 2 * w * 16 * 16  # dws.bn1, dws.bn2
        + 5 * (w * 16 * 16 + 2 * w * 16 * 16)  # hardswish, shared by both halves of dws
        + w * 16 * 16  # lateral's bias
        + 7 * w * 32 * 32  # bilinear upsampling to 32 x 32
        + 2 * w * 32 * 32  # fuse's bias
        + 2 * w * 32 * 32  # global average pool (a mean)
        + 10  # fc's bias
    )
    assert report.total.vector_flops == vector  # = 1_949_706
    assert report.total.flops == matrix + vector


def test_int8_audit_prices_one_byte_per_element_at_the_int8_peak() -> None:
    # int8 inference runs in a 1-byte float on meta: the FLOPs of fp32, a quarter of its bytes.
    model = Single(nn.Conv2d(16, 32, 3, padding=1, bias=False))
    size = (1, 16, 28, 28)
    int8 = layerprof.analyze(model, input_size=size, dtype=torch.int8, target="a100-40gb")
    fp32 = layerprof.analyze(model, input_size=size)
    row8, row32 = only_row(int8), only_row(fp32)
    assert row8.dtype == "int8"
    assert row8.flops == row32.flops == 2 * 32 * 28 * 28 * 16 * 9
    assert row8.bytes_read == 16 * 28 * 28 + 32 * 16 * 9  # input + weight, 1 byte each
    assert row8.bytes_written == 32 * 28 * 28
    device = layerprof.get_device("a100-40gb")
    compute_s = row8.matrix_flops / device.peak_flops_per_s("int8", "matrix")
    memory_s = row8.bytes_total / device.memory_bandwidth_bytes_per_s
    dram_only = layerprof.analyze(
        model, input_size=size, dtype=torch.int8, target="a100-40gb", cache_model=False
    )
    assert only_row(dram_only).roofline["a100-40gb"].roofline_time_ms == pytest.approx(
        max(compute_s, memory_s) * 1e3
    )
    # Cache-aware: the bytes split over L2 and DRAM, and the one kernel's 2 us launch floor binds it.
    verdict = row8.roofline["a100-40gb"]
    l2_s = verdict.bytes_by_level["L2"] / device.cache_levels[0].bandwidth_bytes_per_s
    dram_s = verdict.bytes_by_level["DRAM"] / device.memory_bandwidth_bytes_per_s
    floor_s = 1 * (device.launch_overhead_s or 0.0)
    assert verdict.roofline_time_ms == pytest.approx(max(compute_s, l2_s, dram_s, floor_s) * 1e3)
    assert verdict.bound == "overhead"


def test_backward_counts_a_training_step_on_meta() -> None:
    # Conv2d(3, 8, 3) on 2x3x10x10 -> 2x8x8x8, then Linear(8*8*8, 4); a stand-in loss sums the output.
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 8 * 8, 4))
    report = layerprof.analyze(model, input_size=(2, 3, 10, 10), backward=True)
    conv_macs = 2 * 8 * 8 * 8 * 3 * 9  # N * C_out * H_out * W_out * C_in * k * k = 27,648
    linear_macs = 2 * 512 * 4  # 4,096
    assert report.row("0").matrix_flops == 2 * conv_macs
    assert report.row("2").matrix_flops == 2 * linear_macs
    # The first layer's input needs no gradient: only the weight gradient (ratio 1); the linear layer
    # computes both its input gradient and its weight gradient (ratio 2).
    assert report.row("0", phase="backward").matrix_flops == 2 * conv_macs
    assert report.row("2", phase="backward").matrix_flops == 2 * 2 * linear_macs
    assert [r.phase for r in report.layers] == ["forward"] * 3 + ["backward"] * len(report.backward)
    assert report.total.flops == sum(r.flops for r in report.layers)
    assert all(p.grad is None for p in model.parameters())  # the user's parameters saw no gradient


def test_backward_matrix_flops_match_flop_counter_on_resnet18() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    model = torchvision.models.resnet18(weights=None).train()
    x = torch.randn(2, 3, 64, 64)
    report = layerprof.analyze(model, x, backward=True)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    model.zero_grad(set_to_none=True)
    # resnet18 has no grouped convolution, where torch's counter ignores groups in the weight gradient.
    assert report.total.matrix_flops == counter.get_total_flops()


def test_tf32_follows_torchs_switch_for_each_kind_of_matrix_work() -> None:
    # cuDNN's switch (on by default) governs convolutions, cuBLAS's (off by default) GEMMs.
    a100 = layerprof.get_device("a100-40gb")
    with restored_torch_flags():
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False
        model = nn.Sequential(
            nn.Conv2d(64, 64, 3, bias=False), nn.Flatten(), nn.Linear(64 * 6 * 6, 4096, bias=False)
        )
        # DRAM-only verdicts: the compute term is what this test is about, not the cache model.
        report = layerprof.analyze(model, input_size=(64, 64, 8, 8), target=a100, cache_model=False)
        conv, linear = report.row("0"), report.row("2")
        conv_s = conv.matrix_flops / a100.peak_flops_per_s("float32", "matrix", allow_tf32=True)
        linear_s = linear.matrix_flops / a100.peak_flops_per_s("float32", "matrix")  # no TF32
        memory_conv = conv.bytes_total / a100.memory_bandwidth_bytes_per_s
        memory_linear = linear.bytes_total / a100.memory_bandwidth_bytes_per_s
        assert conv.roofline_time_ms == pytest.approx(max(conv_s, memory_conv) * 1e3)
        assert linear.roofline_time_ms == pytest.approx(max(linear_s, memory_linear) * 1e3)


def test_float64_rows_are_priced_at_a_float64_peak() -> None:
    device = layerprof.DeviceSpec(
        name="fp64-device",
        full_name="a device with a slow float64 unit",
        kind="cpu",
        memory_bandwidth_bytes_per_s=1e11,
        matrix_peak_flops_per_s={"float32": 1e13, "float64": 1e11},
        vector_peak_flops_per_s={"float32": 1e12, "float64": 1e10},
    )
    model = nn.Sequential(nn.Linear(1024, 1024, bias=False)).double()
    report = layerprof.analyze(model, torch.randn(1024, 1024, dtype=torch.float64), target=device)
    row = report.row("0")
    assert row.dtype == "float64"
    compute_s = 2 * 1024 * 1024 * 1024 / 1e11  # 2 * M * N * K at the float64 matrix peak
    assert row.roofline_time_ms == pytest.approx(compute_s * 1e3)


def test_a_broadcast_input_is_read_once_not_once_per_copy() -> None:
    class Token(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.token = nn.Parameter(torch.zeros(1, 1, 8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)

    report = layerprof.analyze(Token(), input_size=(256, 5, 8))
    (row,) = report.layers
    # reads x (256 * 5 * 8) and the token's 8 elements once (expanded 256 times with stride 0);
    # writes 256 * 6 * 8.
    assert row.bytes_read == (256 * 5 * 8 + 8) * 4
    assert row.bytes_written == 256 * 6 * 8 * 4
