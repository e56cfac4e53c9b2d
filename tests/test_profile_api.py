"""layerprof.profile and layerprof.Profiler: every row timed, the model left alone, clear errors.

No assertion here is about speed. The one about coverage compares two measurements of the same
forwards (rows vs end to end); the machine is shared, so it runs on one thread and gets up to five tries.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch import nn

import layerprof
from conftest import assert_no_hooks, hooks_on
from layerprof import (
    DeviceMismatchError,
    InvalidArgumentError,
    InvalidModelError,
    Profiler,
    Report,
    UnknownDeviceError,
    demo_model,
    profile,
)

GTX1080_PEAK_FLOPS_PER_S = 8.8e12  # fp32, matrix = vector (no tensor cores)
GTX1080_BANDWIDTH_BYTES_PER_S = 320e9


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for key, value in before.items():
        assert torch.equal(after[key], value), key


def assert_every_row_timed(report: Report) -> None:
    assert report.layers
    for row in report.layers:
        assert row.time_ms is not None and row.time_ms >= 0, row.name
        assert row.time_iqr_ms is not None and row.time_iqr_ms >= 0, row.name
    assert report.total.time_ms is not None and report.total.time_ms > 0
    assert report.coverage is not None and report.coverage > 0


# -- profile(): every row timed ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_report() -> Report:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return profile(demo_model(), torch.randn(1, 3, 64, 64), target="gtx1080", warmup=2, repeat=5)
    finally:
        torch.set_num_threads(threads)


def test_profile_times_every_row_of_demonet(demo_report: Report) -> None:
    assert_every_row_timed(demo_report)
    counted = layerprof.analyze(demo_model(), input_size=(1, 3, 64, 64), target="gtx1080")
    assert [r.name for r in demo_report.layers] == [r.name for r in counted.layers]
    assert [r.flops for r in demo_report.layers] == [r.flops for r in counted.layers]
    end_to_end_ms = demo_report.total.time_ms
    assert end_to_end_ms is not None
    assert demo_report.coverage == pytest.approx(
        sum(r.time_ms for r in demo_report.layers if r.time_ms is not None) / end_to_end_ms
    )
    assert demo_report.kernel_time_ms is None
    assert "time ms" in demo_report.table() and "coverage" in demo_report.table()


def test_profile_times_every_row_of_resnet18_and_covers_the_forward() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.randn(8, 3, 64, 64)
    coverages = []
    for _ in range(5):  # a busy shared machine slows some forwards, plain or hooked: try again
        report = profile(model, x, target=None, warmup=2, repeat=5)
        assert_every_row_timed(report)
        assert report.row("layer1.0/add").time_ms is not None  # out += identity: a glue row, timed
        coverages.append(report.coverage)
        if 0.9 <= report.coverage <= 1.1:  # type: ignore[operator]
            break
    assert any(0.9 <= c <= 1.1 for c in coverages), coverages  # type: ignore[operator]


def test_known_rows_get_the_expected_bound_on_gtx1080(demo_report: Report) -> None:
    fuse = demo_report.row("fuse")  # Conv2d(64, 64, 5, padding=2) on 1x64x16x16, with bias
    matrix_flops = 2 * 1 * 64 * 16 * 16 * 64 * 5 * 5  # 52,428,800
    flops = matrix_flops + 64 * 16 * 16  # + bias adds = 52,445,184
    moved = 4 * (64 * 16 * 16 + 64 * 64 * 5 * 5 + 64 + 64 * 16 * 16)  # in + weight + bias + out = 540,928
    assert (fuse.flops, fuse.bytes_total) == (flops, moved)
    verdict = fuse.roofline["gtx1080"]
    # intensity 52,445,184 / 540,928 = 97.0 FLOP/B, above the ridge 8.8e12 / 320e9 = 27.5
    assert verdict.bound == "compute"
    assert verdict.ridge_point == pytest.approx(GTX1080_PEAK_FLOPS_PER_S / GTX1080_BANDWIDTH_BYTES_PER_S)
    roof_ms = flops / GTX1080_PEAK_FLOPS_PER_S * 1e3  # 0.00596 ms
    assert verdict.roofline_time_ms == pytest.approx(roof_ms)
    assert fuse.time_ms is not None
    # The time was taken on this CPU: it says nothing about a GTX 1080's efficiency.
    assert "gtx1080" not in demo_report.timed_on
    assert (verdict.achieved_flops_per_s, verdict.roofline_efficiency, verdict.flags) == (None, None, ())

    relu = demo_report.row("stem.2")  # in-place ReLU on 1x32x32x32: 1 FLOP per element, read + write
    elements = 1 * 32 * 32 * 32
    assert relu.bytes_total == 2 * 4 * elements
    # intensity 1 / 8 = 0.125 FLOP/B, far below 27.5; it reads what stem.1 just wrote from the 2 MiB L2
    # and its 256 KiB at 766 GB/s take 0.34 us: its one kernel's 2 us launch floor binds it.
    verdict = relu.roofline["gtx1080"]
    assert dict(verdict.bytes_by_level) == {"L2": 2 * 4 * elements, "DRAM": 0}
    assert verdict.bound == "overhead" and verdict.kernels == 1
    assert verdict.roofline_time_ms == pytest.approx(2e-6 * 1e3)
    # DRAM-only: memory-bound, roofline time = bytes / bandwidth.
    dram_only = layerprof.analyze(
        demo_model(), input_size=(1, 3, 64, 64), target="gtx1080", cache_model=False
    )
    assert dram_only.row("stem.2").roofline["gtx1080"].bound == "memory"
    assert dram_only.row("stem.2").roofline["gtx1080"].roofline_time_ms == pytest.approx(
        2 * 4 * elements / GTX1080_BANDWIDTH_BYTES_PER_S * 1e3
    )


def test_times_are_judged_against_the_measured_local_target() -> None:
    local = replace(layerprof.get_device("gtx1080"), name="this-cpu", aliases=(), measured=True)
    report = profile(
        layerprof.demo_model(), torch.randn(1, 3, 64, 64), target=[local, "t4"], warmup=1, repeat=3
    )
    assert report.timed_on == frozenset({"this-cpu"})
    fuse = report.row("fuse")
    verdict = fuse.roofline["this-cpu"]
    assert fuse.time_ms is not None
    if "too-short" not in verdict.flags:
        assert verdict.achieved_flops_per_s == pytest.approx(fuse.flops / (fuse.time_ms / 1e3))
        assert verdict.roofline_efficiency == pytest.approx(verdict.roofline_time_ms / fuse.time_ms)
        assert ("above-roof" in verdict.flags) == (verdict.roofline_time_ms / fuse.time_ms > 1.05)
    assert fuse.roofline["t4"].roofline_efficiency is None


# -- the model is left as it was ---------------------------------------------------------------------
def test_profile_leaves_the_model_alone() -> None:
    model = demo_model().train()  # training mode: batch norm would update its running statistics
    reference = copy.deepcopy(model)
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(2, 3, 32, 32)
    profile(model, x, target=None, warmup=1, repeat=2)
    assert_no_hooks(model)
    assert model.training and all(m.training for m in model.modules())
    assert_same_state(model, before)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
    assert model.training


def test_profiler_leaves_the_model_alone_and_times_the_block() -> None:
    model = demo_model().train()
    reference = copy.deepcopy(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad(), Profiler(model, target="gtx1080") as prof:
        assert hooks_on(model) == 2 * len(list(model.modules())) + 1  # two per module + the inputs' hook
        outputs = [model(x) for _ in range(3)]
    assert_no_hooks(model)
    with torch.no_grad():
        expected = [reference(x) for _ in range(3)]  # the same forwards without the Profiler
    for got, want in zip(outputs, expected, strict=True):
        assert torch.equal(got, want)
    assert_same_state(model, reference.state_dict())  # batch norm moved exactly as without hooks
    before = copy.deepcopy(model.state_dict())

    report = prof.report()
    assert_same_state(model, before)  # counting ran on a meta twin
    assert_every_row_timed(report)
    assert report.inputs is not None and report.inputs.positional[0] is not None
    assert report.inputs.positional[0].shape == (2, 3, 32, 32)
    counted = layerprof.analyze(model, input_size=(2, 3, 32, 32), target="gtx1080")
    assert [r.name for r in report.layers] == [r.name for r in counted.layers]


def test_profiler_removes_its_hooks_when_the_block_raises() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(5)
            self.bad = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bad(self.bn(x))  # type: ignore[no-any-return]

    model = Broken().train()
    reference = copy.deepcopy(model)
    x = torch.randn(4, 5)
    with pytest.raises(RuntimeError), Profiler(model, target=None):
        model(x)  # bn runs (and updates its statistics, as it would anyway), then bad raises
    assert_no_hooks(model)
    assert model.training
    with pytest.raises(RuntimeError):
        reference(x)
    assert_same_state(model, reference.state_dict())
    with pytest.raises(RuntimeError), Profiler(model, target=None):
        raise RuntimeError("the block itself raises")
    assert_no_hooks(model)


def test_profiler_without_time_counts_only() -> None:
    model = demo_model()
    with Profiler(model, target="gtx1080", time=False) as prof:
        model(torch.randn(1, 3, 32, 32))
    assert_no_hooks(model)
    report = prof.report()
    assert all(r.time_ms is None for r in report.layers)
    assert report.coverage is None and report.total.time_ms is None
    counted = layerprof.analyze(model, input_size=(1, 3, 32, 32), target="gtx1080")
    assert [(r.name, r.flops, r.bytes_total) for r in report.layers] == [
        (r.name, r.flops, r.bytes_total) for r in counted.layers
    ]


def test_profiler_warns_when_forwards_change_shape() -> None:
    model = demo_model()
    with Profiler(model, target=None) as prof:
        model(torch.randn(1, 3, 32, 32))
        model(torch.randn(2, 3, 32, 32))
    with pytest.warns(UserWarning, match="1 forwards .* other input shapes"):
        report = prof.report()
    assert report.inputs is not None and report.inputs.positional[0] is not None
    assert report.inputs.positional[0].shape == (1, 3, 32, 32)


class NeedsValues(nn.Module):
    """Reads a value (``.item()``): the meta pass cannot run it, counting falls back to real inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        if x.sum().item() > 1e9:
            return x
        return self.fc(x) * scale  # type: ignore[no-any-return]


