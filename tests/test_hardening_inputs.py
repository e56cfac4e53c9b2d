"""Bad input gets one clear line (issue #12, API part): every refusal is a LayerprofError naming the
value, typed input sizes make index and mask inputs, and complex arithmetic is counted in real FLOPs.

Each test here failed before its fix: a raw exception, a wrong blame, a silent acceptance or a
real count of complex work.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import layerprof
from layerprof.core.validate import as_int
from layerprof.errors import (
    ForwardError,
    InvalidArgumentError,
    InvalidModelError,
    LayerprofError,
)
from layerprof.roofline.verdicts import priced_dtype
from layerprof.walk.inputs import TensorSpec, sizes_to_spec


def _conv() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()


def _x() -> torch.Tensor:
    return torch.randn(1, 3, 8, 8)


# -- 1. models and None -------------------------------------------------------------------------


def _scripted() -> nn.Module:
    return torch.jit.script(_conv())  # type: ignore[no-any-return]


def _traced() -> nn.Module:
    return torch.jit.trace(_conv(), _x())  # type: ignore[no-any-return]


@pytest.mark.parametrize("make", [_scripted, _traced], ids=["script", "trace"])
@pytest.mark.parametrize(
    "call",
    [
        lambda m: layerprof.analyze(m, input_size=(1, 3, 8, 8)),
        lambda m: layerprof.analyze(m, _x()),
        lambda m: layerprof.profile(m, _x(), target=None, warmup=0, repeat=1),
        lambda m: layerprof.Profiler(m, target=None),
    ],
    ids=["analyze-size", "analyze-inputs", "profile", "Profiler"],
)
def test_a_torchscript_module_is_refused_with_the_way_out(make: Any, call: Any) -> None:
    with pytest.raises(InvalidModelError) as caught:
        call(make())
    message = str(caught.value)
    assert "TorchScript" in message
    assert "eager" in message and "torch.export" in message


def test_analyze_without_a_model_names_none() -> None:
    with pytest.raises(InvalidModelError, match="NoneType"):
        layerprof.analyze(None, input_size=(1, 3, 8, 8))  # type: ignore[arg-type]


def test_analyze_with_neither_inputs_nor_input_size_says_so() -> None:
    with pytest.raises(InvalidArgumentError, match="neither"):
        layerprof.analyze(_conv())
    with pytest.raises(InvalidArgumentError, match="not both"):
        layerprof.analyze(_conv(), _x(), input_size=(1, 3, 8, 8))


def test_none_where_a_default_means_none_is_accepted() -> None:
    report = layerprof.analyze(_conv(), input_size=(1, 3, 8, 8), dtype=None, target=None)
    assert report.total.flops > 0
    assert report.targets == ()


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda r: layerprof.load_devices(None), "None"),  # type: ignore[arg-type]
        (lambda r: layerprof.load_devices(5), "5"),  # type: ignore[arg-type]
        (lambda r: layerprof.assert_within(None, max_gflops=1.0), "NoneType"),  # type: ignore[arg-type]
        (lambda r: r.to_csv(5), "5"),
        (lambda r: r.to_json(3.5), "3.5"),
        (lambda r: r.plot_roofline(None), "None"),
    ],
    ids=[
        "load_devices-None",
        "load_devices-int",
        "assert_within-None",
        "to_csv-int",
        "to_json-float",
        "plot-None",
    ],
)
def test_other_public_functions_refuse_a_wrong_kind_naming_it(call: Any, named: str) -> None:
    report = layerprof.analyze(_conv(), input_size=(1, 3, 8, 8), target="t4")
    with pytest.raises(LayerprofError, match=named):
        call(report)


# -- 2. conv_cost -------------------------------------------------------------------------------

BASE: dict[str, Any] = {"in_channels": 4, "out_channels": 4, "input_size": (8, 8), "kernel_size": 3}


@pytest.mark.parametrize("field", ["bias", "transposed"])
@pytest.mark.parametrize("value", ["no", 1, 0, None, np.bool_(True)])
def test_conv_cost_flags_must_be_bools(field: str, value: object) -> None:
    with pytest.raises(InvalidArgumentError, match=f"{field} must be True or False"):
        layerprof.conv_cost(**BASE, **{field: value})


@pytest.mark.parametrize(
    ("stride", "dilation", "output_padding"),
    [(1, 1, 1), (2, 2, 2), (2, 1, 2), ((2, 1), 1, (1, 1))],
)
def test_conv_cost_refuses_the_output_padding_torch_refuses(
    stride: Any, dilation: Any, output_padding: Any
) -> None:
    with pytest.raises(InvalidArgumentError, match="smaller than either stride or dilation"):
        layerprof.conv_cost(
            **BASE, stride=stride, dilation=dilation, output_padding=output_padding, transposed=True
        )


@pytest.mark.parametrize(("stride", "dilation", "output_padding"), [(2, 1, 1), (1, 2, 1), (3, 1, 2)])
def test_conv_cost_takes_the_output_padding_torch_takes(
    stride: int, dilation: int, output_padding: int
) -> None:
    cost = layerprof.conv_cost(
        **BASE, stride=stride, dilation=dilation, output_padding=output_padding, transposed=True
    )
    x = torch.empty(1, 4, 8, 8, device="meta")
    w = torch.empty(4, 4, 3, 3, device="meta")
    y = torch.nn.functional.conv_transpose2d(
        x, w, stride=stride, dilation=dilation, output_padding=output_padding
    )
    assert cost.output_size == tuple(y.shape[2:])


def test_conv_cost_refuses_output_padding_on_a_forward_convolution() -> None:
    with pytest.raises(InvalidArgumentError, match="transposed"):
        layerprof.conv_cost(**BASE, stride=2, output_padding=1)


def test_conv_cost_takes_numpy_integers_everywhere_and_returns_plain_ints() -> None:
    cost = layerprof.conv_cost(
        in_channels=np.int64(4),
        out_channels=np.int32(8),
        input_size=(np.int64(8), np.int16(8)),
        kernel_size=np.int64(3),
        stride=np.int8(1),
        padding=(np.int64(1), 1),
        dilation=np.uint8(1),
        groups=np.int64(2),
        batch=np.int64(2),
    )
    plain = layerprof.conv_cost(4, 8, (8, 8), 3, padding=1, groups=2, batch=2)
    assert cost == plain
    for name in ("flops", "matrix_flops", "macs", "params", "bytes_read", "bytes_written"):
        assert type(getattr(cost, name)) is int, name
    assert type(cost.intensity) is float


def test_conv_cost_refuses_a_numpy_array_with_the_value_named() -> None:
    with pytest.raises(InvalidArgumentError, match="input_size"):
        layerprof.conv_cost(4, 4, np.array([8, 8]), 3)
    assert as_int(np.array([8, 8])) is None
    assert as_int(np.int64(3)) == 3


def test_conv_cost_refuses_a_complex_dtype() -> None:
    with pytest.raises(InvalidArgumentError, match="complex"):
        layerprof.conv_cost(**BASE, dtype=torch.complex64)


# -- 3. typed input sizes -----------------------------------------------------------------------


class EmbedLinear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.head = nn.Linear(16, 8)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids))  # type: ignore[no-any-return]


class EmbedConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.conv = nn.Conv1d(16, 8, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.conv(self.embed(ids).transpose(1, 2))  # type: ignore[no-any-return]


class Masked(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(100, 16)
        self.head = nn.Linear(16, 8)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(ids) * mask.unsqueeze(-1))  # type: ignore[no-any-return]


def _check_embed_linear(report: layerprof.Report) -> None:
    tokens, vocab, width, classes = 8 * 128, 100, 16, 8
    embed, head = report.row("embed"), report.row("head")
    # The embedding gathers: no arithmetic; it reads the indices (int64) and the table, writes rows.
    assert (embed.flops, embed.matrix_flops) == (0, 0)
    assert embed.bytes_read == tokens * 8 + vocab * width * 4
    assert embed.bytes_written == tokens * width * 4
    assert embed.params == vocab * width
    # The linear layer: one (1024 x 16) @ (16 x 8) product and a bias add per output.
    assert head.matrix_flops == 2 * tokens * width * classes
    assert head.flops == 2 * tokens * width * classes + tokens * classes
    assert head.bytes_read == (tokens * width + width * classes + classes) * 4
    assert head.bytes_written == tokens * classes * 4
    assert report.total.flops == head.flops
    assert head.dtype == "float32"


def test_an_embedding_counts_with_an_integer_dtype() -> None:
    _check_embed_linear(layerprof.analyze(EmbedLinear(), input_size=(8, 128), dtype=torch.long))


@pytest.mark.parametrize(
    ("size", "dtype"),
    [
        (((8, 128), torch.long), None),
        (((8, 128), "int64"), None),
        ([((8, 128), torch.int64)], None),
        ((np.int64(8), np.int32(128)), torch.long),
        ([(np.int64(8), np.int32(128))], "int64"),
        ({"ids": ((8, 128), torch.long)}, torch.float32),
    ],
    ids=["pair", "pair-name", "list-of-pairs", "numpy-dims", "numpy-dims-list", "keyword"],
)
def test_an_embedding_counts_with_a_typed_size(size: Any, dtype: Any) -> None:
    _check_embed_linear(layerprof.analyze(EmbedLinear(), input_size=size, dtype=dtype))


def test_an_embedding_counts_with_a_typed_size_on_real_inputs_too() -> None:
    _check_embed_linear(layerprof.analyze(EmbedLinear(), torch.randint(0, 100, (8, 128))))


def test_keyword_inputs_with_their_own_dtypes() -> None:
    report = layerprof.analyze(
        Masked(), input_size={"ids": ((8, 128), torch.long), "mask": ((8, 128), torch.bool)}
    )
    tokens = 8 * 128
    mask_row = report.row("(root)/mul")
    assert mask_row.flops == tokens * 16
    assert report.row("head").matrix_flops == 2 * tokens * 16 * 8


def test_typed_sizes_make_meta_tensors_of_their_dtype() -> None:
    spec = sizes_to_spec({"ids": ((2, 5), torch.long), "x": (2, 3)}, torch.float16)
    assert spec.positional == ()
    assert dict(spec.keyword) == {
        "ids": TensorSpec((2, 5), torch.long, "meta"),
        "x": TensorSpec((2, 3), torch.float16, "meta"),
    }
    args, kwargs = spec.make("meta")
    assert args == ()
    assert kwargs["ids"].device.type == "meta" and kwargs["ids"].dtype == torch.long
    assert kwargs["x"].dtype == torch.float16
    several = sizes_to_spec([((2, 5), torch.bool), (2, 3)], torch.float32)
    assert [s.dtype for s in several.positional if s is not None] == [torch.bool, torch.float32]


@pytest.mark.parametrize(
    ("size", "named"),
    [
        (((8, 128), "nonsense"), "'nonsense'"),
        (((8, 128), torch.qint8), "input_size's dtype torch.qint8"),
        ({}, "{}"),
        ({1: (8, 128)}, "{1: (8, 128)}"),
        ({"ids": None}, "input_size['ids']"),
        ({"ids": ((8, 128), torch.long, 3)}, "input_size['ids']"),
        ([((8, 0), torch.long)], "input_size[0] (8, 0)"),
        (((8, 128.0), torch.long), "(8, 128.0)"),
    ],
    ids=[
        "unknown-dtype",
        "quantized",
        "empty-dict",
        "int-key",
        "none-value",
        "triple",
        "zero-dim",
        "float-dim",
    ],
)
def test_bad_typed_sizes_are_refused_naming_the_value(size: Any, named: str) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        layerprof.analyze(EmbedLinear(), input_size=size)
    assert named in str(caught.value)


def test_a_quantized_dtype_is_refused_for_the_inputs() -> None:
    with pytest.raises(InvalidArgumentError, match=r"dtype torch\.qint8 cannot make an input"):
        layerprof.analyze(EmbedLinear(), input_size=(8, 128), dtype=torch.qint8)


def test_float_indices_blame_the_embedding_not_a_later_convolution() -> None:
    with pytest.raises(LayerprofError) as caught:
        layerprof.analyze(EmbedConv(), input_size=(8, 128))
    message = str(caught.value)
    assert "rank" not in message
    assert "embed" in message and "Embedding" in message
    assert "indices" in message  # torch's own words: the real cause
    assert "torch.long" in message  # the way out


def test_a_wrong_rank_still_blames_the_first_convolution_with_the_cause() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        layerprof.analyze(_conv(), input_size=(1, 3, 8))
    message = str(caught.value)
    assert "rank 3" in message and "expects rank 4" in message
    assert "failed in layer 0: RuntimeError" in message  # torch's words follow


class _Inner(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise ValueError("the real cause: widths 3 and 5 differ")


class _Wrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = _Inner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            return self.inner(x)  # type: ignore[no-any-return]
        except ValueError as error:
            raise RuntimeError("block 3 failed") from error


@pytest.mark.parametrize("meta", [True, False])
def test_a_failing_forward_says_the_innermost_cause(meta: bool) -> None:
    with pytest.raises(ForwardError) as caught:
        if meta:
            layerprof.analyze(_Wrapper(), input_size=(1, 3))
        else:
            layerprof.analyze(_Wrapper(), torch.randn(1, 3))
    message = str(caught.value)
    assert "ValueError: the real cause: widths 3 and 5 differ" in message
    assert "block 3 failed" in message
    assert "inner" in message


class _FailsBeforeTheConvolution(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = _Inner()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.stem(x))  # type: ignore[no-any-return]


def test_a_layer_failing_before_the_first_convolution_is_not_blamed_on_the_rank() -> None:
    with pytest.raises(ForwardError) as caught:
        layerprof.analyze(_FailsBeforeTheConvolution(), input_size=(8, 128))
    assert "rank" not in str(caught.value)
    assert "the real cause" in str(caught.value)


def test_integer_inputs_to_a_convolution_say_which_dtype_was_made() -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        layerprof.analyze(_conv(), input_size=(1, 3, 8, 8), dtype=torch.long)
    message = str(caught.value)
    assert "torch.int64" in message and "computes in floating point" in message


# -- 4. complex arithmetic ----------------------------------------------------------------------


class _Matmul(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ z


class _Multiply(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z * z


class _Add(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + z


class _MultiplyAdd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.multiply, self.add = _Multiply(), _Add()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.add(self.multiply(z)) - z


@pytest.mark.parametrize("n", [4, 7])
@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_a_complex_matmul_costs_8_n_cubed(n: int, dtype: torch.dtype) -> None:
    # A complex multiply-accumulate is 4 real multiplies and 4 real adds: 8 FLOPs, 4x a real MAC's 2.
    for report in (
        layerprof.analyze(_Matmul(), torch.randn(n, n, dtype=dtype)),
        layerprof.analyze(_Matmul(), input_size=((n, n), dtype)),
    ):
        assert report.total.matrix_flops == 8 * n**3
        assert report.total.flops == 8 * n**3
        assert report.total.macs == 4 * n**3
        assert report.row("(root)").dtype == str(dtype).removeprefix("torch.")


def test_complex_elementwise_multiply_costs_6_and_add_2() -> None:
    n = 5
    report = layerprof.analyze(_MultiplyAdd(), input_size=((n, n), torch.complex64))
    assert report.row("multiply").flops == 6 * n * n  # 4 real multiplies and 2 real adds each
    assert report.row("add").flops == 2 * n * n  # 2 real adds each
    assert report.row("(root)/sub").flops == 2 * n * n
    assert report.total.flops == 10 * n * n
    assert report.total.matrix_flops == 0
    assert report.unsupported == {}


def test_a_complex_linear_layer_counts_its_product_and_its_bias() -> None:
    m, k, n = 6, 5, 3
    layer = nn.Linear(k, n, dtype=torch.complex64)
    report = layerprof.analyze(layer, torch.randn(m, k, dtype=torch.complex64))
    assert report.total.matrix_flops == 8 * m * n * k
    assert report.total.flops == 8 * m * n * k + 2 * m * n  # a complex add is 2 real adds


def test_complex_arithmetic_without_a_rule_is_listed_unsupported_not_counted_as_real() -> None:
    class Exp(nn.Module):
        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return torch.exp(z)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = layerprof.analyze(Exp(), input_size=((4, 4), torch.complex64))
    assert report.total.flops == 0
    assert report.unsupported == {"aten.exp (complex)": 1}
    assert any("aten.exp (complex)" in str(w.message) for w in caught)
    assert report.total.bytes_read == 16 * 8  # the bytes are still counted


def test_a_complex_row_says_its_dtype_and_is_priced_at_its_real_parts_peak() -> None:
    report = layerprof.analyze(_Matmul(), input_size=((8, 8), torch.complex64), target="t4")
    assert report.row("(root)").dtype == "complex64"
    assert priced_dtype(report.row("(root)")) == "float32"
    assert priced_dtype(replace(report.row("(root)"), dtype="complex128")) == "float64"


def test_real_models_count_as_before() -> None:
    report = layerprof.analyze(_conv(), input_size=(1, 3, 8, 8))
    assert report.total.matrix_flops == 2 * 4 * 6 * 6 * 3 * 9
