"""The pieces that had several copies, now one each: the report's title, the memory-bound share, the
dominant dtype, the budget names and the count checks.

Every expected value below is what the old copies gave on the same hand-made report (worked out
next to it), so that folding them into one changed nothing a user sees.
"""

from __future__ import annotations

import re
from types import MappingProxyType

import numpy as np
import pytest
import torch

from layerprof.analysis import budgets
from layerprof.cli import audit as audit_cli
from layerprof.cli import build_parser, config
from layerprof.core.records import LayerRow, Verdict
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.table import get_device
from layerprof.report import shares
from layerprof.report.facade import Report
from layerprof.report.html import render_html
from layerprof.report.plot_layout import check_label_top
from layerprof.report.render import check_options
from layerprof.report.titles import input_shapes, report_title
from layerprof.roofline.verdicts import dominant_dtype
from layerprof.timing.layers import check_counts
from layerprof.walk.inputs import InputSpec, TensorSpec

T4 = get_device("t4")


def verdict(target: str, bound: str, ms: float) -> Verdict:
    return Verdict(target, bound, "matrix", 10.0, ms)  # type: ignore[arg-type]


def verdicts(*items: Verdict) -> MappingProxyType[str, Verdict]:
    return MappingProxyType({v.target: v for v in items})


# conv: fp16, 300 FLOPs + 100 bytes; compute-bound 3 ms on t4, memory-bound 5 ms on orin.
# relu: fp32, 100 FLOPs + 400 bytes; memory-bound 1 ms on t4, no verdict on orin.
# head/add: bf16, 10 FLOPs + 10 bytes; memory-bound 0.5 ms on t4 and 1 ms on orin.
ROWS = (
    LayerRow(
        "conv", "Conv2d", dtype="float16", flops=300, bytes_read=50, bytes_written=50,
        roofline=verdicts(verdict("t4", "compute", 3.0), verdict("orin", "memory", 5.0)),
    ),
    LayerRow(
        "relu", "ReLU", dtype="float32", flops=100, bytes_read=200, bytes_written=200,
        roofline=verdicts(verdict("t4", "memory", 1.0)),
    ),
    LayerRow(
        "head/add", "add", dtype="bfloat16", flops=10, bytes_read=5, bytes_written=5,
        roofline=verdicts(verdict("t4", "memory", 0.5), verdict("orin", "memory", 1.0)),
    ),
)  # fmt: skip
TOTAL = LayerRow("total", "Net", flops=410, roofline=verdicts(verdict("t4", "compute", 4.5)))
INPUTS = InputSpec(
    (TensorSpec((2, 3, 8, 8), torch.float32, "cpu"), None),
    (("mask", TensorSpec((2, 8), torch.bool, "cpu")), ("none", None)),
)


def make_report(**fields: object) -> Report:
    return Report(layers=ROWS, total=TOTAL, **fields)  # type: ignore[arg-type]


# -- the title ---------------------------------------------------------------------------------------
# (report fields, table's first line, HTML heading, picture's title) as the three old copies gave them
TITLES = [
    (
        {"model_name": "Net", "inputs": INPUTS},
        "layerprof: Net (2x3x8x8, mask=2x8 bool)",
        "layerprof: Net",
        "Net (2x3x8x8, mask=2x8 bool)",
    ),
    ({"model_name": "Net"}, "layerprof: Net ()", "layerprof: Net", "Net"),
    ({"model_name": "Net", "inputs": InputSpec(())}, "layerprof: Net ()", "layerprof: Net", "Net"),
    ({}, "layerprof:  ()", "layerprof: ", "model"),
]


@pytest.mark.parametrize(
    ("fields", "table", "heading", "picture"), TITLES, ids=["full", "no-inputs", "empty", "bare"]
)
def test_one_title_for_the_table_the_page_and_the_picture(
    fields: dict[str, object], table: str, heading: str, picture: str
) -> None:
    report = make_report(**fields)
    assert report_title(report) == table
    assert report_title(report, shapes=False) == heading
    assert report_title(report, brand=False) == picture
    assert report.table().splitlines()[0] == table
    page = render_html(report, plot=False)
    assert f"<title>{heading}</title>" in page and f"<h1>{heading}</h1>" in page


def test_input_shapes_skip_what_is_not_a_tensor() -> None:
    assert input_shapes(make_report(inputs=INPUTS)) == ["2x3x8x8", "mask=2x8"]
    assert input_shapes(make_report()) == []
    page = render_html(make_report(model_name="Net", inputs=INPUTS), plot=False)
    assert "inputs 2x3x8x8, mask=2x8 (bool, float32); counted, not timed; targets: none" in page