@pytest.mark.filterwarnings("ignore:layerprof has no FLOP formula")  # .item() reads a scalar
def test_models_that_need_values_are_counted_on_real_inputs() -> None:
    model = NeedsValues()
    report = profile(model, (torch.randn(3, 4), 2.0), target=None, warmup=0, repeat=2)
    assert_every_row_timed(report)
    assert report.row("fc").flops == 2 * 3 * 4 * 4 + 3 * 4  # matmul + bias adds = 108
    with Profiler(model, target=None) as prof:
        model(torch.randn(3, 4), scale=2.0)
    assert prof.report().row("fc").flops == 2 * 3 * 4 * 4 + 3 * 4
    assert_no_hooks(model)


# -- bad input --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"repeat": 0}, InvalidArgumentError, "repeat must be a positive int, got 0"),
        ({"warmup": -1}, InvalidArgumentError, "warmup must be a non-negative int, got -1"),
        ({"kernel_time": True}, InvalidArgumentError, "kernel_time=True .* runs on cpu"),
        ({"target": "gtx-9999"}, UnknownDeviceError, "gtx-9999"),
    ],
    ids=["repeat=0", "warmup=-1", "kernel_time-on-cpu", "unknown-target"],
)
def test_profile_rejects_bad_arguments(
    options: dict[str, object], error: type[Exception], message: str
) -> None:
    model = demo_model()
    kwargs: dict[str, object] = {"target": None, **options}
    with pytest.raises(error, match=message):
        profile(model, torch.randn(1, 3, 32, 32), **kwargs)  # type: ignore[arg-type]
    assert_no_hooks(model)


