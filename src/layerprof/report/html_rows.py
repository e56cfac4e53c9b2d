"""The HTML page's layer table as data: columns, and the rows as a module tree.

Every report row is a leaf of the tree; each module that holds rows becomes a container row above
them, its counts and times the sums of the rows inside (:func:`layerprof.report.rollup.merge`, as
``depth=`` rolls up). The rows come in the tree's preorder, children in the order they first ran, so
that a page without script still reads top to bottom. Each cell carries its display text and, for a
number, the exact value the page sorts by. The page's script folds, sorts and filters these rows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerprof.core import rownames
from layerprof.core.records import LayerRow, Phase
from layerprof.core.units import milliseconds
from layerprof.hardware.specs import PeakFallbackWarning
from layerprof.report.render import count_cells, select_rows, shows_efficiency
from layerprof.report.rollup import merge

if TYPE_CHECKING:
    from layerprof.report.facade import Report

__all__ = ["Cell", "Column", "LayerTable", "TableRow", "layer_table"]

# render.SORT_KEYS name -> the column (or the row attribute) the page sorts by.
_SORT_COLUMNS = {"flops": "flops", "bytes": "bytes", "params": "params", "intensity": "intensity"}


@dataclass(frozen=True, slots=True)
class Column:
    label: str
    key: str  # what the page's script calls the column: "flops", "roof@t4"
    numeric: bool
    css: str = ""


@dataclass(frozen=True, slots=True)
class Cell:
    text: str
    value: str | None = None  # a number's exact value (repr), "" for a number that is missing
    css: str = ""


@dataclass(frozen=True, slots=True)
class TableRow:
    """One line of the table. ``id`` is unique on the page; ``parent`` is the id of the container
    row above it ("" at the top); ``level`` its indentation; ``depth`` its name's depth (what
    ``depth=`` cuts at)."""

    id: str
    parent: str
    level: int
    depth: int
    container: bool
    name: str
    cells: tuple[Cell, ...]  # every column after the name
    macs: int


@dataclass(frozen=True, slots=True)
class LayerTable:
    columns: tuple[Column, ...]
    rows: tuple[TableRow, ...]
    total: TableRow
    fold: TableRow | None  # the ``(N more rows)`` row of a ``top=`` cut, shown while the cut is
    leaf_ids: dict[tuple[Phase, str], str]  # a report row -> its line's id (for the charts' links)
    view: str  # "tree" or "flat": how the page opens
    depth: int | None
    sort: str | None  # a column key (or "macs")
    top: int | None
    max_depth: int


def layer_table(report: Report, depth: int | None, sort: str | None, top: int | None) -> LayerTable:
    """The table for ``report``: it opens as the text table would show it with these options (a
    tree folded at ``depth``; flat, sorted and cut when ``sort`` or ``top`` is given)."""
    rows = list(report.layers)
    timed = report.total.time_ms is not None or any(r.time_ms is not None for r in rows)
    with_phase = any(r.phase == "backward" for r in rows)
    columns = _columns(report, timed, with_phase)
    lines: list[TableRow] = []
    leaf_ids: dict[tuple[Phase, str], str] = {}
    for node in _tree(report, rows):
        line_id = f"r{len(lines)}"
        lines.append(node.line(line_id, _cells(node.row, report, timed, with_phase)))
        if not node.container:
            leaf_ids.setdefault((node.row.phase, node.row.name), line_id)
    total_cells = _cells(report.total, report, timed, with_phase)
    total = TableRow("total", "", 0, 0, False, report.total.name, total_cells, report.total.macs)
    fold = None
    if top is not None:
        shown = select_rows(report, depth, sort, top)
        if len(shown) > top:  # the last row stands for the ones the cut left out
            cut = shown[-1]
            cut_cells = _cells(cut, report, timed, with_phase)
            fold = TableRow("fold", "", 0, 0, False, cut.name, cut_cells, cut.macs)
    return LayerTable(
        columns=columns,
        rows=tuple(lines),
        total=total,
        fold=fold,
        leaf_ids=leaf_ids,
        view="flat" if sort is not None or top is not None else "tree",
        depth=depth,
        sort=_sort_column(report, sort),
        top=top,
        max_depth=max((line.depth for line in lines), default=0),
    )


def _sort_column(report: Report, sort: str | None) -> str | None:
    if sort is None:
        return None
    if sort == "time":
        return "time"
    if sort == "roofline_time":
        return f"roof@{report.targets[0].name}" if report.targets else None
    return _SORT_COLUMNS.get(sort, sort)  # "macs" is a row attribute, not a column


def _columns(report: Report, timed: bool, with_phase: bool) -> tuple[Column, ...]:
    columns = [Column("layer", "name", False, "name"), Column("type", "kind", False, "name")]
    if with_phase:
        columns.append(Column("phase", "phase", False, "name"))
    columns += [
        Column("kernel", "kernel", True),
        Column("output", "output", True),
        Column("params", "params", True),
        Column("FLOPs", "flops", True),
        Column("bytes", "bytes", True),
        Column("FLOP/B", "intensity", True),
    ]
    if timed:
        columns += [Column("time ms", "time", True), Column("IQR ms", "iqr", True)]
    for device in report.targets:
        columns += [
            Column(f"bound@{device.name}", f"bound@{device.name}", False),
            Column(f"roof ms@{device.name}", f"roof@{device.name}", True),
        ]
        if shows_efficiency(report, device.name, timed):
            columns.append(Column(f"eff@{device.name}", f"eff@{device.name}", True))
    return tuple(columns)


def _number(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _cells(row: LayerRow, report: Report, timed: bool, with_phase: bool) -> tuple[Cell, ...]:
    kernel, output, params, flops, moved, intensity = count_cells(row)
    cells = [Cell(row.kind, css="name")]
    if with_phase:
        cells.append(Cell(row.phase, css="name"))
    cells += [
        Cell(kernel, _number(math.prod(row.kernel_size) if row.kernel_size else None)),
        Cell(output, _number(math.prod(row.output_shapes[0]) if row.output_shapes else None)),
        Cell(params, _number(row.params)),
        Cell(flops, _number(row.flops)),
        Cell(moved, _number(row.bytes_total)),
        Cell(intensity, _number(row.intensity)),
    ]
    if timed:
        cells += [
            Cell(milliseconds(row.time_ms), _number(row.time_ms)),
            Cell(milliseconds(row.time_iqr_ms), _number(row.time_iqr_ms)),
        ]
    for device in report.targets:
        verdict = row.roofline.get(device.name)
        with_efficiency = shows_efficiency(report, device.name, timed)
        if verdict is None:
            cells += [Cell(""), Cell("", "")] + ([Cell("", "")] if with_efficiency else [])
            continue
        cells.append(Cell(verdict.bound, css="memory" if verdict.memory_bound else verdict.bound))
        cells.append(Cell(milliseconds(verdict.roofline_time_ms), _number(verdict.roofline_time_ms)))
        if with_efficiency:
            eff = verdict.roofline_efficiency
            cells.append(Cell("-" if eff is None else f"{eff:.0%}", _number(eff)))
    return tuple(cells)


@dataclass(slots=True)
class _Node:
    row: LayerRow
    container: bool
    level: int
    parent: _Node | None = None
    line_id: str = ""

    def line(self, line_id: str, cells: tuple[Cell, ...]) -> TableRow:
        self.line_id = line_id
        parent = self.parent.line_id if self.parent is not None else ""
        depth = rownames.depth(self.row.name)
        row = self.row
        return TableRow(line_id, parent, self.level, depth, self.container, row.name, cells, row.macs)


def _containers(name: str) -> list[str]:
    """The modules above a row, outermost first: ``layer1``, ``layer1.0`` for ``layer1.0.conv1``
    and for ``layer1.0/add``."""
    parts = rownames.module_path(name)
    inner = len(parts) + 1 if rownames.is_glue(name) else len(parts)
    return [".".join(parts[:k]) for k in range(1, inner)]


def _tree(report: Report, rows: Sequence[LayerRow]) -> list[_Node]:
    """Containers and rows in preorder, children in the order they first ran, per phase."""
    members: dict[tuple[Phase, str], list[LayerRow]] = {}
    for row in rows:
        for container in _containers(row.name):
            members.setdefault((row.phase, container), []).append(row)
    made: dict[tuple[Phase, str], _Node] = {}
    children: dict[int, list[_Node]] = {}
    roots: list[_Node] = []
    for row in rows:
        parent: _Node | None = None
        for container in _containers(row.name):
            key = (row.phase, container)
            node = made.get(key)
            if node is None:
                inside = members[key]
                kind = report.module_kinds.get(container, f"{len(inside)} rows")
                with warnings.catch_warnings():  # the rows inside said so when they were priced
                    warnings.simplefilter("ignore", PeakFallbackWarning)
                    merged = merge(container, kind, inside, report.targets, report.timed_on)
                node = made[key] = _Node(merged, True, 0 if parent is None else parent.level + 1, parent)
                (children.setdefault(id(parent), []) if parent is not None else roots).append(node)
            parent = node
        leaf = _Node(row, False, 0 if parent is None else parent.level + 1, parent)
        (children.setdefault(id(parent), []) if parent is not None else roots).append(leaf)
    ordered: list[_Node] = []

    def visit(nodes: list[_Node]) -> None:
        for node in nodes:
            ordered.append(node)
            visit(children.get(id(node), []))

    visit(roots)
    return ordered
