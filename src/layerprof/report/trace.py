"""A timed report as a Chrome trace-event JSON file, for Perfetto (ui.perfetto.dev) and chrome://tracing.

Rows carry median times, not start times, so **the timeline is synthesised from the medians**: the
rows are laid out back to back in execution order, the forward rows, then the backward rows, each
row as long as its median time. Gaps, overlaps and run-to-run spread are not shown (``time_iqr_ms``
is in each event's ``args``), and nothing ran at the microsecond a slice starts on. What the trace
shows is how a forward's (or backward's) time divides among the layers, nested as the modules are.

The file is the trace-event format's JSON object form (``{"traceEvents": [...]}``):

* one process (``pid`` 1, named after the model) and, on thread ``tid`` 1, a complete event
  (``"ph": "X"``, ``ts`` and ``dur`` in microseconds) per row, inside one range per phase
  (``forward``, ``backward``) and one range per container module, built from the row names' module
  paths (:mod:`layerprof.core.rownames`): ``layer1`` encloses ``layer1.0``, which encloses
  ``layer1.0.conv1`` and ``layer1.0/add``. A container whose rows are not consecutive (a module
  called again later) gets one range per run of consecutive rows, so ranges always nest;
* each event's ``args``: kind, calls, FLOPs (matrix and vector), bytes read and written,
  intensity, the median and IQR times, the dtype and, per target, the bound and the roofline time
  (a container's and a phase's are its rows' sums, judged again as one);
* with kernel times (``profile(..., kernel_time=True)`` on a GPU), thread ``tid`` 2 carries each
  forward row's CUDA kernel time, starting with its row. A slice longer than its row would overlap
  the next row's, so it is cut to the row's length, with ``"clipped": true`` and the full time in
  its ``args``;
* metadata events (``"ph": "M"``) naming the process and the threads and ordering the threads.

An untimed report (``analyze``) has no times to lay out: :func:`trace_dict` refuses it with
:class:`~layerprof.errors.InvalidArgumentError` rather than draw predicted roofline times that a
reader could take for measured ones. A row without a time in a timed report (none in reports that
``profile`` or ``watch`` make) becomes a zero-length slice marked ``"untimed": true``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerprof.core import rownames
from layerprof.core.records import LayerRow
from layerprof.errors import InvalidArgumentError
from layerprof.report.rollup import merge
from layerprof.version import __version__

if TYPE_CHECKING:
    from layerprof.report.facade import Report

__all__ = ["KERNELS_TID", "PID", "ROWS_TID", "to_trace", "trace_dict"]

PID = 1
ROWS_TID = 1
KERNELS_TID = 2
NOTE = (
    "timeline synthesised by layerprof from median times: rows back to back in execution order "
    "(forward, then backward), not a recording of one run"
)


@dataclass(slots=True)
class _Slice:
    """One complete event under construction: containers get their length when they close."""

    name: str
    category: str
    start_ns: int
    level: int
    duration_ns: int = 0
    args: dict[str, Any] = field(default_factory=dict)
    members: list[LayerRow] = field(default_factory=list)


def to_trace(report: Report, path: str | Path | None = None) -> str:
    """The trace as JSON text (see the module docs), also written to ``path`` when given."""
    text = json.dumps(trace_dict(report), indent=None, separators=(",", ":")) + "\n"
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def trace_dict(report: Report) -> dict[str, Any]:
    """The trace as a JSON-ready dict: ``traceEvents``, ``displayTimeUnit`` and ``otherData``."""
    if not any(row.time_ms is not None for row in report.layers):
        raise InvalidArgumentError(
            "this report has no measured times (analyze() counts without timing); a trace lays out "
            "measured times: make the report with layerprof.profile() or watch(), or audit --time"
        )
    for row in report.layers:
        if row.time_ms is not None and not (math.isfinite(row.time_ms) and row.time_ms >= 0):
            raise InvalidArgumentError(
                f"row {row.name!r} ({row.phase}) has time_ms={row.time_ms!r}; a trace needs times >= 0"
            )
    slices: list[_Slice] = []
    cursor = 0
    row_slices: dict[int, _Slice] = {}
    for phase in ("forward", "backward"):
        rows = [row for row in report.layers if row.phase == phase]
        if rows:
            cursor = _lay_out(phase, rows, report, cursor, slices, row_slices)
    events = _metadata(report)
    events += [_event(piece, ROWS_TID) for piece in slices]
    events += _kernel_events(report, row_slices)
    return {
        "traceEvents": events,
        "displayTimeUnit": "ms",
        "otherData": _other_data(report),
    }


def _lay_out(
    phase: str,
    rows: Sequence[LayerRow],
    report: Report,
    cursor: int,
    slices: list[_Slice],
    row_slices: dict[int, _Slice],
) -> int:
    """Append the phase's range, its container ranges and its rows (in pre-order); the end, in ns."""
    whole = _Slice(phase, "phase", cursor, 0)
    slices.append(whole)
    open_ranges: list[_Slice] = []
    for row in rows:
        wanted = _containers(row.name)
        keep = 0
        while keep < min(len(open_ranges), len(wanted)) and open_ranges[keep].name == wanted[keep]:
            keep += 1
        while len(open_ranges) > keep:
            _close(open_ranges.pop(), cursor, report)
        for name in wanted[keep:]:
            opened = _Slice(name, "container", cursor, len(open_ranges) + 1)
            slices.append(opened)
            open_ranges.append(opened)
        duration = _ns(row.time_ms)
        piece = _Slice(row.name, phase, cursor, len(open_ranges) + 1, duration, _row_args(row, report))
        slices.append(piece)
        row_slices[id(row)] = piece
        for container in (whole, *open_ranges):
            container.members.append(row)
        cursor += duration
    while open_ranges:
        _close(open_ranges.pop(), cursor, report)
    _close(whole, cursor, report, kind=report.model_name)
    return cursor


