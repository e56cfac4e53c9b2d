"""Turning a report into a text table (tabulate): a pipeline of small pure steps, no mutation.

rows -> roll up (depth) -> sort -> cut (top, the rest folded into one row) -> cells -> tabulate,
with the conventions in a header and the totals as the last line. The columns always add up to it.

The table says what was measured and what was not: a ``calls`` column when some row ran more than
once (a reused module is one row), ``varies`` for the output of a row whose calls had different
shapes, ``^`` after a time a glue row shares with its container, ``-`` for an IQR of one sample, no
kernel or shape for a row that stands for several, and each time column in ``ms`` or ``us``
(:mod:`~layerprof.report.timecells`). Footer lines explain every mark shown.
"""

from __future__ import annotations

import html
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tabulate import tabulate, tabulate_formats

from layerprof.core import rownames
from layerprof.core.records import LayerRow
from layerprof.core.units import binary_bytes, shape, si
from layerprof.core.validate import non_negative_int, positive_int
from layerprof.errors import InvalidArgumentError
from layerprof.report.rollup import fold_tail, roll_up
from layerprof.report.shares import time_shares
from layerprof.report.timecells import TimeCell, duration, resolve_columns
from layerprof.report.titles import report_title

if TYPE_CHECKING:
    from layerprof.report.facade import Report

SORT_KEYS = {
    "flops": lambda r: r.flops,
    "macs": lambda r: r.macs,
    "bytes": lambda r: r.bytes_total,
    "params": lambda r: r.params,
    "intensity": lambda r: r.intensity,
    "time": lambda r: r.time_ms or 0.0,
    "roofline_time": lambda r: r.roofline_time_ms or 0.0,
    "memory": lambda r: r.activation_bytes,
}

CONVENTION = (
    "FLOP = one multiply or one add (1 MAC = 2 FLOPs). Bytes = tensors each op reads + writes, "
    "at their own dtype: each kernel's compulsory traffic; bound names the level that serves it "
    "(memory(DRAM), memory(L2)) or overhead (the launch floor). Intensity = FLOPs / bytes. "
    "MACs = matrix FLOPs / 2, the figure torchvision and fvcore give."
)
#: After a time a glue row shares with its container (its container's self time, split).
SHARED_MARK = "^"
#: The output cell of a row whose calls had different shapes.
VARIES = "varies"

Cell = str | TimeCell


def check_options(depth: int | None, sort: str | None, top: int | None, fmt: str) -> None:
    if depth is not None:
        non_negative_int("depth", depth)
    if sort is not None and (not isinstance(sort, str) or sort not in SORT_KEYS):
        raise InvalidArgumentError(f"unknown sort key {sort!r}; use one of {', '.join(SORT_KEYS)}")
    if top is not None:
        positive_int("top", top)
    if not isinstance(fmt, str) or fmt not in tabulate_formats:
        raise InvalidArgumentError(
            f"unknown table format {fmt!r}; tabulate knows {', '.join(tabulate_formats)}"
        )


def check_sort(report: Report, sort: str | None) -> None:
    """Refuse a sort by a value no row of ``report`` has: it would leave the rows as they are."""
    if sort == "time" and not any(r.time_ms is not None for r in report.layers):
        raise InvalidArgumentError(
            "sort='time' sorts by measured times, but this report was not timed: profile() or "
            "`layerprof audit --time` measures them; sort by 'roofline_time' or 'flops' instead"
        )
    if sort == "roofline_time" and not report.targets:
        raise InvalidArgumentError(
            "sort='roofline_time' sorts by the roofline time on the first target, but this report has "
            "no target: give target=; sort by 'flops' or 'bytes' instead"
        )


def select_rows(report: Report, depth: int | None, sort: str | None, top: int | None) -> list[LayerRow]:
    check_sort(report, sort)
    rows: list[LayerRow] = list(report.layers)
    if depth is not None:
        rows = roll_up(rows, depth, report.targets, report.module_kinds, report.timed_on)
    if sort is not None:
        rows = sorted(rows, key=SORT_KEYS[sort], reverse=True)
    if top is not None:
        rows = fold_tail(rows, top, report.targets, report.timed_on)
    return rows


@dataclass(frozen=True, slots=True)
class Columns:
    """Which optional columns a table shows."""

    timed: bool
    with_phase: bool
    with_calls: bool
    with_memory: bool = False


