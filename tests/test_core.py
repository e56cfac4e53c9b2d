"""core: the row-name grammar (layerprof.core.rownames), row fields derived from others, shared validation."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from layerprof.core import rownames
from layerprof.core.records import ROW_FIELDS, LayerRow
from layerprof.report.export import row_dict


@pytest.mark.parametrize(
    ("name", "depth", "module", "glue", "path"),
    [
        ("(root)", 0, "(root)", False, []),
        ("(root)/add", 1, "(root)", True, []),
        ("conv1", 1, "conv1", False, ["conv1"]),
        ("layer1.0.conv1", 3, "layer1.0.conv1", False, ["layer1", "0", "conv1"]),
        ("layer1.0/add", 3, "layer1.0", True, ["layer1", "0"]),
        ("(ddp)/allreduce", 1, "(ddp)", True, []),
        ("(55 more rows)", 0, "(55 more rows)", False, []),
        ("total", 0, "total", False, ["total"]),
    ],
)
def test_each_form_of_name(name: str, depth: int, module: str, glue: bool, path: list[str]) -> None:
    assert rownames.depth(name) == depth
    assert rownames.split(name) == (module, glue)
    assert rownames.is_glue(name) is glue
    assert rownames.module_of(name) == module
    if name != "total":
        assert rownames.module_path(name) == path


@pytest.mark.parametrize(
    ("name", "at", "expected"),
    [
        ("layer1.0.conv1", 1, "layer1"),
        ("layer1.0.conv1", 2, "layer1.0"),
        ("layer1.0.conv1", 3, "layer1.0.conv1"),
        ("layer1.0/add", 2, "layer1.0"),
        ("layer1.0/add", 3, "layer1.0/add"),
        ("layer1.0/add", 0, "(root)"),
        ("(root)/add", 0, "(root)"),
        ("(root)/add", 1, "(root)/add"),
        ("conv1", 0, "(root)"),
    ],
)
def test_ancestor(name: str, at: int, expected: str) -> None:
    assert rownames.ancestor(name, at) == expected


def test_builders_and_their_readers_agree() -> None:
    assert rownames.glue("layer1.0", "add") == "layer1.0/add"
    assert rownames.glue("", "add") == "(root)/add"
    assert rownames.fold(55) == "(55 more rows)"
    assert rownames.is_fold("(55 more rows)") and not rownames.is_fold("(root)")
    assert rownames.ALLREDUCE == "(ddp)/allreduce"
    assert rownames.row_name_of_module("") == "(root)"
    assert rownames.module_path_name("(root)") == ""
    assert rownames.module_path_name("layer1") == "layer1"


@pytest.mark.parametrize(
    ("name", "outer", "inside"),
    [
        ("layer1.0.conv1", "layer1", True),
        ("layer1.0/add", "layer1.0", True),
        ("layer10.conv", "layer1", False),  # a prefix of the name is not a parent
        ("fc", "(root)", True),
        ("layer1", "layer1", False),
    ],
)
def test_is_inside(name: str, outer: str, inside: bool) -> None:
    assert rownames.is_inside(name, outer) is inside


def test_intensity_and_macs_follow_the_counts_after_replace() -> None:
    row = LayerRow("conv", "Conv2d", flops=300, matrix_flops=200, bytes_read=40, bytes_written=20)
    assert (row.macs, row.intensity) == (100, 300 / 60)
    changed = replace(row, flops=600, matrix_flops=500, bytes_written=80)
    # 500 / 2 = 250 MACs; 600 FLOPs / (40 + 80) bytes = 5.0
    assert (changed.macs, changed.intensity) == (250, 5.0)
    assert LayerRow("idle", "Identity").intensity == 0.0


def test_exported_rows_keep_every_field_in_order() -> None:
    row = LayerRow("conv", "Conv2d", flops=300, matrix_flops=200, bytes_read=40, bytes_written=20)
    data = row_dict(row)
    assert list(data) == list(ROW_FIELDS)
    assert (data["macs"], data["intensity"]) == (100, 5.0)


@pytest.mark.parametrize("bad", [True, 0, -3, 2.0, "4", None])
def test_positive_int_refuses_and_names_the_value(bad: object) -> None:
    from layerprof.core.validate import positive_int
    from layerprof.errors import InvalidArgumentError

    with pytest.raises(
        InvalidArgumentError, match=rf"^batch must be a positive int, got {re.escape(repr(bad))}$"
    ):
        positive_int("batch", bad)


def test_positive_int_takes_numpy_integers() -> None:
    import numpy as np

    from layerprof.core.validate import positive_int

    value = positive_int("batch", np.int64(8))
    assert value == 8 and type(value) is int


@pytest.mark.parametrize("field", ["in_channels", "out_channels", "batch"])
def test_conv_cost_refuses_a_bool_channel_count(field: str) -> None:
    import layerprof
    from layerprof.errors import InvalidArgumentError

    arguments: dict[str, object] = {
        "in_channels": 4,
        "out_channels": 4,
        "input_size": (8, 8),
        "kernel_size": 3,
    }
    arguments[field] = True
    with pytest.raises(InvalidArgumentError, match=f"^{field} must be a positive int, got True$"):
        layerprof.conv_cost(**arguments)  # type: ignore[arg-type]