def test_profile_and_profiler_reject_what_is_not_a_module() -> None:
    with pytest.raises(InvalidModelError, match="function"):
        profile(lambda x: x, torch.randn(2), target=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidModelError):
        Profiler("resnet18", target=None)  # type: ignore[arg-type]


def test_profiler_rejects_report_before_a_forward_and_bad_targets() -> None:
    model = demo_model()
    with pytest.raises(UnknownDeviceError, match="gtx-9999"):
        Profiler(model, target="gtx-9999")
    prof = Profiler(model, target=None)
    with pytest.raises(InvalidArgumentError, match="forward"):
        prof.report()
    with prof, pytest.raises(InvalidArgumentError, match="forward"):
        prof.report()
    with pytest.raises(InvalidArgumentError, match="time"):
        Profiler(model, target=None, time="yes")  # type: ignore[arg-type]
    assert_no_hooks(model)


def kernel_cells(table: str) -> dict[str, str]:
    """Row name -> its "kernel ms" cell, from a table printed with fmt="tsv"."""
    lines = [line.split("\t") for line in table.splitlines() if "\t" in line]
    headers = [h.strip() for h in lines[0]]
    column = headers.index("kernel ms")
    return {cells[0].strip(): cells[column].strip() for cells in lines[1:]}


def test_kernel_column_is_shown_when_kernel_times_are_known(demo_report: Report) -> None:
    assert "kernel ms" not in demo_report.table()
    kernels = {row.name: 0.5 for row in demo_report.layers}
    report = replace(demo_report, kernel_time_ms=kernels)
    cells = kernel_cells(report.table(fmt="tsv"))
    assert cells["fuse"] == "0.500"
    assert cells["total"] == f"{0.5 * len(kernels):.2f}"  # 21 rows x 0.5 ms = 10.50
    rolled = kernel_cells(report.table(depth=1, fmt="tsv"))
    res_rows = [r.name for r in demo_report.layers if r.name.startswith(("res.", "res/"))]
    assert len(res_rows) == 6  # conv1 bn1 relu conv2 bn2, and the add
    assert rolled["res"] == f"{0.5 * 6:.2f}"


