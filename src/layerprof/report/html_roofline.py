"""The HTML page's roofline as SVG geometry: one panel per target, its ceilings, one dot per row.

The same picture as :func:`layerprof.report.plot.plot_roofline`, without matplotlib: the dots
(:func:`~layerprof.report.plot.row_dot`), the ceilings (:func:`~layerprof.report.plot_layout.ceilings_of`)
and the shared axes' limits (:func:`~layerprof.report.plot_layout.limits`) are the picture's; this
module maps them to pixels. Each dot carries its row's id on the page and a tooltip's text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerprof.core.records import LayerRow, Phase
from layerprof.core.units import binary_bytes, milliseconds, si
from layerprof.hardware.specs import DeviceSpec
from layerprof.report.plot import row_dot
from layerprof.report.plot_layout import (
    Ceilings,
    RooflinePanel,
    ceilings_of,
    colour_of,
    dot_area,
    human,
    limits,
    panel_title,
)
from layerprof.roofline.verdicts import dominant_dtype, tf32_op

if TYPE_CHECKING:
    from layerprof.report.facade import Report

__all__ = ["Figure", "Panel", "SvgDot", "SvgLine", "SvgText", "roofline_figure"]

WIDTH, HEIGHT = 480.0, 360.0
LEFT, RIGHT, TOP, BOTTOM = 58.0, 14.0, 44.0, 40.0


@dataclass(frozen=True, slots=True)
class SvgLine:
    points: str  # "x1,y1 x2,y2 ..."
    css: str  # "roof", "vector", "grid"


@dataclass(frozen=True, slots=True)
class SvgText:
    x: float
    y: float
    text: str
    css: str
    anchor: str = "start"
    angle: float = 0.0


@dataclass(frozen=True, slots=True)
class SvgDot:
    x: float
    y: float
    r: float
    colour: str
    filled: bool
    row_id: str
    tip: str


@dataclass(frozen=True, slots=True)
class Panel:
    target: str
    title: tuple[str, ...]
    lines: tuple[SvgLine, ...]
    texts: tuple[SvgText, ...]
    dots: tuple[SvgDot, ...]
    plot_box: tuple[float, float, float, float]  # x, y, width, height of the axes
    warning: str = ""


@dataclass(frozen=True, slots=True)
class Figure:
    width: float
    height: float
    panels: tuple[Panel, ...]
    weight_meaning: str
    notes: tuple[str, ...]
    timed: bool


class _Axes:
    """Log-log mapping of data to pixels inside one panel."""

    def __init__(self, x_limits: tuple[float, float], y_limits: tuple[float, float]) -> None:
        self.lx = (math.log10(x_limits[0]), math.log10(x_limits[1]))
        self.ly = (math.log10(y_limits[0]), math.log10(y_limits[1]))
        self.width = WIDTH - LEFT - RIGHT
        self.height = HEIGHT - TOP - BOTTOM

    def x(self, value: float) -> float:
        return LEFT + (math.log10(value) - self.lx[0]) / (self.lx[1] - self.lx[0]) * self.width

    def y(self, value: float) -> float:
        return TOP + self.height - (math.log10(value) - self.ly[0]) / (self.ly[1] - self.ly[0]) * self.height

    def point(self, x: float, y: float) -> str:
        return f"{self.x(x):.1f},{self.y(y):.1f}"


def roofline_figure(report: Report, row_ids: Mapping[tuple[Phase, str], str]) -> Figure | None:
    """The panels for ``report``; None when nothing can be placed (no target and no timing)."""
    shown = [r for r in report.layers if r.flops > 0 and r.bytes_total > 0]
    timed = any(r.time_ms is not None for r in shown)
    targets: tuple[DeviceSpec | None, ...] = report.targets or (None,)
    if not report.targets and not timed:
        return None
    dtype = dominant_dtype(report.layers)
    op = tf32_op(report.layers)
    panels = [
        RooflinePanel(target, dtype, tuple(row_dot(r, target) for r in shown), tf32_op=op)
        for target in targets
    ]
    ceilings = [None if p.target is None else ceilings_of(p.target, p.dtype, p.tf32_op) for p in panels]
    x_limits, y_limits = limits(panels, ceilings)
    axes = _Axes(x_limits, y_limits)
    max_weight = max((d.weight for p in panels for d in p.dots), default=0.0)
    drawn = tuple(
        _panel(panel, ceiling, shown, axes, x_limits, y_limits, max_weight, row_ids)
        for panel, ceiling in zip(panels, ceilings, strict=True)
    )
    notes = []
    no_flops = [r for r in report.layers if r.flops == 0]
    if no_flops:
        names = ", ".join(r.name for r in no_flops[:3]) + (", ..." if len(no_flops) > 3 else "")
        rows_word = "row" if len(no_flops) == 1 else "rows"
        notes.append(f"{len(no_flops)} {rows_word} with no FLOPs not shown ({names})")
    unplaced = sum(d.flops_per_s is None or d.flops_per_s <= 0 for p in panels for d in p.dots)
    if unplaced:
        notes.append(f"{unplaced} dots without a FLOP/s to place them at (too short to time) not shown")
    weight = "measured time" if timed else "FLOPs"
    return Figure(WIDTH, HEIGHT, drawn, weight, tuple(notes), timed)


def _panel(
    panel: RooflinePanel,
    ceiling: Ceilings | None,
    rows: Sequence[LayerRow],
    axes: _Axes,
    x_limits: tuple[float, float],
    y_limits: tuple[float, float],
    max_weight: float,
    row_ids: Mapping[tuple[Phase, str], str],
) -> Panel:
    lines, texts = _grid(axes, x_limits, y_limits)
    if ceiling is not None:
        more_lines, more_texts = _ceilings(axes, ceiling, x_limits)
        lines += more_lines
        texts += more_texts
    dots = []
    for row, dot in zip(rows, panel.dots, strict=True):
        if dot.flops_per_s is None or dot.flops_per_s <= 0:
            continue
        radius = math.sqrt(dot_area(dot.weight, max_weight) / math.pi) * 1.1
        dots.append(
            SvgDot(
                x=axes.x(dot.intensity),
                y=axes.y(dot.flops_per_s),
                r=radius,
                colour=colour_of(dot.bound),
                filled=dot.measured,
                row_id=row_ids.get((row.phase, row.name), ""),
                tip=_tip(row, panel.target, dot.flops_per_s, dot.measured),
            )
        )
    dots.sort(key=lambda d: -d.r)  # the small ones drawn last, on top
    target_name = panel.target.name if panel.target is not None else ""
    warning = ""
    if panel.target is None:
        warning = "no target: no ceilings, no bound; measured rows only"
    elif ceiling is not None and ceiling.fallback:
        warning = f"{panel.target.name} has no {panel.dtype} figure: float32 peaks drawn"
    return Panel(
        target=target_name,
        title=tuple(panel_title(panel, ceiling).split("\n")),
        lines=tuple(lines),
        texts=tuple(texts),
        dots=tuple(dots),
        plot_box=(LEFT, TOP, axes.width, axes.height),
        warning=warning,
    )


def _decades(low: float, high: float) -> list[float]:
    first, last = math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9)
    ticks = [10.0**k for k in range(first, last + 1)]
    if len(ticks) < 3:  # a narrow range: 2 and 5 between the decades
        around = [10.0 ** (first - 1), *ticks]
        ticks = sorted(t * m for t in around for m in (1, 2, 5) if low <= t * m <= high)
    return ticks


def _grid(
    axes: _Axes, x_limits: tuple[float, float], y_limits: tuple[float, float]
) -> tuple[list[SvgLine], list[SvgText]]:
    lines, texts = [], []
    bottom, top = TOP + axes.height, TOP
    for tick in _decades(*x_limits):
        x = axes.x(tick)
        lines.append(SvgLine(f"{x:.1f},{top:.1f} {x:.1f},{bottom:.1f}", "grid"))
        texts.append(SvgText(x, bottom + 14, si(tick), "tick", "middle"))
    for tick in _decades(*y_limits):
        y = axes.y(tick)
        lines.append(SvgLine(f"{LEFT:.1f},{y:.1f} {LEFT + axes.width:.1f},{y:.1f}", "grid"))
        texts.append(SvgText(LEFT - 5, y + 3.5, si(tick), "tick", "end"))
    x_name = "operational intensity (FLOP/byte)"
    texts.append(SvgText(LEFT + axes.width / 2, HEIGHT - 8, x_name, "axis", "middle"))
    texts.append(SvgText(14, TOP + axes.height / 2, "FLOP/s", "axis", "middle", -90.0))
    return lines, texts


def _ceilings(
    axes: _Axes, ceiling: Ceilings, x_limits: tuple[float, float]
) -> tuple[list[SvgLine], list[SvgText]]:
    x_low, x_high = x_limits
    bandwidth = ceiling.memory_bandwidth_bytes_per_s
    matrix, vector = ceiling.matrix_peak_flops_per_s, ceiling.vector_peak_flops_per_s
    matrix_ridge, vector_ridge = ceiling.matrix_ridge_point, ceiling.vector_ridge_point
    same = math.isclose(matrix, vector, rel_tol=1e-9)
    lines = [
        SvgLine(
            f"{axes.point(x_low, bandwidth * x_low)} {axes.point(matrix_ridge, matrix)} "
            f"{axes.point(x_high, matrix)}",
            "roof",
        )
    ]
    both = "matrix = vector" if same else "matrix"
    roof_name = f"{both} {ceiling.matrix_dtype} {human(matrix, 'FLOP/s')}"
    # Above the roof by more than the largest dot's radius: the dots on the roof leave it readable.
    texts = [SvgText(axes.x(x_high) - 4, axes.y(matrix) - 16, roof_name, "roof-label", "end")]
    ridges = [matrix_ridge]
    if not same:
        lines.append(SvgLine(f"{axes.point(vector_ridge, vector)} {axes.point(x_high, vector)}", "vector"))
        vector_name = f"vector {human(vector, 'FLOP/s')}"
        texts.append(SvgText(axes.x(x_high) - 4, axes.y(vector) + 24, vector_name, "roof-label", "end"))
        ridges.append(vector_ridge)
    bottom = TOP + axes.height
    for ridge, peak in zip(ridges, (matrix, vector), strict=False):
        x = axes.x(ridge)
        lines.append(SvgLine(f"{x:.1f},{axes.y(peak):.1f} {x:.1f},{bottom:.1f}", "ridge-line"))
        texts.append(SvgText(x + 3, bottom - 5, f"ridge {ridge:.3g}", "ridge"))
    # The slope's label, along it, a quarter of the way up to the first ridge.
    start = min(matrix_ridge, vector_ridge)
    at = x_low * (start / x_low) ** 0.3
    dx = axes.x(start) - axes.x(x_low)
    dy = axes.y(bandwidth * start) - axes.y(bandwidth * x_low)
    angle = math.degrees(math.atan2(dy, dx)) if dx > 0 else 0.0
    slope = human(bandwidth, "B/s")
    texts.append(SvgText(axes.x(at), axes.y(bandwidth * at) - 6, slope, "roof-label", "start", angle))
    return lines, texts


def _tip(row: LayerRow, target: DeviceSpec | None, flops_per_s: float, measured: bool) -> str:
    name = f"{row.name} (backward)" if row.phase == "backward" else row.name
    lines = [
        f"{name}  ({row.kind})",
        f"FLOPs {si(row.flops)}   bytes {binary_bytes(row.bytes_total)}   "
        f"intensity {row.intensity:.3g} FLOP/B",
    ]
    verdict = row.roofline.get(target.name) if target is not None else None
    if verdict is not None and target is not None:
        predicted = milliseconds(verdict.roofline_time_ms)
        lines.append(
            f"predicted {predicted} ms on {target.name}: {verdict.bound}-bound ({verdict.unit} unit)"
        )
    if row.time_ms is not None:
        lines.append(f"measured {milliseconds(row.time_ms)} ms")
    where = "achieved" if measured else "attainable"
    lines.append(f"{where} {human(flops_per_s, 'FLOP/s')}")
    if verdict is not None and verdict.roofline_efficiency is not None:
        lines.append(f"roofline efficiency {verdict.roofline_efficiency:.0%}")
    return "\n".join(lines)