def _containers(name: str) -> list[str]:
    """The container modules a row lies in, outermost first: ``["layer1", "layer1.0"]`` for both
    ``layer1.0.conv1`` and ``layer1.0/add``; none for ``(root)``, ``(root)/add``, ``(ddp)/allreduce``."""
    path = rownames.module_path(name)
    _, is_glue = rownames.split(name)
    count = len(path) if is_glue else len(path) - 1
    return [".".join(path[: i + 1]) for i in range(count)]


def _close(piece: _Slice, end_ns: int, report: Report, kind: str | None = None) -> None:
    piece.duration_ns = end_ns - piece.start_ns
    label = kind if kind is not None else report.module_kinds.get(piece.name, "")
    summed = merge(piece.name, label, piece.members, report.targets, report.timed_on)
    piece.args = {**_row_args(summed, report), "rows": len(piece.members)}
    del piece.args["calls"]


def _row_args(row: LayerRow, report: Report) -> dict[str, Any]:
    args: dict[str, Any] = {
        "phase": row.phase,
        "kind": row.kind,
        "calls": row.calls,
        "flops": row.flops,
        "matrix_flops": row.matrix_flops,
        "vector_flops": row.vector_flops,
        "bytes_read": row.bytes_read,
        "bytes_written": row.bytes_written,
        "bytes": row.bytes_total,
        "intensity": row.intensity,
        "time_ms": row.time_ms,
        "time_iqr_ms": row.time_iqr_ms,
        "dtype": row.dtype,
        "bound": row.bound,
    }
    for target in report.targets:
        verdict = row.roofline.get(target.name)
        if verdict is not None:
            args[f"bound@{target.name}"] = verdict.bound
            args[f"roofline_time_ms@{target.name}"] = verdict.roofline_time_ms
            if verdict.roofline_efficiency is not None:
                args[f"roofline_efficiency@{target.name}"] = verdict.roofline_efficiency
    if row.time_ms is None:
        args["untimed"] = True
    return args


def _ns(milliseconds: float | None) -> int:
    return 0 if milliseconds is None else round(milliseconds * 1e6)


def _us(nanoseconds: int) -> float:
    return round(nanoseconds / 1000, 3)


def _event(piece: _Slice, tid: int) -> dict[str, Any]:
    return {
        "name": piece.name,
        "cat": piece.category,
        "ph": "X",
        "ts": _us(piece.start_ns),
        "dur": _us(piece.duration_ns),
        "pid": PID,
        "tid": tid,
        "args": piece.args,
    }


def _kernel_events(report: Report, row_slices: dict[int, _Slice]) -> list[dict[str, Any]]:
    times = report.kernel_time_ms
    if times is None:
        return []
    events = []
    for row in report.forward:
        kernel_ms = times.get(row.name)
        piece = row_slices.get(id(row))
        if not kernel_ms or piece is None:
            continue
        duration = min(_ns(kernel_ms), piece.duration_ns)
        args = {"kernel_time_ms": kernel_ms, "time_ms": row.time_ms, "clipped": duration < _ns(kernel_ms)}
        kernel = _Slice(row.name, "kernel", piece.start_ns, 1, duration, args)
        events.append(_event(kernel, KERNELS_TID))
    return events


def _metadata(report: Report) -> list[dict[str, Any]]:
    def meta(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
        return {"name": name, "ph": "M", "ts": 0, "pid": PID, "tid": tid, "args": args}

    model = report.model_name or "model"
    events = [
        meta("process_name", 0, {"name": f"layerprof: {model}"}),
        meta("process_labels", 0, {"labels": "synthesised from median times"}),
        meta("thread_name", ROWS_TID, {"name": "layers (median times, back to back)"}),
        meta("thread_sort_index", ROWS_TID, {"sort_index": 0}),
    ]
    if report.kernel_time_ms is not None:
        events += [
            meta("thread_name", KERNELS_TID, {"name": "CUDA kernels (per row, from its start)"}),
            meta("thread_sort_index", KERNELS_TID, {"sort_index": 1}),
        ]
    return events


def _other_data(report: Report) -> dict[str, str]:
    data = {
        "generator": f"layerprof {__version__}",
        "model": report.model_name,
        "note": NOTE,
        "targets": ", ".join(target.name for target in report.targets),
        "timed_on": ", ".join(sorted(report.timed_on)),
    }
    if report.total.time_ms is not None:
        data["end_to_end_ms"] = f"{report.total.time_ms:.6g}"
    if report.coverage is not None:
        data["coverage"] = f"{report.coverage:.4g}"
    if report.world_size > 1:
        data["world_size"] = str(report.world_size)
    return data
