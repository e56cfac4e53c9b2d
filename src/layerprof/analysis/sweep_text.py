"""A sweep as text: a table (plain, markdown, CSV), JSON, and the one paragraph that answers it.

The paragraph is built from the points alone: the growth of FLOPs, bytes, intensity and predicted
time along the series axis, and where each target's bound changes.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tabulate import tabulate

from layerprof.analysis.sweep_axes import label_of
from layerprof.core.units import binary_bytes, si
from layerprof.errors import InvalidArgumentError

if TYPE_CHECKING:
    from layerprof.analysis.sweep import Sweep, SweepPoint

__all__ = ["FORMATS", "describe", "render", "summary"]

FORMATS = ("table", "markdown", "csv", "json")


def _levels(point: SweepPoint, target: str) -> str:
    levels = point.verdicts[target].bytes_by_level
    if not levels:
        return "DRAM " + binary_bytes(point.bytes_moved)
    return " ".join(f"{name} {binary_bytes(n)}" for name, n in levels.items() if n) or "-"


def _rows(result: Sweep, *, exact: bool) -> tuple[list[str], list[list[str]]]:
    swept = list(result.axes)
    headers = [*swept, "out", "FLOPs", "MACs", "read", "written", "FLOP/B"]
    for target in result.targets:
        headers += [f"{target.name} bound", f"{target.name} ms", f"{target.name} bytes by level"]
    body = []
    for p in result.points:
        cells = [label_of(a, p.value(a)).split("=")[-1] for a in swept]
        cells.append(f"{p.output_size[0]}x{p.output_size[1]}")
        if exact:
            cells += [str(p.flops), str(p.macs), str(p.bytes_read), str(p.bytes_written), repr(p.intensity)]
        else:
            cells += [si(p.flops), si(p.macs), binary_bytes(p.bytes_read), binary_bytes(p.bytes_written)]
            cells.append(f"{p.intensity:.3g}")
        for target in result.targets:
            verdict = p.verdicts[target.name]
            time = repr(verdict.roofline_time_ms) if exact else f"{verdict.roofline_time_ms:.4g}"
            cells += [verdict.bound, time, _levels(p, target.name)]
        body.append(cells)
    return headers, body


def describe(result: Sweep) -> str:
    """The parameters every point shares, in words."""
    p = result.points[0].params
    parts = []
    if (
        "channels" not in result.axes
        and "in_channels" not in result.axes
        and "out_channels" not in result.axes
    ):
        parts.append(f"{p.in_channels}->{p.out_channels} channels")
    if "input_size" not in result.axes:
        parts.append(f"{p.input_size[0]}x{p.input_size[1]} input")
    for axis in ("kernel_size", "groups", "stride", "dilation", "batch", "dtype"):
        if axis not in result.axes:
            parts.append(label_of(axis, getattr(p, axis)))
    if "padding" not in result.axes:
        half = p.padding == "half"  # follows the kernel: a model's "same" layer at a stride
        parts.append("padding " + ("dilation * (k - 1) // 2" if half else p.padding_shown))
    parts.append("bias" if p.bias else "no bias")
    where = f"{result.layer}: " if result.layer else ""
    model = "cache-aware roofline" if result.cache_model else "DRAM-only roofline"
    return f"{where}Conv2d, {', '.join(parts)}; {model}"


def render(result: Sweep, format: str = "table") -> str:
    if format not in FORMATS:
        raise InvalidArgumentError(f"format {format!r} is not one of {', '.join(FORMATS)}")
    if format == "json":
        return json.dumps(result.to_dict(), indent=2)
    headers, body = _rows(result, exact=format == "csv")
    if format == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(body)
        return out.getvalue().rstrip("\n")
    style = "github" if format == "markdown" else "simple"
    table = tabulate(body, headers=headers, disable_numparse=True, tablefmt=style)
    return f"{describe(result)}\n{table}"


def _ratio(after: float, before: float) -> str:
    if before == 0:
        return "-"
    ratio = after / before
    return f"{ratio:.3g}x"


def _bound_story(run: Sequence[SweepPoint], target: str, axis: str) -> str:
    """``memory(L2)-bound at k=1, compute-bound from k=3`` (each change of bound along the run)."""
    pieces: list[str] = []
    current = None
    for point in run:
        bound = point.verdicts[target].bound
        if bound != current:
            word = "at" if not pieces else "from"
            pieces.append(f"{bound}-bound {word} {label_of(axis, point.value(axis))}")
            current = bound
    if len(pieces) == 1:
        return f"{run[0].verdicts[target].bound}-bound throughout"
    return ", ".join(pieces)


def summary(result: Sweep) -> str:
    axis = result.series_axis
    if axis is None:
        point = result.points[0]
        verdicts = [point.verdicts[t.name] for t in result.targets]
        parts = [f"{v.target}: {v.bound}-bound, {v.roofline_time_ms:.3g} ms" for v in verdicts]
        return (
            f"One convolution: {si(point.flops)}FLOPs, {point.intensity:.3g} FLOP/B; "
            + "; ".join(parts)
            + "."
        )
    series = result.series()
    label, run = series[0]
    first, last = run[0], run[-1]
    a, b = label_of(axis, first.value(axis)), label_of(axis, last.value(axis))
    where = "" if label == "sweep" else f" ({label})"
    text = [
        f"Going from {a} to {b}{where} multiplies FLOPs by {_ratio(last.flops, first.flops)}, "
        f"bytes moved by {_ratio(last.bytes_moved, first.bytes_moved)} and intensity by "
        f"{_ratio(last.intensity, first.intensity)} ({first.intensity:.3g} -> {last.intensity:.3g} FLOP/B)."
    ]
    for target in result.targets:
        t0 = first.verdicts[target.name].roofline_time_ms
        t1 = last.verdicts[target.name].roofline_time_ms
        text.append(
            f"On {target.name} the layer is {_bound_story(run, target.name, axis)}; its predicted time goes "
            f"from {t0:.3g} ms to {t1:.3g} ms ({_ratio(t1, t0)})."
        )
    if len(series) > 1:
        others = ", ".join(name for name, _ in series[1:4]) + (", ..." if len(series) > 4 else "")
        count = len(series) - 1
        text.append(
            f"The other series ({others}) is in the table."
            if count == 1
            else f"The other {count} series ({others}) are in the table."
        )
    return " ".join(text)