def columns(report: Report, rows: list[LayerRow]) -> Columns:
    """Times when anything was timed; phase with backward rows; calls when a row of the report shown
    ran more than once (a rolled-up or folded row has no call count of its own)."""
    own = _own_rows(report)
    return Columns(
        timed=report.total.time_ms is not None or any(r.time_ms is not None for r in rows),
        with_phase=any(r.phase == "backward" for r in rows),
        with_calls=any(r.calls > 1 for r in rows if id(r) in own),
        with_memory=report.memory is not None,
    )


def _own_rows(report: Report) -> set[int]:
    """The ids of the report's own rows: a row not among them stands for several (roll-up, fold)."""
    return {id(r) for r in report.layers}


def _headers(report: Report, cols: Columns) -> list[str]:
    headers = ["layer", "type"]
    if cols.with_phase:
        headers.append("phase")
    if cols.with_calls:
        headers.append("calls")
    headers += ["kernel", "output", "params", "FLOPs", "MACs", "bytes"]
    if cols.with_memory:
        headers.append("act mem")  # what the row's calls allocated and still held when they returned
    headers.append("FLOP/B")
    if cols.with_phase:
        headers.append("bwd/fwd")  # a backward row's FLOPs over its forward row's
    if cols.timed:
        headers += ["median ms" if report.ranks is not None else "time ms", "IQR ms"]
        if report.ranks is not None:
            headers += ["max ms", "max rank", "max/med"]
    if report.kernel_time_ms is not None:
        headers.append("kernel ms")
    for target in report.targets:
        headers += [f"bound@{target.name}", f"roof ms@{target.name}"]
        if shows_efficiency(report, target.name, cols.timed):
            headers.append(f"eff@{target.name}")
    return headers


def output_cell(row: LayerRow) -> str:
    """The first output's shape; ``varies`` when the row's calls had different shapes."""
    if row.shapes_vary:
        return VARIES
    return shape(row.output_shapes[0]) if row.output_shapes else ""


def count_cells(row: LayerRow) -> list[str]:
    """kernel, output shape, params, FLOPs, bytes and intensity of a row, in human units (shared with
    the HTML report)."""
    return [
        "x".join(str(k) for k in row.kernel_size) if row.kernel_size else "",
        output_cell(row),
        si(row.params) if row.params else "",
        si(row.flops),
        binary_bytes(row.bytes_total),
        f"{row.intensity:.3g}",
    ]


def shows_efficiency(report: Report, target_name: str, timed: bool) -> bool:
    """Efficiency is shown only for targets that describe the device the times were taken on."""
    return timed and target_name in report.timed_on


def shares_time(row: LayerRow) -> bool:
    """A forward glue row's time is its share of its container's self time, not a time of its own
    (:mod:`layerprof.timing.rows`); backward rows, the all-reduce's included, are timed node by node."""
    return row.phase == "forward" and rownames.is_glue(row.name) and row.time_ms is not None


def _cells(row: LayerRow, report: Report, cols: Columns, own: bool, ratio: str = "") -> list[Cell]:
    cells: list[Cell] = [row.name, row.kind]
    if cols.with_phase:
        cells.append(row.phase)
    if cols.with_calls:
        cells.append(str(row.calls) if own else "")
    kernel, output, params, flops, moved, intensity = count_cells(row)
    cells += [kernel, output, params, flops, si(row.macs), moved]
    if cols.with_memory:
        cells.append(binary_bytes(row.activation_bytes) if row.activation_bytes else "")
    cells.append(intensity)
    if cols.with_phase:
        cells.append(ratio)
    if cols.timed:
        mark = SHARED_MARK if own and shares_time(row) else ""
        cells += [TimeCell(row.time_ms, mark), TimeCell(row.time_iqr_ms)]
        if report.ranks is not None:
            cells += _rank_cells(row, report)
    if report.kernel_time_ms is not None:
        cells.append(TimeCell(_kernel_ms(row, report)))
    for target in report.targets:
        verdict = row.roofline.get(target.name)
        with_efficiency = shows_efficiency(report, target.name, cols.timed)
        if verdict is None:
            cells += ["", TimeCell(None), *([""] if with_efficiency else [])]
            continue
        flags = "".join({"above-roof": "!", "too-short": "~"}.get(f, "?") for f in verdict.flags)
        cells += [verdict.bound + flags, TimeCell(verdict.roofline_time_ms)]
        if with_efficiency:
            eff = verdict.roofline_efficiency
            cells.append("-" if eff is None else f"{eff:.0%}")
    return cells