# -- CUDA --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel_time", [False, True])
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_profile_on_cuda(kernel_time: bool) -> None:
    model = demo_model().cuda()
    before = copy.deepcopy(model.state_dict())
    report = profile(
        model,
        torch.randn(4, 3, 64, 64, device="cuda"),
        target="gtx1080",
        warmup=2,
        repeat=5,
        kernel_time=kernel_time,
    )
    assert_every_row_timed(report)
    assert_no_hooks(model)
    assert_same_state(model, before)
    if kernel_time:
        assert report.kernel_time_ms is not None
        assert set(report.kernel_time_ms) == {r.name for r in report.layers}
        assert all(ms >= 0 for ms in report.kernel_time_ms.values())
        assert report.kernel_time_ms["fuse"] > 0  # a 5x5 convolution launches kernels
        assert "kernel ms" in report.table()
    else:
        assert report.kernel_time_ms is None


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_profile_on_cuda_rejects_inputs_on_the_cpu() -> None:
    model = demo_model().cuda()
    with pytest.raises(DeviceMismatchError, match="cpu"):
        profile(model, torch.randn(1, 3, 32, 32), target=None)
    assert_no_hooks(model)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_profiler_on_cuda() -> None:
    torchvision = pytest.importorskip("torchvision")
    model = torchvision.models.resnet18(weights=None).cuda().eval()
    x = torch.randn(8, 3, 112, 112, device="cuda")
    with torch.no_grad(), Profiler(model, target=None) as prof:
        for _ in range(5):
            model(x)
    assert_no_hooks(model)
    report = prof.report()
    assert_every_row_timed(report)
    assert report.row("layer1.0/add").time_ms is not None
