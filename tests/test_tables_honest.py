"""Tables that say exactly what was measured (issue #13).

Reused modules show their calls and ``varies`` when their shapes did; a glue row's time is marked as
a share of its container's; an IQR of one sample is ``-``; rows standing for several claim no kernel
or shape; ``sort="time"`` without times is refused; MACs sit next to FLOPs; small times print in us;
``str``/``repr``/``_repr_html_``/``to_pandas`` and ``row()``'s KeyError. Every expected value is
written out by hand (arithmetic in the comments), never read back from the code under test.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest
import torch
from torch import nn

import layerprof
from layerprof import LayerRow, Report
from layerprof.cli import main
from layerprof.errors import InvalidArgumentError
from layerprof.report.render import select_rows
from layerprof.report.timecells import column_unit, duration


def table_cells(text: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """(headers, row name -> header -> cell) of a table printed with fmt="tsv"."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split("\t")[0].strip() == "layer")
    headers = [cell.strip() for cell in lines[start].split("\t")]
    rows = [[cell.strip() for cell in line.split("\t")] for line in lines[start + 1 :] if "\t" in line]
    return headers, {row[0]: dict(zip(headers, row, strict=True)) for row in rows}


def footer(text: str) -> list[str]:
    return [line for line in text.splitlines() if "\t" not in line][2:]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class SharedRelu(nn.Module):
    """One ReLU called twice on different shapes (1x4x8x8, then 1x8x8x8), one called twice on the same
    shape, and three adds of different shapes in the root's own forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.same = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.conv1(x))  # 1x4x8x8
        b = self.relu(self.conv2(a))  # 1x8x8x8
        b = self.same(self.same(b))
        return (b + 1.0).sum() + (a + 1.0).sum()  # three adds: 1x8x8x8, 1x4x8x8, then two scalars


@pytest.fixture(scope="module")
def shared() -> Report:
    return layerprof.analyze(SharedRelu(), input_size=(1, 3, 8, 8), target="gtx1080")


@pytest.fixture(scope="module")
def demo() -> Report:
    return layerprof.analyze(layerprof.demo_model(), input_size=(1, 3, 128, 128), target="gtx1080")


# -- 1. calls and varying shapes ------------------------------------------------------------------------


def test_a_reused_module_counts_its_calls_and_says_its_shapes_vary(shared: Report) -> None:
    relu = shared.row("relu")
    assert relu.calls == 2
    assert relu.shapes_vary is True
    assert relu.output_shapes == ((1, 4, 8, 8),)  # the first call's
    assert relu.flops == 4 * 8 * 8 + 8 * 8 * 8  # both calls: 256 + 512
    same = shared.row("same")
    assert (same.calls, same.shapes_vary, same.output_shapes) == (2, False, ((1, 8, 8, 8),))
    conv = shared.row("conv1")
    assert (conv.calls, conv.shapes_vary) == (1, False)


class Resize(nn.Module):
    def forward(self, x: torch.Tensor, size: int) -> torch.Tensor:
        return torch.nn.functional.adaptive_avg_pool2d(x, size)


class OneShapeChanges(nn.Module):
    """``resize`` gets the same input twice and returns 1x4x2x2, then 1x4x4x4 (a size argument, not a
    tensor); ``pool`` gets 1x4x8x8, then 1x4x4x4, and returns 1x4x1x1 both times."""

    def __init__(self) -> None:
        super().__init__()
        self.resize = Resize()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small, large = self.resize(x, 2), self.resize(x, 4)
        return self.pool(x) + self.pool(large) + small.sum()


def test_shapes_vary_when_only_the_output_or_only_the_input_changes() -> None:
    report = layerprof.analyze(OneShapeChanges(), input_size=(1, 4, 8, 8), target=None)
    resize, pool = report.row("resize"), report.row("pool")
    assert (resize.calls, resize.shapes_vary, resize.output_shapes) == (2, True, ((1, 4, 2, 2),))
    assert resize.input_shapes == ((1, 4, 8, 8),)  # the same both times
    assert (pool.calls, pool.shapes_vary, pool.input_shapes) == (2, True, ((1, 4, 8, 8),))
    assert pool.output_shapes == ((1, 4, 1, 1),)  # the same both times


def test_a_glue_row_whose_ops_had_other_shapes_varies(shared: Report) -> None:
    add = shared.row("(root)/add")
    assert add.calls == 3
    assert add.shapes_vary is True
    assert add.output_shapes == ((1, 8, 8, 8),)


def test_the_table_has_a_calls_column_and_prints_varies(shared: Report) -> None:
    headers, cells = table_cells(shared.table(fmt="tsv"))
    assert headers[:5] == ["layer", "type", "calls", "kernel", "output"]
    assert cells["relu"]["calls"] == "2"
    assert cells["relu"]["output"] == "varies"
    assert cells["same"]["calls"] == "2"
    assert cells["same"]["output"] == "1x8x8x8"
    assert cells["conv1"]["calls"] == "1"
    assert cells["conv1"]["output"] == "1x4x8x8"
    assert cells["(root)/add"]["output"] == "varies"
    assert cells["total"]["calls"] == ""
    notes = footer(shared.table(fmt="tsv"))
    assert any(line.startswith("calls: ") for line in notes)
    assert any(line.startswith("varies: ") for line in notes)


def test_no_calls_column_when_every_row_ran_once() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    text = layerprof.analyze(model, input_size=(1, 3, 8, 8), target=None).table(fmt="tsv")
    headers, cells = table_cells(text)
    assert "calls" not in headers
    assert cells["1"]["output"] == "1x4x6x6"
    assert not any(line.startswith(("calls: ", "varies: ")) for line in footer(text))


def test_the_json_carries_shapes_vary(shared: Report) -> None:
    rows = {r["name"]: r for r in shared.to_dict()["layers"]}
    assert rows["relu"]["shapes_vary"] is True
    assert rows["same"]["shapes_vary"] is False


def test_resnet50_layer1_0_relu_is_one_row_of_three_calls_that_vary() -> None:
    torchvision = pytest.importorskip("torchvision")
    report = layerprof.analyze(torchvision.models.resnet50(weights=None), input_size=(1, 3, 224, 224))
    relu = report.row("layer1.0.relu")
    # Bottleneck runs its one ReLU after bn1 (64 channels), bn2 (64) and the residual add (256).
    assert relu.calls == 3
    assert relu.shapes_vary is True
    assert relu.output_shapes == ((1, 64, 56, 56),)
    assert report.row("layer1.0.conv1").shapes_vary is False
    _, cells = table_cells(report.table(fmt="tsv"))
    assert (cells["layer1.0.relu"]["calls"], cells["layer1.0.relu"]["output"]) == ("3", "varies")
    assert cells["layer1.0.conv1"]["output"] == "1x64x56x56"


# -- 2. shared glue times, 3. IQR of one sample, 5. time units: on reports with known times ------------


def timed(rows: list[LayerRow], total_ms: float) -> Report:
    total = LayerRow("total", "Net", flops=sum(r.flops for r in rows), time_ms=total_ms)
    return Report(layers=tuple(rows), total=total, model_name="Net")


def test_a_glue_rows_time_is_marked_shared_and_a_lone_samples_iqr_is_a_dash() -> None:
    report = timed(
        [
            LayerRow("block.conv", "Conv2d", flops=10, time_ms=2.0, time_iqr_ms=0.25),
            LayerRow("block/add", "add", flops=1, time_ms=0.5, time_iqr_ms=None),
        ],
        3.0,
    )
    text = report.table(fmt="tsv")
    headers, cells = table_cells(text)
    # Each column picks its unit: the times reach 3.0 ms, the spreads stay below a millisecond.
    assert "time ms" in headers and "IQR us" in headers
    assert cells["block.conv"]["time ms"] == "2.00"
    assert cells["block.conv"]["IQR us"] == "250.0"
    assert cells["block/add"]["time ms"] == "0.500^"
    assert cells["block/add"]["IQR us"] == "-"
    assert cells["total"]["time ms"] == "3.00"  # the totals are measured end to end: no mark
    notes = footer(text)
    assert any(line.startswith("^ shared: ") for line in notes)
    assert any(line.startswith("IQR -: ") for line in notes)


def test_backward_glue_rows_are_timed_node_by_node_and_not_marked() -> None:
    report = timed([LayerRow("block/add", "add", phase="backward", time_ms=1.5, time_iqr_ms=0.1)], 2.0)
    text = report.table(fmt="tsv")
    assert table_cells(text)[1]["block/add"]["time ms"] == "1.50"
    assert not any(line.startswith("^ ") for line in footer(text))


def test_sub_millisecond_columns_print_in_microseconds() -> None:
    report = timed(
        [
            LayerRow("a", "ReLU", time_ms=0.0004, time_iqr_ms=0.00005),
            LayerRow("b", "ReLU", time_ms=0.25, time_iqr_ms=0.01),
        ],
        0.3,
    )
    headers, cells = table_cells(report.table(fmt="tsv"))
    assert "time us" in headers and "IQR us" in headers
    assert cells["a"]["time us"] == "0.400"  # 0.0004 ms = 0.4 us, not "0.000"
    assert cells["a"]["IQR us"] == "0.050"
    assert cells["b"]["time us"] == "250.0"
    assert cells["total"]["time us"] == "300.0"


def test_a_column_over_a_millisecond_with_a_time_that_would_print_zero_is_in_microseconds() -> None:
    report = timed([LayerRow("a", "ReLU", time_ms=0.0002), LayerRow("b", "Conv2d", time_ms=2.5)], 3.0)
    headers, cells = table_cells(report.table(fmt="tsv"))
    assert "time us" in headers
    assert (cells["a"]["time us"], cells["b"]["time us"], cells["total"]["time us"]) == (
        "0.200",
        "2500.0",
        "3000.0",
    )


def test_column_units_and_durations() -> None:
    assert column_unit([2.0, 0.001, None]) == "ms"  # 0.001 ms prints 0.001: nothing reads as zero
    assert column_unit([2.0, 0.0004]) == "us"  # 0.0004 ms would print 0.000
    assert column_unit([0.9, 0.0, None]) == "us"  # all below a millisecond; a true 0 stays 0
    assert column_unit([None, None]) == "ms"
    assert duration(0.677) == "0.677 ms"
    assert duration(0.0761) == "76.10 us"
    assert duration(12.345) == "12.35 ms"


def test_demonet_roofline_column_is_in_microseconds(demo: Report) -> None:
    headers, cells = table_cells(demo.table(fmt="tsv"))
    assert "roof us@gtx1080" in headers
    # fuse: 2 * 64*32*32 * 64*25 = 209,715,200 matrix FLOPs + 65,536 bias adds = 209,780,736 FLOPs at the
    # GTX 1080's 8.8e12 FLOP/s: 23.839 us (its 912.25 KiB at 320 GB/s would take 2.9 us: compute-bound).
    assert cells["fuse"]["roof us@gtx1080"] == "23.84"
    # fc: one kernel (addmm) at the GTX 1080's 2 us launch floor: 2.00 us, bound by overhead.
    assert cells["fc"]["roof us@gtx1080"] == "2.00"
    assert cells["fc"]["bound@gtx1080"] == "overhead"
    # DRAM-only: fc's 2.83 KiB (2,900 B) at 320 GB/s = 0.009 us; in ms it printed 0.000.
    dram_only = layerprof.analyze(
        layerprof.demo_model(), input_size=(1, 3, 128, 128), target="gtx1080", cache_model=False
    )
    _, cells = table_cells(dram_only.table(fmt="tsv"))
    assert cells["fc"]["roof us@gtx1080"] == "0.009"


# -- 2 and 3 on real timings -----------------------------------------------------------------------------


class GlueNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x  # (root)/add: a share of the root's self time


def test_profile_marks_the_glue_row_and_one_repeat_has_no_iqr() -> None:
    report = layerprof.profile(GlueNet(), torch.randn(1, 3, 16, 16), target=None, warmup=1, repeat=1)
    assert report.row("conv").time_ms is not None
    assert all(r.time_iqr_ms is None for r in report.layers)  # one sample: no spread
    headers, cells = table_cells(report.table(fmt="tsv"))
    time_header = next(h for h in headers if h.startswith("time "))
    iqr_header = next(h for h in headers if h.startswith("IQR "))
    assert cells["(root)/add"][time_header].endswith("^")
    assert not cells["conv"][time_header].endswith("^")
    assert cells["conv"][iqr_header] == "-"


def test_profile_with_repeats_keeps_a_spread() -> None:
    report = layerprof.profile(GlueNet(), torch.randn(1, 3, 16, 16), target=None, warmup=1, repeat=4)
    assert all(r.time_iqr_ms is not None and r.time_iqr_ms >= 0 for r in report.layers)


# -- 4. rows standing for several, sorting by what is not there ------------------------------------------


def test_a_fold_row_has_no_kernel_and_no_shape(demo: Report) -> None:
    fold = select_rows(demo, None, "flops", 3)[-1]
    assert fold.name == "(18 more rows)"  # 21 rows, 3 shown
    assert fold.kernel_size is None
    assert (fold.input_shapes, fold.output_shapes, fold.shapes_vary) == ((), (), False)
    _, cells = table_cells(demo.table(sort="flops", top=3, fmt="tsv"))
    assert (cells["(18 more rows)"]["kernel"], cells["(18 more rows)"]["output"]) == ("", "")


def test_rolled_up_containers_have_no_kernel_and_no_calls(demo: Report) -> None:
    rows = {r.name: r for r in select_rows(demo, 1, None, None)}
    assert rows["stem"].kernel_size is None  # its 3x3 was stem.0's
    assert rows["res"].kernel_size is None
    assert rows["res"].output_shapes == ((1, 32, 64, 64),)  # res/add's, its last row
    assert rows["pool"].kernel_size == (2, 2)  # a leaf at depth 1 keeps its own
    headers, cells = table_cells(demo.table(depth=1, fmt="tsv"))
    assert "calls" not in headers  # res.relu's two calls are inside res, which has no count of its own
    assert (cells["stem"]["kernel"], cells["res"]["kernel"], cells["fuse"]["kernel"]) == ("", "", "5x5")


def test_the_calls_cell_of_a_rolled_up_row_is_blank(shared: Report) -> None:
    headers, cells = table_cells(shared.table(depth=0, fmt="tsv"))
    assert "calls" not in headers  # (root) alone stands for every row
    headers, cells = table_cells(shared.table(sort="flops", top=1, fmt="tsv"))
    assert "calls" not in headers or cells["(5 more rows)"]["calls"] == ""


def test_sort_by_time_without_times_is_refused(demo: Report) -> None:
    with pytest.raises(InvalidArgumentError, match="not timed"):
        demo.table(sort="time")
    with pytest.raises(InvalidArgumentError, match="not timed"):
        select_rows(demo, None, "time", None)


def test_sort_by_roofline_time_without_a_target_is_refused() -> None:
    report = layerprof.analyze(nn.Sequential(nn.Conv2d(3, 4, 3)), input_size=(1, 3, 8, 8), target=None)
    with pytest.raises(InvalidArgumentError, match="no target"):
        report.table(sort="roofline_time")


def test_sort_by_time_sorts_a_timed_report() -> None:
    report = timed(
        [LayerRow("a", "ReLU", time_ms=1.0), LayerRow("b", "ReLU", time_ms=3.0), LayerRow("c", "X")], 5.0
    )
    assert [r.name for r in select_rows(report, None, "time", None)] == ["b", "a", "c"]  # untimed last


def test_audit_sort_time_without_time_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["audit", "layerprof.models.demonet:demo_model", "--sort", "time", "--target", "t4"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--sort time" in err and "--time" in err


# -- 5. MACs ---------------------------------------------------------------------------------------------


def test_the_table_has_a_macs_column(demo: Report) -> None:
    headers, cells = table_cells(demo.table(fmt="tsv"))
    assert headers.index("MACs") == headers.index("FLOPs") + 1
    assert cells["stem.0"]["MACs"] == "3.54M"  # 32 * 64*64 * 3*3*3 = 3,538,944
    assert cells["fuse"]["MACs"] == "105M"  # 64 * 32*32 * 64*25 = 104,857,600
    assert cells["fc"]["MACs"] == "640"  # 10 * 64
    assert cells["stem.1"]["MACs"] == "0"  # batch norm: vector work only
    assert "MACs = matrix FLOPs / 2" in demo.table()


# -- 6. str, repr, HTML, pandas --------------------------------------------------------------------------


def test_str_is_the_table_and_repr_is_one_short_line(demo: Report) -> None:
    assert str(demo) == demo.table()
    text = repr(demo)
    assert text == (
        "<layerprof Report: DemoNet (1x3x128x128), 21 rows, 372M FLOPs, 185M MACs, 127K params, "
        "13.67 MiB, not timed, targets gtx1080>"
    )


def test_repr_of_resnet50_stays_short() -> None:
    torchvision = pytest.importorskip("torchvision")
    report = layerprof.analyze(
        torchvision.models.resnet50(weights=None), input_size=(1, 3, 224, 224), target=["t4", "a100"]
    )
    assert len(repr(report)) < 200
    assert "ResNet (1x3x224x224)" in repr(report) and "targets t4, a100" in repr(report)


def test_repr_html_is_the_table_escaped() -> None:
    rows = (LayerRow("a<b>", "ReLU", flops=3),)
    report = Report(layers=rows, total=LayerRow("total", "Net", flops=3), model_name="<Net & co>")
    page = report._repr_html_()
    assert page.startswith('<div class="layerprof-report">') and page.endswith("</div>")
    assert "<table>" in page and "<th>layer" in page
    assert "&lt;Net &amp; co&gt;" in page and "<Net" not in page
    assert "a&lt;b&gt;" in page and "a<b>" not in page


def test_to_pandas_without_pandas_says_how_to_install_it(
    demo: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(InvalidArgumentError, match="pip install pandas"):
        demo.to_pandas()


def test_to_pandas_is_a_frame_of_the_rows(demo: Report) -> None:
    pandas: Any = pytest.importorskip("pandas")
    frame = demo.to_pandas()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame["name"]) == [r.name for r in demo.layers]
    fuse = frame.set_index("name").loc["fuse"]
    assert fuse["macs"] == 104_857_600  # 64 * 32*32 * 64*25
    assert fuse["flops"] == 209_780_736  # 2 * MACs + 64*32*32 bias adds
    assert fuse["bound@gtx1080"] == "compute"
    assert str(frame["flops"].dtype) == "int64"
    assert frame["time_ms"].isna().all()  # not timed
    assert str(frame["time_ms"].dtype) == "float64"


# -- 7. row() suggests the closest names -----------------------------------------------------------------


def test_row_suggests_the_closest_names() -> None:
    torchvision = pytest.importorskip("torchvision")
    report = layerprof.analyze(torchvision.models.resnet50(weights=None), input_size=(1, 3, 224, 224))
    with pytest.raises(KeyError) as caught:
        report.row("layer1.0.conv")
    message = str(caught.value)
    assert "no forward row named 'layer1.0.conv'" in message
    assert "'layer1.0.conv1'" in message and "'layer1.0.conv2'" in message


def test_row_names_the_other_phase(shared: Report) -> None:
    with pytest.raises(KeyError, match=r"no backward rows.*forward row of that name"):
        shared.row("relu", phase="backward")
