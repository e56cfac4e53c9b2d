"""layerprof.sweep: a convolution's what-ifs are the counter's own figures, and the seed's claim holds."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import layerprof
from layerprof.analysis.whatif import conv_cost
from layerprof.roofline import model as roofline

TARGETS = ["gtx1080", "t4", "h100-sxm"]


def _real_analyze(params: layerprof.SweepPoint, cache_model: bool) -> layerprof.LayerRow:
    """analyze of the same convolution, built on the CPU and run on a real input (not the sweep's
    meta path): what a user profiling that one layer would get."""
    p = params.params
    padding = "same" if p.padding == "same" else p.padding
    torch.manual_seed(0)
    conv = nn.Conv2d(
        p.in_channels, p.out_channels, p.kernel_size, stride=p.stride, padding=padding,
        dilation=p.dilation, groups=p.groups, bias=p.bias,
    )  # fmt: skip
    x = torch.randn(p.batch, p.in_channels, *p.input_size)
    report = layerprof.analyze(conv, x, target=TARGETS, cache_model=cache_model)
    (row,) = report.layers
    return row


CASES = {
    "kernels": {"kernel_size": [1, 3, 5, 7], "channels": 16, "input_size": 20},
    "groups-stride": {"kernel_size": [3, 5], "channels": 32, "groups": [1, 4, 32], "stride": 2, "padding": 1},
    "in-out-batch": {
        "kernel_size": 3,
        "in_channels": [8, 24],
        "out_channels": 16,
        "batch": [1, 3],
        "bias": True,
    },
    "rectangular": {
        "kernel_size": [(1, 7), (7, 1)],
        "channels": 8,
        "input_size": (12, 30),
        "dilation": [1, 2],
    },
}


@pytest.mark.parametrize("cache_model", [True, False], ids=["cache", "dram-only"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_each_point_is_what_analyze_says_of_that_convolution(case: str, cache_model: bool) -> None:
    result = layerprof.sweep(**CASES[case], targets=TARGETS, cache_model=cache_model)  # type: ignore[arg-type]
    assert len(result.points) > 1
    for point in result.points:
        row = _real_analyze(point, cache_model)
        assert (point.flops, point.matrix_flops) == (row.flops, row.matrix_flops)
        assert (point.bytes_read, point.bytes_written) == (row.bytes_read, row.bytes_written)
        assert point.intensity == row.intensity
        assert point.output_size == row.output_shapes[0][2:]
        for target in TARGETS:
            mine, theirs = point.verdicts[target], row.roofline[target]
            assert dict(mine.bytes_by_level) == dict(theirs.bytes_by_level)
            assert mine.bound == theirs.bound
            assert mine.roofline_time_ms == theirs.roofline_time_ms
            assert mine.kernels == theirs.kernels


@pytest.mark.filterwarnings("ignore:.*has no bfloat16 matrix peak")
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_points_agree_with_conv_cost_and_the_verdict_code(dtype: str) -> None:
    # The what-if formula path (conv_cost) and roofline.model.verdict, called directly.
    result = layerprof.sweep(
        kernel_size=[1, 3, 5], channels=[16, 64], dtype=dtype, targets=TARGETS, cache_model=False
    )
    for point in result.points:
        p = point.params
        pad = p.kernel_size[0] // 2  # "same" for an odd kernel
        cost = conv_cost(
            p.in_channels, p.out_channels, p.input_size, p.kernel_size, padding=pad, dtype=dtype, bias=False
        )
        assert (point.flops, point.macs) == (cost.flops, cost.macs)
        assert (point.bytes_read, point.bytes_written) == (cost.bytes_read, cost.bytes_written)
        for target in TARGETS:
            spec = layerprof.get_device(target)
            expected = roofline.verdict(
                target, spec, flops=cost.flops, matrix_flops=cost.matrix_flops,
                bytes_moved=cost.bytes_read + cost.bytes_written, dtype=dtype,
                allow_tf32=roofline.allow_tf32_for(spec.kind, "conv"),
            )  # fmt: skip
            assert point.verdicts[target].bound == expected.bound
            assert point.verdicts[target].roofline_time_ms == pytest.approx(
                expected.roofline_time_ms, rel=1e-12
            )


@pytest.mark.parametrize("channels", [16, 64, 256])
@pytest.mark.parametrize("size", [14, 56])
def test_the_seeds_claim_flops_grow_with_k_squared_and_intensity_with_k(channels: int, size: int) -> None:
    kernels = [1, 3, 5, 7, 9]
    batch = 2
    result = layerprof.sweep(
        kernel_size=kernels, channels=channels, input_size=size, batch=batch, targets=["t4"]
    )
    assert [p.params.kernel_size[0] for p in result.points] == kernels
    for point, k in zip(result.points, kernels, strict=True):
        # 2 FLOPs per MAC * N * Cout * H * W (same padding keeps the map) * Cin * k * k
        assert point.flops == 2 * batch * channels * size * size * channels * k * k
        # float32: input N*Cin*H*W + weights Cout*Cin*k*k read, output N*Cout*H*W written, 4 bytes each
        assert point.bytes_read == 4 * (batch * channels * size * size + channels * channels * k * k)
        assert point.bytes_written == 4 * batch * channels * size * size
    flops = [p.flops for p in result.points]
    assert [f // flops[0] for f in flops] == [k * k for k in kernels]
    intensities = [p.intensity for p in result.points]
    assert all(a < b for a, b in itertools.pairwise(intensities)), intensities


@pytest.mark.parametrize("layer", ["layer3.0.conv2", "layer3.0.conv1", "conv1", "layer2.0.downsample.0"])
def test_a_models_layer_swept_at_its_own_kernel_is_its_row(layer: str) -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None).eval()
    size = (2, 3, 160, 160)
    report = layerprof.analyze(model, input_size=size, target=TARGETS, cache_model=False)
    row = report.row(layer)
    own = dict(model.named_modules())[layer].kernel_size
    result = layerprof.sweep(model=model, layer=layer, kernel_size=sorted({1, own[0], 9}), input_size=size,
                             targets=TARGETS, cache_model=False)  # fmt: skip
    (point,) = [p for p in result.points if p.params.kernel_size == own]
    assert point.params.input_size == row.input_shapes[0][2:] and point.params.batch == 2
    assert (point.flops, point.bytes_read, point.bytes_written) == (
        row.flops,
        row.bytes_read,
        row.bytes_written,
    )
    assert point.output_size == row.output_shapes[0][2:]
    for target in TARGETS:
        assert point.verdicts[target].bound == row.roofline[target].bound
        assert point.verdicts[target].roofline_time_ms == row.roofline[target].roofline_time_ms
    # A layer with "same"-style padding keeps its map at every kernel size (padding follows the kernel).
    if own[0] == 3:
        assert {p.output_size for p in result.points} == {point.output_size}
    assert result.layer == layer and result.layer_kernel_size == own


def test_a_layer_that_does_not_exist_names_the_closest() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None)
    with pytest.raises(
        layerprof.InvalidArgumentError, match=r"'layer3\.0\.conv3'.*closest.*layer3\.0\.conv2"
    ):
        layerprof.sweep(model=model, layer="layer3.0.conv3", input_size=(1, 3, 64, 64))
    with pytest.raises(layerprof.InvalidArgumentError, match=r"'layer3\.0\.bn1' is a BatchNorm2d"):
        layerprof.sweep(model=model, layer="layer3.0.bn1", input_size=(1, 3, 64, 64))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channels": 64, "groups": 3}, "groups=3 does not divide in_channels=64"),
        ({"in_channels": 8, "out_channels": 12, "groups": 8}, "groups=8 does not divide out_channels=12"),
        (
            {"kernel_size": [3, 9], "input_size": 7, "padding": 0},
            r"kernel_size=\(9, 9\).*larger than the padded input height 7",
        ),
        (
            {"kernel_size": 3, "dilation": 4, "input_size": (20, 5), "padding": 1},
            r"spans 9.*padded input width 5 \+ 2 \* 1 = 7",
        ),
        ({"kernel_size": [0, 3]}, "kernel_size=0"),
        ({"channels": -4}, "channels=-4"),
        ({"batch": [1, 0]}, "batch=0"),
        ({"input_size": (56, 0)}, r"input_size=\(56, 0\)"),
        ({"padding": -1}, "padding=-1"),
        ({"stride": 2}, "padding='same' needs stride 1"),
        ({"kernel_size": []}, "kernel_size is an empty list"),
        ({"kernel_size": [3, 3]}, r"kernel_size=\[3, 3\] names a value twice"),
        ({"dtype": "int32"}, "dtype='int32'"),
        ({"dtype": "fp99"}, "fp99"),
        ({"channels": 8, "in_channels": 8}, "not both"),
        ({"targets": ["t4", "gtx9999"]}, "gtx9999"),
    ],
)
def test_impossible_or_bad_sweeps_name_the_value(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(layerprof.LayerprofError, match=message):
        layerprof.sweep(**kwargs)  # type: ignore[arg-type]


def test_the_paragraph_is_built_from_the_numbers() -> None:
    result = layerprof.sweep(
        kernel_size=[1, 3, 5, 7], channels=16, targets=["gtx1080", "t4"], cache_model=False
    )
    first, last = result.points[0], result.points[-1]
    text = result.summary()
    assert "Going from k=1 to k=7" in text
    assert f"FLOPs by {last.flops / first.flops:.3g}x" in text
    assert "FLOPs by 49x" in text  # 7 * 7 / (1 * 1)
    assert f"intensity by {last.intensity / first.intensity:.3g}x" in text
    # gtx1080's DRAM ridge is 27.5 FLOP/B: k=1 (3.99 FLOP/B) sits below it, k=3 (35.2) above.
    bounds = [p.verdicts["gtx1080"].bound for p in result.points]
    assert bounds == ["memory", "compute", "compute", "compute"]
    assert "On gtx1080 the layer is memory-bound at k=1, compute-bound from k=3" in text
    t0, t1 = first.verdicts["t4"].roofline_time_ms, last.verdicts["t4"].roofline_time_ms
    assert f"from {t0:.3g} ms to {t1:.3g} ms ({t1 / t0:.3g}x)" in text
    # A different sweep says different things: nothing in it is fixed text.
    other = layerprof.sweep(kernel_size=[3, 5], channels=256, targets=["t4"], cache_model=False).summary()
    assert "Going from k=3 to k=5" in other and "compute-bound throughout" in other
    assert f"FLOPs by {25 / 9:.3g}x" in other


def test_formats() -> None:
    result = layerprof.sweep(kernel_size=[1, 3], groups=[1, 2], targets=["t4"])
    data = json.loads(result.table("json"))
    assert data["axes"] == {"groups": [1, 2], "kernel_size": [[1, 1], [3, 3]]}
    assert [(p["groups"], p["kernel_size"]) for p in data["points"]] == [
        (1, [1, 1]),
        (1, [3, 3]),
        (2, [1, 1]),
        (2, [3, 3]),
    ]
    assert data["points"][1]["flops"] == 2 * 64 * 56 * 56 * 64 * 9  # C=64, 56x56, k=3, groups 1
    assert data["points"][3]["flops"] == 2 * 64 * 56 * 56 * 32 * 9  # groups 2: each output sees 32 inputs
    level_bytes = data["points"][0]["targets"]["t4"]["bytes_by_level"]
    assert sum(level_bytes.values()) == data["points"][0]["bytes_read"] + data["points"][0]["bytes_written"]
    lines = result.table("csv").splitlines()
    assert lines[0].startswith("groups,kernel_size,out,FLOPs") and len(lines) == 1 + 4
    assert lines[4].split(",")[3] == str(2 * 64 * 56 * 56 * 32 * 9)
    assert result.table("markdown").splitlines()[1].startswith("| groups")
    with pytest.raises(layerprof.InvalidArgumentError, match="'yaml'"):
        result.table("yaml")


def test_plot_joins_each_series(tmp_path: object) -> None:
    pytest.importorskip("matplotlib")
    from pathlib import Path

    result = layerprof.sweep(kernel_size=[1, 3, 5], groups=[1, 4], dtype=["fp32", "fp16"], targets=["t4"])
    assert [name for name, _ in result.series()] == [
        "float32 g=1",
        "float32 g=4",
        "float16 g=1",
        "float16 g=4",
    ]
    path = result.plot(Path(str(tmp_path)) / "sweep.svg")
    svg = path.read_text()
    for text in ("NVIDIA T4 (float32)", "NVIDIA T4 (float16)", "float32 g=4", "float16 g=1", "k=5"):
        assert text in svg


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    kernel=st.integers(-1, 9),
    channels=st.integers(-1, 12),
    groups=st.integers(0, 6),
    size=st.integers(0, 9),
    stride=st.integers(0, 3),
    padding=st.one_of(st.just("same"), st.integers(-1, 4)),
    dilation=st.integers(0, 3),
)
def test_any_parameters_give_the_closed_form_or_a_named_error(
    kernel: int, channels: int, groups: int, size: int, stride: int, padding: object, dilation: int
) -> None:
    """Never a torch error leaking out: a point whose FLOPs are the closed form, or an
    InvalidArgumentError that names one of the values given."""
    try:
        result = layerprof.sweep(
            kernel_size=kernel, channels=channels, groups=groups, input_size=size, stride=stride,
            padding=padding, dilation=dilation, targets=["t4"],
        )  # fmt: skip
    except layerprof.InvalidArgumentError as error:
        assert any(f"{name}={value!r}" in str(error) or f"{name}=({value}, {value})" in str(error)
                   for name, value in [("kernel_size", kernel), ("channels", channels), ("groups", groups),
                                       ("input_size", size), ("stride", stride), ("padding", padding),
                                       ("dilation", dilation)]), str(error)  # fmt: skip
        return
    (point,) = result.points
    pad = (dilation * (kernel - 1)) // 2 if padding == "same" else padding
    assert isinstance(pad, int)
    out = (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
    if padding == "same":
        out = size
    assert point.output_size == (out, out)
    # 2 * N * Cout * Hout * Wout * (Cin / groups) * k * k
    assert point.flops == 2 * channels * out * out * (channels // groups) * kernel * kernel
