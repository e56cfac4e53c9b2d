"""The printed table (golden file), its roll-ups and cuts, and the dict / JSON / CSV exports.

Regenerate the golden file after an intended change of the table with
``LAYERPROF_REGEN_GOLDEN=1 pytest tests/test_table_export.py`` and read the diff before committing it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

import layerprof
from layerprof import LayerRow, Report
from layerprof.report.render import select_rows

GOLDEN = Path(__file__).parent / "golden"
SUMMED = ("flops", "matrix_flops", "macs", "bytes_read", "bytes_written", "params")


@pytest.fixture(scope="module")
def report() -> Report:
    return layerprof.analyze(layerprof.demo_model(), input_size=(1, 3, 128, 128), target="gtx1080")


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("LAYERPROF_REGEN_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no golden file {path}; run with LAYERPROF_REGEN_GOLDEN=1 to write it"
    assert text == path.read_text(encoding="utf-8")


def assert_sums(rows: list[LayerRow], total: LayerRow) -> None:
    for field in SUMMED:
        assert sum(getattr(r, field) for r in rows) == getattr(total, field), field
    # The roofline time column adds up too: a rolled-up row's is the sum of its members'.
    for target, verdict in total.roofline.items():
        column = sum(r.roofline[target].roofline_time_ms for r in rows)
        assert column == pytest.approx(verdict.roofline_time_ms, rel=1e-12), target


def test_demonet_table_golden(report: Report) -> None:
    check_golden("demonet_gtx1080.txt", report.table() + "\n")


def test_demonet_table_depth_1_golden(report: Report) -> None:
    check_golden("demonet_gtx1080_depth1.txt", report.table(depth=1) + "\n")


def test_table_ends_with_the_totals(report: Report) -> None:
    lines = report.table().splitlines()
    total_line = next(line for line in lines if line.startswith("total"))
    assert "DemoNet" in total_line
    assert "372M" in total_line  # 371_983_626 FLOPs (tests/test_counting.py counts them by hand)
    assert "127K" in total_line  # parameters


@pytest.mark.parametrize("depth", [0, 1, 2, 3])
def test_depth_roll_up_keeps_the_sums(report: Report, depth: int) -> None:
    rows = select_rows(report, depth, None, None)
    assert_sums(rows, report.total)
    assert all(r.name.count(".") < depth or depth == 0 for r in rows if "/" not in r.name)


def test_depth_1_rows(report: Report) -> None:
    rows = select_rows(report, 1, None, None)
    names = [r.name for r in rows]
    assert names == [
        "stem", "res", "pool", "dws", "lateral", "(root)/upsample_bilinear2d", "(root)/cat", "fuse",
        "head_pool", "fc",
    ]  # fmt: skip
    res = next(r for r in rows if r.name == "res")
    assert res.kind == "ResidualBlock"
    assert res.flops == sum(r.flops for r in report.layers if r.name.startswith(("res.", "res/")))
    assert res.intensity == res.flops / (res.bytes_read + res.bytes_written)
    # Cache-aware, a group is bound by what binds most of its rows' time: its convolutions' compute.
    by_bound: dict[str, float] = {}
    for member in (r for r in report.layers if r.name.startswith(("res.", "res/"))):
        by_bound[str(member.bound)] = by_bound.get(str(member.bound), 0.0) + (member.roofline_time_ms or 0.0)
    assert res.bound == max(by_bound, key=lambda b: by_bound[b]) == "compute"
    # DRAM-only, judged on its sums, not its first member: res.conv1 alone is compute-bound (70 FLOP/B),
    # the block as a whole (19 FLOP/B) is under the GTX 1080's ridge, 8.8e12 / 320e9 = 27.5 FLOP/B.
    dram_only = layerprof.analyze(
        layerprof.demo_model(), input_size=(1, 3, 128, 128), target="gtx1080", cache_model=False
    )
    res = next(r for r in select_rows(dram_only, 1, None, None) if r.name == "res")
    assert res.intensity < 8.8e12 / 320e9
    assert res.bound == "memory"


def test_depth_0_is_one_row(report: Report) -> None:
    (row,) = select_rows(report, 0, None, None)
    assert row.name == "(root)"
    assert row.flops == report.total.flops


@pytest.mark.parametrize("sort", ["flops", "bytes", "params", "intensity", "macs", "roofline_time"])
def test_sort_and_top_keep_the_sums(report: Report, sort: str) -> None:
    rows = select_rows(report, None, sort, 5)
    assert len(rows) == 6
    assert rows[-1].name == f"({len(report.layers) - 5} more rows)"
    assert_sums(rows, report.total)
    table = report.table(sort=sort, top=5)
    assert f"({len(report.layers) - 5} more rows)" in table


def test_sort_by_flops_puts_the_biggest_first(report: Report) -> None:
    rows = select_rows(report, None, "flops", 3)
    assert rows[0].name == "fuse"  # 2 * 64 * 32 * 32 * 64 * 25 + bias: the 5x5 convolution
    assert rows[0].flops >= rows[1].flops >= rows[2].flops


def test_top_larger_than_the_rows_folds_nothing(report: Report) -> None:
    rows = select_rows(report, None, None, 1000)
    assert [r.name for r in rows] == [r.name for r in report.layers]


def test_depth_sort_and_top_together(report: Report) -> None:
    rows = select_rows(report, 1, "bytes", 3)
    assert rows[-1].name == "(7 more rows)"
    assert_sums(rows, report.total)


# -- exports ---------------------------------------------------------------------------------------------


def test_to_dict_has_a_schema_version_and_exact_ints(report: Report) -> None:
    data = report.to_dict()
    assert data["schema_version"] == 1
    assert data["model"] == "DemoNet"
    assert data["inputs"]["positional"] == [{"shape": [1, 3, 128, 128], "dtype": "float32"}]
    assert [t["name"] for t in data["targets"]] == ["gtx1080"]
    assert len(data["layers"]) == len(report.layers)
    for row, exported in zip((*report.layers, report.total), (*data["layers"], data["total"]), strict=True):
        for field in SUMMED:
            assert type(exported[field]) is int
            assert exported[field] == getattr(row, field)
        assert exported["name"] == row.name
        assert exported["roofline"]["gtx1080"]["bound"] == row.bound


def test_json_round_trips(report: Report, tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    text = report.to_json(path)
    assert path.read_text(encoding="utf-8") == text
    loaded = json.loads(text)
    assert loaded == report.to_dict()
    assert loaded["total"]["flops"] == report.total.flops
    assert isinstance(loaded["total"]["flops"], int)
    assert loaded["layers"][0]["kernel_size"] == [3, 3]
    assert loaded["layers"][0]["output_shapes"] == [[1, 32, 64, 64]]


def test_csv_has_one_line_per_row_and_the_total(report: Report, tmp_path: Path) -> None:
    path = tmp_path / "report.csv"
    text = report.to_csv(path)
    assert path.read_text(encoding="utf-8") == text
    lines = text.splitlines()
    assert len(lines) == 1 + len(report.layers) + 1  # header, rows, total
    records = list(csv.DictReader(io.StringIO(text)))
    assert [r["name"] for r in records] == [r.name for r in report.layers] + ["total"]
    for record, row in zip(records, (*report.layers, report.total), strict=True):
        for field in SUMMED:
            assert int(record[field]) == getattr(row, field)
        assert record["bound@gtx1080"] == row.bound
        assert record["schema_version"] == "1"
    assert records[0]["kernel_size"] == "3x3"