def _kernel_ms(row: LayerRow, report: Report) -> float | None:
    # CUDA kernel time of a row; a rolled-up row sums the rows under it, the totals line sums all.
    times = report.kernel_time_ms or {}
    if row.name in times and row is not report.total:
        return times[row.name]
    if row is report.total or row.name == rownames.ROOT:
        return sum(times.values())
    inside = [ms for name, ms in times.items() if rownames.is_inside(name, row.name)]
    return sum(inside) if inside else None


def _rank_times(row: LayerRow, report: Report) -> tuple[float | None, ...] | None:
    """Each rank's time of a displayed row: its own, the totals', or a rolled-up row's rows summed."""
    ranks = report.ranks
    if ranks is None:
        return None
    if row is report.total:
        return ranks.total_ms
    own = ranks.times(row.phase, row.name)
    if own is not None:
        return own
    inside = [
        times
        for (phase, name), times in ranks.rows_ms.items()
        if phase == row.phase and rownames.is_inside(name, row.name)
    ]
    if not inside:
        return None
    return tuple(
        None if any(t[rank] is None for t in inside) else sum(t[rank] or 0.0 for t in inside)
        for rank in range(ranks.world_size)
    )


def _rank_cells(row: LayerRow, report: Report) -> list[Cell]:
    """max ms, max rank, max/med: the slowest rank of a gathered row; ``*`` marks a straggler."""
    times = _rank_times(row, report)
    known = [(t, rank) for rank, t in enumerate(times or ()) if t is not None]
    if not known or report.ranks is None:
        return [TimeCell(None), "", ""]
    slowest_ms, slowest_rank = max(known, key=lambda known_time: (known_time[0], -known_time[1]))
    median_ms = statistics.median(t for t, _ in known)
    if median_ms <= 0:
        return [TimeCell(slowest_ms), str(slowest_rank), ""]
    ratio = slowest_ms / median_ms
    mark = "*" if ratio > report.ranks.straggler_threshold else ""
    return [TimeCell(slowest_ms), str(slowest_rank), f"{ratio:.2f}{mark}"]


def _marks(report: Report, rows: list[LayerRow], cols: Columns) -> list[str]:
    """The footer lines that explain the marks the shown rows carry."""
    own = _own_rows(report)
    lines = []
    if cols.with_calls:
        lines.append(
            "calls: how many times a row's module (a glue row: its op) ran; its counts and time add up "
            "every call"
        )
    if any(r.shapes_vary for r in rows):
        lines.append(f"{VARIES}: the calls had different shapes (row.output_shapes keeps the first call's)")
    if cols.timed and any(shares_time(r) for r in rows if id(r) in own):
        lines.append(
            f"{SHARED_MARK} shared: a container's own ops (its container/op rows) split its self time, its "
            "time minus its submodules', by roofline time; not timed op by op"
        )
    if cols.timed and any(r.time_ms is not None and r.time_iqr_ms is None for r in [*rows, report.total]):
        lines.append("IQR -: no spread (one sample, or a row adding up others: roll-ups, folds, the totals)")
    return lines