# -- the memory-bound share ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "share"),
    # t4: memory-bound 1 + 0.5 of 3 + 1 + 0.5 = 4.5 ms; orin: all 6 ms memory-bound; nowhere: 0
    [("t4", 1.5 / 4.5), ("orin", 1.0), ("nowhere", 0.0)],
)
def test_the_budget_and_the_page_read_one_memory_bound_share(target: str, share: float) -> None:
    report = make_report()
    assert shares.memory_bound_share(report.layers, target) == pytest.approx(share)
    assert budgets.memory_bound_share(report, target) == shares.memory_bound_share(report.layers, target)


def test_the_page_shows_the_budgets_memory_bound_share() -> None:
    page = render_html(make_report(targets=(T4,)), plot=False)
    cells = re.findall(r"<td>([\d.]+%)</td>", page)
    assert "33.3%" in cells  # 1.5 / 4.5


# -- the dominant dtype ----------------------------------------------------------------------------
def test_the_dominant_dtype_weighs_flops_and_bytes() -> None:
    assert dominant_dtype(ROWS) == "float32"  # relu's 500 beats conv's 400 and add's 20
    assert dominant_dtype([ROWS[0], ROWS[2]]) == "float16"
    assert dominant_dtype(iter(ROWS[2:])) == "bfloat16"  # any iterable, read once
    assert dominant_dtype([]) == "float32"
    # A dtype the device table does not price counts as float32, as the verdicts price it.
    assert dominant_dtype([LayerRow("x", "y", dtype="int4", flops=5)]) == "float32"


# -- the budget names -------------------------------------------------------------------------------
def test_the_budget_names_have_one_source() -> None:
    assert budgets.BUDGET_NAMES == (
        "max_gflops", "max_params", "max_latency_ms", "max_memory_bound_share", "min_roofline_efficiency",
        "max_peak_memory",
    )  # fmt: skip
    assert config.BUDGET_KEYS is budgets.BUDGET_NAMES
    assert set(config.CONFIG_KEYS) >= set(budgets.BUDGET_NAMES)


def test_every_budget_has_an_audit_flag_that_reaches_its_limit() -> None:
    values = ["1", "2", "3", "0.4", "0.5", "6KiB"]
    line = ["audit", "demo"]
    for name, value in zip(budgets.BUDGET_NAMES, values, strict=True):
        line += [f"--{name.replace('_', '-')}", value]
    args = build_parser().parse_args(line)
    limits = audit_cli._budgets(args, config.AuditConfig())
    assert limits.limits() == tuple(zip(budgets.BUDGET_NAMES, (1.0, 2.0, 3.0, 0.4, 0.5, 6144.0), strict=True))


# -- counts checked by core.validate ---------------------------------------------------------------
def test_check_counts_gives_ints_and_takes_numpy_integers() -> None:
    assert check_counts(np.int64(2), np.int32(5)) == (2, 5)
    assert check_counts(0, 1) == (0, 1)


@pytest.mark.parametrize(
    ("warmup", "repeat", "message"),
    [
        (5, 0, "repeat must be a positive int, got 0"),
        (5, 2.5, "repeat must be a positive int, got 2.5"),
        (-1, 3, "warmup must be a non-negative int, got -1"),
        (True, 3, "warmup must be a non-negative int, got True"),
    ],
)
def test_check_counts_names_the_argument_and_the_value(warmup: object, repeat: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(message)}$"):
        check_counts(warmup, repeat)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"top": 0}, "top must be a positive int, got 0"),
        ({"top": True}, "top must be a positive int, got True"),
        ({"depth": -1}, "depth must be a non-negative int, got -1"),
        ({"depth": 1.0}, "depth must be a non-negative int, got 1.0"),
    ],
)
def test_table_options_name_the_argument_and_the_value(options: dict[str, object], message: str) -> None:
    given: dict[str, object] = {"depth": None, "sort": None, "top": None, "fmt": "simple", **options}
    with pytest.raises(InvalidArgumentError, match=f"^{re.escape(message)}$"):
        check_options(**given)  # type: ignore[arg-type]


def test_label_top_takes_numpy_integers_and_names_a_bad_value() -> None:
    assert check_label_top(np.int64(3)) == 3
    with pytest.raises(InvalidArgumentError, match=r"^label_top must be a non-negative int, got -1$"):
        check_label_top(-1)
