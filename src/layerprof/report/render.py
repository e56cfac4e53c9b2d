"""Turning a report into a text table (tabulate): a pipeline of small pure steps, no mutation.

rows -> roll up (depth) -> sort -> cut (top, the rest folded into one row) -> cells -> tabulate,
with the conventions in a header and the totals as the last line. The columns always add up to it.
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from tabulate import tabulate, tabulate_formats

from layerprof.core import rownames
from layerprof.core.records import LayerRow
from layerprof.core.units import binary_bytes, milliseconds, shape, si
from layerprof.core.validate import non_negative_int, positive_int
from layerprof.errors import InvalidArgumentError
from layerprof.report.rollup import fold_tail, roll_up
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
}

CONVENTION = (
    "FLOP = one multiply or one add (1 MAC = 2 FLOPs). Bytes = tensors each op reads + writes, "
    "at their own dtype: compulsory DRAM traffic per kernel (a lower bound). Intensity = FLOPs / bytes."
)


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


def select_rows(report: Report, depth: int | None, sort: str | None, top: int | None) -> list[LayerRow]:
    rows: list[LayerRow] = list(report.layers)
    if depth is not None:
        rows = roll_up(rows, depth, report.targets, report.module_kinds, report.timed_on)
    if sort is not None:
        rows = sorted(rows, key=SORT_KEYS[sort], reverse=True)
    if top is not None:
        rows = fold_tail(rows, top, report.targets, report.timed_on)
    return rows


def _headers(report: Report, timed: bool, with_phase: bool) -> list[str]:
    headers = ["layer", "type"]
    if with_phase:
        headers.append("phase")
    headers += ["kernel", "output", "params", "FLOPs", "bytes", "FLOP/B"]
    if with_phase:
        headers.append("bwd/fwd")  # a backward row's FLOPs over its forward row's
    if timed:
        headers += ["median ms" if report.ranks is not None else "time ms", "IQR ms"]
        if report.ranks is not None:
            headers += ["max ms", "max rank", "max/med"]
    if report.kernel_time_ms is not None:
        headers.append("kernel ms")
    for target in report.targets:
        headers += [f"bound@{target.name}", f"roof ms@{target.name}"]
        if shows_efficiency(report, target.name, timed):
            headers.append(f"eff@{target.name}")
    return headers


def count_cells(row: LayerRow) -> list[str]:
    """kernel, output shape, params, FLOPs, bytes and intensity of a row, in human units (shared with
    the HTML report)."""
    return [
        "x".join(str(k) for k in row.kernel_size) if row.kernel_size else "",
        shape(row.output_shapes[0]) if row.output_shapes else "",
        si(row.params) if row.params else "",
        si(row.flops),
        binary_bytes(row.bytes_total),
        f"{row.intensity:.3g}",
    ]


def shows_efficiency(report: Report, target_name: str, timed: bool) -> bool:
    """Efficiency is shown only for targets that describe the device the times were taken on."""
    return timed and target_name in report.timed_on


def _cells(row: LayerRow, report: Report, timed: bool, with_phase: bool, ratio: str = "") -> list[str]:
    cells = [row.name, row.kind]
    if with_phase:
        cells.append(row.phase)
    cells += count_cells(row)
    if with_phase:
        cells.append(ratio)
    if timed:
        cells += [milliseconds(row.time_ms), milliseconds(row.time_iqr_ms)]
        if report.ranks is not None:
            cells += _rank_cells(row, report)
    if report.kernel_time_ms is not None:
        cells.append(milliseconds(_kernel_ms(row, report)))
    for target in report.targets:
        verdict = row.roofline.get(target.name)
        with_efficiency = shows_efficiency(report, target.name, timed)
        if verdict is None:
            cells += ["", ""] + ([""] if with_efficiency else [])
            continue
        mark = "".join({"above-roof": "!", "too-short": "~"}.get(f, "?") for f in verdict.flags)
        cells += [verdict.bound + mark, milliseconds(verdict.roofline_time_ms)]
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


def _rank_cells(row: LayerRow, report: Report) -> list[str]:
    """max ms, max rank, max/med: the slowest rank of a gathered row; ``*`` marks a straggler."""
    times = _rank_times(row, report)
    known = [(t, rank) for rank, t in enumerate(times or ()) if t is not None]
    if not known or report.ranks is None:
        return ["", "", ""]
    slowest_ms, slowest_rank = max(known, key=lambda known_time: (known_time[0], -known_time[1]))
    median_ms = statistics.median(t for t, _ in known)
    if median_ms <= 0:
        return [milliseconds(slowest_ms), str(slowest_rank), ""]
    ratio = slowest_ms / median_ms
    mark = "*" if ratio > report.ranks.straggler_threshold else ""
    return [milliseconds(slowest_ms), str(slowest_rank), f"{ratio:.2f}{mark}"]


def _footer(report: Report) -> list[str]:
    lines = []
    for target in report.targets:
        verdict = report.total.roofline.get(target.name)
        if verdict is not None:
            lines.append(
                f"predicted on {target.name}: {milliseconds(verdict.roofline_time_ms)} ms "
                f"(sum of per-row roofline times: a lower bound), model {verdict.bound}-bound overall"
            )
    if report.coverage is not None and report.total.time_ms is not None:
        lines.append(
            f"coverage: rows sum to {report.coverage:.0%} of the end-to-end "
            f"{milliseconds(report.total.time_ms)} ms {'step' if report.backward else 'forward'}"
        )
    if report.ranks is not None:
        lines.append(
            f"times: median over {report.ranks.world_size} ranks (counts: rank 0's); max ms, max rank: "
            f"the slowest rank; * straggler: max / median above {report.ranks.straggler_threshold:g}"
        )
    if report.allreduce is not None:
        allreduce = report.allreduce
        over = "median over ranks, " if report.ranks is not None else ""
        lines.append(
            f"DDP all-reduce: {milliseconds(allreduce.time_ms)} ms over {allreduce.buckets} "
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


def table(
    report: Report,
    *,
    depth: int | None = None,
    sort: str | None = None,
    top: int | None = None,
    fmt: str = "simple",
) -> str:
    """The per-layer table with a totals line; columns sum to it whatever depth, sort and top are."""
    check_options(depth, sort, top, fmt)
    rows = select_rows(report, depth, sort, top)
    timed = report.total.time_ms is not None or any(r.time_ms is not None for r in rows)
    with_phase = any(r.phase == "backward" for r in rows)
    forward_flops = {r.name: r.flops for r in rows if r.phase == "forward"}
    body = [_cells(r, report, timed, with_phase, _ratio(r, forward_flops.get(r.name))) for r in rows]
    forward_total = sum(r.flops for r in report.layers if r.phase == "forward")
    backward_total = sum(r.flops for r in report.layers if r.phase == "backward")
    total_ratio = f"{backward_total / forward_total:.2f}" if with_phase and forward_total else ""
    body.append(_cells(report.total, report, timed, with_phase, total_ratio))
    text = tabulate(body, headers=_headers(report, timed, with_phase), tablefmt=fmt, disable_numparse=True)
    return "\n".join([report_title(report), CONVENTION, text, *_footer(report)])


def _ratio(row: LayerRow, forward_flops: int | None) -> str:
    """``bwd/fwd`` of a backward row: its FLOPs over those of the forward row of the same name."""
    if row.phase != "backward" or not forward_flops:
        return ""
    return f"{row.flops / forward_flops:.2f}"