def _footer(report: Report) -> list[str]:
    counts = report.parameters  # a line only when some are frozen or unused: the totals show the rest
    lines = [counts.summary()] if counts is not None and (counts.frozen or counts.unused_total) else []
    for target in report.targets:
        verdict = report.total.roofline.get(target.name)
        if verdict is not None:
            lines.append(
                f"predicted on {target.name}: {duration(verdict.roofline_time_ms)} "
                f"(sum of per-row roofline times: a lower bound), model {verdict.bound}-bound overall"
            )
            if verdict.bytes_by_level:  # the cache-aware verdict: what the predicted time is made of
                shares = time_shares(report.layers, target.name)
                lines.append(
                    f"predicted time on {target.name} by what binds each row: "
                    + ", ".join(f"{kind} {share:.0%}" for kind, share in shares.items())
                    + f" ({verdict.kernels} kernels)"
                )
    lines += _memory_lines(report)
    if report.coverage is not None and report.total.time_ms is not None:
        lines.append(
            f"coverage: rows sum to {report.coverage:.0%} of the end-to-end "
            f"{duration(report.total.time_ms)} {'step' if report.backward else 'forward'}"
        )
    if report.ranks is not None:
        lines.append(
            f"times: median over {report.ranks.world_size} ranks (counts: rank 0's); max, max rank: "
            f"the slowest rank; * straggler: max / median above {report.ranks.straggler_threshold:g}"
        )
    if report.allreduce is not None:
        allreduce = report.allreduce
        over = "median over ranks, " if report.ranks is not None else ""
        lines.append(
            f"DDP all-reduce: {duration(allreduce.time_ms)} over {allreduce.buckets} "
            f"bucket{'s' if allreduce.buckets != 1 else ''} "
            f"({over}{binary_bytes(allreduce.payload_bytes)} of gradients), "
            f"{allreduce.hidden_fraction:.0%} hidden behind the backward (counted in both its row and "
            "the backward rows, so the rows can sum to more than the step)"
        )
    if any("above-roof" in v.flags for r in report.layers for v in r.roofline.values()):
        lines.append("! faster than the roof allows: a counting or timing error, or cache reuse")
    if any("too-short" in v.flags for r in report.layers for v in r.roofline.values()):
        lines.append("~ too short to time reliably: not judged")
    if report.unsupported:
        listed = ", ".join(f"{op} x{n}" for op, n in sorted(report.unsupported.items()))
        lines.append(f"no FLOP formula (bytes counted, FLOPs 0): {listed}")
    return lines


def _memory_lines(report: Report) -> list[str]:
    """The peaks: one line per target (a GPU's rounded as the CUDA caching allocator does)."""
    if report.memory is None:
        return []
    memories = list(report.memory_by_target.values()) or [report.memory]
    lines = [f"memory {m.summary()}" for m in memories]
    lines.append(
        "act mem: what a row's calls allocated and still held when they returned (outputs, tensors "
        "saved for backward); memory peaks counted on meta, storage by storage"
    )
    return lines


def _grid(
    report: Report, depth: int | None, sort: str | None, top: int | None, fmt: str
) -> tuple[str, list[str]]:
    """The tabulated rows and totals, and the footer lines: what the text and the HTML tables share."""
    check_options(depth, sort, top, fmt)
    rows = select_rows(report, depth, sort, top)
    cols = columns(report, rows)
    own = _own_rows(report)
    forward_flops = {r.name: r.flops for r in rows if r.phase == "forward"}
    body = [_cells(r, report, cols, id(r) in own, _ratio(r, forward_flops.get(r.name))) for r in rows]
    forward_total = sum(r.flops for r in report.layers if r.phase == "forward")
    backward_total = sum(r.flops for r in report.layers if r.phase == "backward")
    total_ratio = f"{backward_total / forward_total:.2f}" if cols.with_phase and forward_total else ""
    body.append(_cells(report.total, report, cols, False, total_ratio))
    headers, cells = resolve_columns(_headers(report, cols), body)
    text = tabulate(cells, headers=headers, tablefmt=fmt, disable_numparse=True)
    return text, [*_marks(report, rows, cols), *_footer(report)]


def table(
    report: Report,
    *,
    depth: int | None = None,
    sort: str | None = None,
    top: int | None = None,
    fmt: str = "simple",
) -> str:
    """The per-layer table with a totals line; columns sum to it whatever depth, sort and top are."""
    text, footer = _grid(report, depth, sort, top, fmt)
    return "\n".join([report_title(report), CONVENTION, text, *footer])


def notebook_html(report: Report) -> str:
    """The table as HTML for a notebook (``Report._repr_html_``): title, conventions, the rows
    (tabulate's ``html`` format, which escapes every cell) and the footer lines."""
    grid, footer = _grid(report, None, None, None, "html")
    lines = "<br>".join(html.escape(line) for line in footer)
    return (
        f'<div class="layerprof-report"><p><b>{html.escape(report_title(report))}</b><br>'
        f"<small>{html.escape(CONVENTION)}</small></p>{grid}<p><small>{lines}</small></p></div>"
    )


def _ratio(row: LayerRow, forward_flops: int | None) -> str:
    """``bwd/fwd`` of a backward row: its FLOPs over those of the forward row of the same name."""
    if row.phase != "backward" or not forward_flops:
        return ""
    return f"{row.flops / forward_flops:.2f}"
