"""The roofline picture: one panel per target, its ceilings drawn, one dot per row.

Each panel is log-log: x is operational intensity (FLOPs per byte moved), y is FLOP/s. The ceilings
are the memory slope (``bandwidth * intensity``), the matrix roof and the vector roof of the dtype
that dominates the report (float32 matrix work uses the TF32 peak where torch allows it, as the
verdicts do), each ridge point marked with its value. A timed row sits at its achieved FLOP/s (a
filled dot); an untimed row sits on its roof, at ``flops / roofline_time`` (a ring), so the picture
shows where it would run at best. Colour says the bound on that panel's target, area says the row's
measured time (its FLOPs when untimed).

matplotlib is optional (``pip install layerprof[plot]``) and imported only inside the functions that
draw; figures are built on the Agg canvas, never through pyplot, so no global state is touched.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from layerprof.core.records import Bound, LayerRow, Phase
from layerprof.core.units import shape, si
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec, PeakFallbackWarning, normalize_dtype
from layerprof.roofline import model as roofline
from layerprof.roofline.verdicts import judge, priced_dtype, tf32_op

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.figure import Figure
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

    from layerprof.report.facade import Report

__all__ = [
    "DPI",
    "MAX_COLUMNS",
    "PANEL_HEIGHT_IN",
    "PANEL_WIDTH_IN",
    "STRIP_HEIGHT_IN",
    "SUFFIXES",
    "Ceilings",
    "RooflineDot",
    "RooflinePanel",
    "ceilings_of",
    "dominant_dtype",
    "draw_rooflines",
    "figure_size_px",
    "plot_roofline",
    "row_dot",
]

logger = logging.getLogger(__name__)

#: File suffixes the picture can be written as.
SUFFIXES = (".png", ".svg")
#: Size of one panel and resolution: a figure of n panels has ``ceil(n / MAX_COLUMNS)`` rows, the
#: panels spread evenly over them (4 panels: 2 x 2), plus a strip for the legend and the notes.
PANEL_WIDTH_IN = 6.4
PANEL_HEIGHT_IN = 5.6
# The strip under the panels that holds the legend and the notes: taller for one column, where the
# legend wraps onto more lines.
STRIP_HEIGHT_IN = (0.95, 0.65)
DPI = 110
MAX_COLUMNS = 3

_COLOURS: dict[str, str] = {"compute": "#d62728", "memory": "#1f77b4", "none": "#7f7f7f"}
_ROOF_COLOUR = "#222222"
_MIN_DOT_AREA = 12.0
_MAX_DOT_AREA = 420.0
_LABEL_FONT_SIZE = 7.5
# Text drawn over dots stays readable on a faint white box.
_TEXT_BOX: dict[str, Any] = {
    "boxstyle": "round,pad=0.15",
    "facecolor": "white",
    "edgecolor": "none",
    "alpha": 0.75,
}
# Offsets (points) tried, in order, for a dot's label: next to it first, then further out with a
# leader line; at each distance centred above or below first, where a label cannot be read as its
# neighbour's. The first offset that overlaps no other text nor dot and stays inside the axes wins.
_LABEL_RADII = (5.0, 14.0, 26.0, 40.0, 56.0, 75.0, 95.0)
_LABEL_DIRECTIONS = ((0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0))


@dataclass(frozen=True, slots=True)
class Ceilings:
    """The three lines of one target's roofline for one dtype."""

    memory_bandwidth_bytes_per_s: float
    matrix_peak_flops_per_s: float
    vector_peak_flops_per_s: float
    matrix_dtype: str  # "tf32" where float32 matrix work runs as TF32
    vector_dtype: str
    fallback: bool  # the device has no figure for the dtype: its float32 peaks are drawn

    @property
    def matrix_ridge_point(self) -> float:
        return self.matrix_peak_flops_per_s / self.memory_bandwidth_bytes_per_s

    @property
    def vector_ridge_point(self) -> float:
        return self.vector_peak_flops_per_s / self.memory_bandwidth_bytes_per_s


@dataclass(frozen=True, slots=True)
class RooflineDot:
    """One point of a panel. ``flops_per_s`` is None when it cannot be placed (untimed, no target):
    such dots are drawn as ticks along the x axis."""

    label: str
    intensity: float
    flops_per_s: float | None
    weight: float
    bound: Bound | None
    measured: bool
    phase: Phase = "forward"


@dataclass(frozen=True, slots=True)
class RooflinePanel:
    """One target's ceilings (none when ``target`` is None) and the dots drawn against them."""

    target: DeviceSpec | None
    dtype: str
    dots: tuple[RooflineDot, ...]
    title: str = ""
    tf32_op: Literal["conv", "matmul"] = "conv"  # whose TF32 switch the matrix roof follows


def ceilings_of(target: DeviceSpec, dtype: str, tf32_op: Literal["conv", "matmul"] = "conv") -> Ceilings:
    """``target``'s memory slope and roofs for ``dtype``, with the TF32 choice the verdicts make for
    ``tf32_op`` work (:func:`layerprof.roofline.verdicts.tf32_op` of the rows drawn)."""
    key = normalize_dtype(dtype)
    allow_tf32 = roofline.allow_tf32_for(target.kind, tf32_op)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PeakFallbackWarning)
        matrix = target.peak_flops_per_s(key, "matrix", allow_tf32=allow_tf32)
        vector = target.peak_flops_per_s(key, "vector")
    fallback = any(issubclass(w.category, PeakFallbackWarning) for w in caught)
    uses_tf32 = key == "float32" and allow_tf32 and "tf32" in target.matrix_peak_flops_per_s
    return Ceilings(
        memory_bandwidth_bytes_per_s=target.memory_bandwidth_bytes_per_s,
        matrix_peak_flops_per_s=matrix,
        vector_peak_flops_per_s=vector,
        matrix_dtype="tf32" if uses_tf32 else ("float32" if fallback else key),
        vector_dtype="float32" if fallback else key,
        fallback=fallback,
    )


def dominant_dtype(rows: Iterable[LayerRow]) -> str:
    """The dtype carrying most of the rows' FLOPs and bytes (the one the totals are priced at)."""
    weights: dict[str, int] = {}
    for row in rows:
        key = priced_dtype(row)
        weights[key] = weights.get(key, 0) + row.flops + row.bytes_total
    return max(weights, key=lambda k: weights[k]) if weights else "float32"


def figure_size_px(panels: int) -> tuple[int, int]:
    """(width, height) in pixels of a figure with ``panels`` panels."""
    columns, rows = _grid(panels)
    width_in = columns * PANEL_WIDTH_IN
    height_in = rows * PANEL_HEIGHT_IN + _strip_height_in(columns)
    return round(width_in * DPI), round(height_in * DPI)


def _strip_height_in(columns: int) -> float:
    return STRIP_HEIGHT_IN[0] if columns == 1 else STRIP_HEIGHT_IN[1]


def _grid(panels: int) -> tuple[int, int]:
    """(columns, rows): as few rows as MAX_COLUMNS allows, the panels spread evenly over them."""
    count = max(panels, 1)
    rows = math.ceil(count / MAX_COLUMNS)
    return math.ceil(count / rows), rows


def _check_path(path: str | Path) -> Path:
    target = Path(path)
    if target.suffix.lower() not in SUFFIXES:
        raise InvalidArgumentError(
            f"roofline picture path must end in {' or '.join(SUFFIXES)}, got suffix {target.suffix!r} "
            f"in {str(path)!r}"
        )
    return target


def _check_label_top(label_top: int) -> None:
    if isinstance(label_top, bool) or not isinstance(label_top, int) or label_top < 0:
        raise InvalidArgumentError(f"label_top must be an int >= 0, got {label_top!r}")


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise InvalidArgumentError(
            "the roofline picture needs matplotlib: pip install layerprof[plot]"
        ) from error


# --- from a report to panels -------------------------------------------------------------------


def _row_label(row: LayerRow) -> str:
    return f"{row.name} (bwd)" if row.phase == "backward" else row.name


def _achieved_without_target(row: LayerRow) -> float | None:
    if row.time_ms is None or row.time_ms < roofline.DEFAULT_MIN_TIME_MS:
        return None
    return row.flops / (row.time_ms / 1e3)


def row_dot(row: LayerRow, target: DeviceSpec | None) -> RooflineDot:
    """Where ``row`` is drawn on ``target``'s panel: at its achieved FLOP/s when timed, else on its
    roof (``flops / roofline_time``). Without a target an untimed row has no FLOP/s to be drawn at:
    its ``flops_per_s`` is None."""
    timed = row.time_ms is not None
    weight = float(row.time_ms) if row.time_ms is not None else float(row.flops)
    if target is None:
        achieved = _achieved_without_target(row)
        return RooflineDot(
            _row_label(row), row.intensity, achieved, weight, None, achieved is not None, row.phase
        )
    verdict = row.roofline.get(target.name)
    if verdict is None:  # a row judged against other targets: judge it here, the same way
        verdict = judge(row, (target,)).roofline[target.name]
    if timed and verdict.achieved_flops_per_s is not None:
        return RooflineDot(
            _row_label(row),
            row.intensity,
            verdict.achieved_flops_per_s,
            weight,
            verdict.bound,
            True,
            row.phase,
        )
    attainable = row.flops / (verdict.roofline_time_ms / 1e3) if verdict.roofline_time_ms > 0 else None
    return RooflineDot(_row_label(row), row.intensity, attainable, weight, verdict.bound, False, row.phase)


def _report_title(report: Report) -> str:
    shapes: list[str] = []
    if report.inputs is not None:
        shapes = [shape(s.shape) for s in report.inputs.positional if s is not None]
        shapes += [f"{k}={shape(s.shape)}" for k, s in report.inputs.keyword if s is not None]
    name = report.model_name or "model"
    return f"{name} ({', '.join(shapes)})" if shapes else name


def plot_roofline(report: Report, path: str | Path, *, label_top: int = 8) -> Path:
    """Draw ``report`` on the roofline of each of its targets and write it to ``path`` (.png or .svg).

    One panel per target (one bare panel, without ceilings, when the report has none). Every row
    with FLOPs is a dot, forward and backward; rows without FLOPs are counted in a note. The
    ``label_top`` heaviest rows (by measured time, by FLOPs when untimed) are labelled.
    Returns the path written.
    """
    target_path = _check_path(path)
    _check_label_top(label_top)
    _require_matplotlib()
    dtype = dominant_dtype(report.layers)
    shown = [r for r in report.layers if r.flops > 0 and r.bytes_total > 0]
    no_flops = [r for r in report.layers if r.flops == 0]
    no_bytes = [r for r in report.layers if r.flops > 0 and r.bytes_total == 0]
    targets: tuple[DeviceSpec | None, ...] = report.targets or (None,)
    panels = tuple(
        RooflinePanel(
            target=target,
            dtype=dtype,
            dots=tuple(row_dot(row, target) for row in shown),
            title=target.full_name if target is not None else "no target",
            tf32_op=tf32_op(report.layers),
        )
        for target in targets
    )
    timed = any(r.time_ms is not None for r in shown)
    notes = []
    if no_flops:
        names = ", ".join(_row_label(r) for r in no_flops[:3]) + (", ..." if len(no_flops) > 3 else "")
        rows_word = "row" if len(no_flops) == 1 else "rows"
        notes.append(f"{len(no_flops)} {rows_word} with no FLOPs not shown ({names})")
    if no_bytes:
        rows_word = "row" if len(no_bytes) == 1 else "rows"
        notes.append(f"{len(no_bytes)} {rows_word} with FLOPs but no bytes not shown")
    total_flops = sum(r.flops for r in report.layers)
    title = f"{_report_title(report)}: {_human(total_flops, 'FLOP')}, {dtype}"
    return draw_rooflines(
        panels,
        target_path,
        title=title,
        notes=notes,
        label_top=label_top,
        weight_meaning="measured time" if timed else "FLOPs",
    )


# --- drawing -----------------------------------------------------------------------------------


def draw_rooflines(
    panels: Sequence[RooflinePanel],
    path: str | Path,
    *,
    title: str,
    notes: Sequence[str] = (),
    label_top: int = 8,
    weight_meaning: str = "FLOPs",
) -> Path:
    """Draw ``panels`` side by side (shared axes) and write the figure to ``path`` (.png or .svg).

    The lower-level entry point behind :func:`plot_roofline`, for pictures that are not a report
    (see ``examples/kernel_size_sweep.py``). Dot areas are scaled together across panels.
    """
    target_path = _check_path(path)
    _check_label_top(label_top)
    if not panels:
        raise InvalidArgumentError("draw_rooflines needs at least one panel")
    _require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    columns, rows = _grid(len(panels))
    width_px, height_px = figure_size_px(len(panels))
    height_in = height_px / DPI
    strip_fraction = _strip_height_in(columns) / height_in
    figure = Figure(figsize=(width_px / DPI, height_in), dpi=DPI)
    # The panels are laid out above the strip; the legend and notes are placed in it by hand.
    figure.set_layout_engine(ConstrainedLayoutEngine(rect=(0.0, strip_fraction, 1.0, 1.0 - strip_fraction)))
    canvas = FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    axes_list: list[Axes] = [grid[i // columns][i % columns] for i in range(rows * columns)]
    for spare in axes_list[len(panels) :]:
        spare.set_visible(False)

    ceilings = [None if p.target is None else ceilings_of(p.target, p.dtype, p.tf32_op) for p in panels]
    x_limits, y_limits = _limits(panels, ceilings)
    max_weight = max((d.weight for p in panels for d in p.dots), default=0.0)

    # Without a target and without timings there is no FLOP/s to plot: the rows become a strip
    # along the intensity axis.
    strip_only = all(c is None for c in ceilings) and all(
        d.flops_per_s is None for p in panels for d in p.dots
    )
    if strip_only:
        # Filled like measured dots: a ring means "placed on its roof", which a strip is not.
        panels = [
            replace(p, dots=tuple(replace(d, flops_per_s=0.5, measured=True) for d in p.dots)) for p in panels
        ]
    for index, (ax, panel, ceiling) in enumerate(zip(axes_list, panels, ceilings, strict=False)):
        ax.set_xscale("log")
        ax.set_xlim(*x_limits)
        if strip_only:
            ax.set_ylim(0.0, 1.0)
        else:
            ax.set_yscale("log")
            ax.set_ylim(*y_limits)
        # A panel with none under it carries the x axis, even above an empty cell of the grid.
        _style_axes(ax, first_column=index % columns == 0, bottom=index + columns >= len(panels))
        if strip_only:
            ax.yaxis.set_visible(False)
        if ceiling is not None:
            _draw_ceilings(ax, ceiling, x_limits)
        _draw_dots(ax, panel.dots, max_weight)
        ax.set_title(_panel_title(panel, ceiling), fontsize=10)
        if panel.target is None:
            ax.text(
                0.02,
                0.98,
                "no target: no ceilings, no bound; untimed rows are placed\n"
                + ("by intensity only" if strip_only else "by intensity only (ticks along the x axis)"),
                transform=ax.transAxes,
                va="top",
                ha="left",
                fontsize=8,
                color="#555555",
            )
        elif ceiling is not None and ceiling.fallback:
            ax.text(
                0.02,
                0.98,
                f"{panel.target.name} has no {normalize_dtype(panel.dtype)} figure: float32 peaks drawn",
                transform=ax.transAxes,
                va="top",
                ha="left",
                fontsize=8,
                color="#aa0000",
            )

    figure.suptitle(title, fontsize=12)
    _figure_legend(figure, panels, ceilings, strip_fraction, strip_only=strip_only)
    notes_text = _wrap_notes([f"dot area ∝ {weight_meaning}", *notes], width_px / DPI)
    figure.text(0.01, 0.01, notes_text, fontsize=7.5, color="#555555", ha="left", va="bottom")

    # Lay the figure out once, freeze it, then place labels in display space where overlaps show.
    canvas.draw()  # type: ignore[no-untyped-call]
    figure.set_layout_engine("none")
    renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]
    for ax, panel, ceiling in zip(axes_list, panels, ceilings, strict=False):
        if ceiling is not None:
            _label_slope(ax, ceiling, x_limits)
        _place_labels(ax, panel.dots, label_top, renderer)

    if target_path.suffix.lower() == ".svg":
        figure.savefig(target_path, format="svg")
    else:
        figure.savefig(target_path, format="png", dpi=DPI)
    logger.info("wrote roofline picture %s", target_path)
    return target_path


def _limits(
    panels: Sequence[RooflinePanel], ceilings: Sequence[Ceilings | None]
) -> tuple[tuple[float, float], tuple[float, float]]:
    xs = [d.intensity for p in panels for d in p.dots if d.intensity > 0]
    ys = [d.flops_per_s for p in panels for d in p.dots if d.flops_per_s is not None and d.flops_per_s > 0]
    for c in ceilings:
        if c is not None:
            xs += [c.matrix_ridge_point, c.vector_ridge_point]
            ys += [c.matrix_peak_flops_per_s]
    if not xs:
        xs = [0.1, 100.0]
    # Room on the left for the slope's label, on the right for the roofs' tags.
    x_low, x_high = min(xs) / 3, max(xs) * 6
    for c in ceilings:
        if c is not None:  # the slope must be visible where it starts
            ys.append(c.memory_bandwidth_bytes_per_s * x_low)
    if not ys:
        ys = [1e9, 1e15]
    # Headroom above the highest roof: labels of dots on the roof go there.
    y_low, y_high = min(ys) / 1.5, max(ys) * 6
    return (x_low, x_high), (y_low, y_high)


def _style_axes(ax: Axes, *, first_column: bool, bottom: bool) -> None:
    from matplotlib.ticker import EngFormatter, FuncFormatter, LogLocator, NullFormatter

    ax.grid(True, which="major", color="#dddddd", linewidth=0.8)
    ax.grid(True, which="minor", color="#f0f0f0", linewidth=0.5)
    ax.set_axisbelow(True)
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=15))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=15))
    ax.yaxis.set_major_formatter(EngFormatter(unit="", places=0, sep=""))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=8)
    if bottom:
        ax.tick_params(labelbottom=True)
        ax.set_xlabel("operational intensity (FLOP/byte)", fontsize=9)
    if first_column:
        ax.set_ylabel("FLOP/s (attainable, or achieved when timed)", fontsize=9)


def _panel_title(panel: RooflinePanel, ceiling: Ceilings | None) -> str:
    if panel.title:
        name = panel.title
    elif panel.target is not None:
        name = panel.target.full_name
    else:
        name = "no target"
    if ceiling is None:
        return name
    dtype = normalize_dtype(panel.dtype)
    mode = f"{dtype} (matrix work as tf32)" if ceiling.matrix_dtype == "tf32" else dtype
    if math.isclose(ceiling.matrix_peak_flops_per_s, ceiling.vector_peak_flops_per_s, rel_tol=1e-9):
        peaks = f"matrix = vector {_rate(ceiling.matrix_peak_flops_per_s)}"
    else:
        matrix = _rate(ceiling.matrix_peak_flops_per_s)
        peaks = f"matrix {matrix}, vector {_rate(ceiling.vector_peak_flops_per_s)}"
    return f"{name}\n{mode}: {_human(ceiling.memory_bandwidth_bytes_per_s, 'B/s')}, {peaks}"


def _rate(value: float) -> str:
    return _human(value, "FLOP/s")


def _human(value: float, unit: str) -> str:
    """``_human(8.8e12, "FLOP/s") == "8.8 TFLOP/s"``: :func:`si` with a space before the unit."""
    text = si(value)
    if text[-1:].isalpha():
        return f"{text[:-1]} {text[-1]}{unit}"
    return f"{text} {unit}"


def _draw_ceilings(ax: Axes, ceiling: Ceilings, x_limits: tuple[float, float]) -> None:
    x_low, x_high = x_limits
    bandwidth = ceiling.memory_bandwidth_bytes_per_s
    matrix_ridge = ceiling.matrix_ridge_point
    vector_ridge = ceiling.vector_ridge_point
    same = math.isclose(ceiling.matrix_peak_flops_per_s, ceiling.vector_peak_flops_per_s, rel_tol=1e-9)
    # Memory slope up to the highest ridge, then the roofs as flat lines to the right edge.
    ax.plot(
        [x_low, matrix_ridge], [bandwidth * x_low, ceiling.matrix_peak_flops_per_s],
        color=_ROOF_COLOUR, linewidth=1.6, zorder=2,
    )  # fmt: skip
    ax.plot(
        [matrix_ridge, x_high], [ceiling.matrix_peak_flops_per_s] * 2,
        color=_ROOF_COLOUR, linewidth=1.6, zorder=2,
    )  # fmt: skip
    if same:  # one roof; the title says so
        _mark_ridge(ax, matrix_ridge, ceiling.matrix_peak_flops_per_s, "ridge")
        return
    ax.text(
        x_high / 1.08, ceiling.matrix_peak_flops_per_s * 1.1, "matrix roof",
        ha="right", va="bottom", fontsize=7.5, color=_ROOF_COLOUR, zorder=5, bbox=_TEXT_BOX,
    )  # fmt: skip
    ax.plot(
        [vector_ridge, x_high], [ceiling.vector_peak_flops_per_s] * 2,
        color=_ROOF_COLOUR, linewidth=1.2, linestyle="--", zorder=2,
    )  # fmt: skip
    ax.text(
        x_high / 1.08, ceiling.vector_peak_flops_per_s / 1.1, "vector roof",
        ha="right", va="top", fontsize=7.5, color=_ROOF_COLOUR, zorder=5, bbox=_TEXT_BOX,
    )  # fmt: skip
    _mark_ridge(ax, matrix_ridge, ceiling.matrix_peak_flops_per_s, "matrix ridge")
    _mark_ridge(ax, vector_ridge, ceiling.vector_peak_flops_per_s, "vector ridge")


def _mark_ridge(ax: Axes, ridge: float, peak: float, name: str) -> None:
    ax.plot([ridge], [peak], marker="D", markersize=5, color=_ROOF_COLOUR, zorder=4, linestyle="none")
    ax.plot(
        [ridge, ridge], [ax.get_ylim()[0], peak], color=_ROOF_COLOUR, linewidth=0.6, linestyle=":", zorder=1
    )
    ax.annotate(
        f"{name}\n{ridge:.3g} FLOP/B",
        (ridge, peak),
        xytext=(4, -6),
        textcoords="offset points",
        ha="left",
        va="top",
        fontsize=7.5,
        color=_ROOF_COLOUR,
        zorder=5,
        bbox=_TEXT_BOX,
    )


def _label_slope(ax: Axes, ceiling: Ceilings, x_limits: tuple[float, float]) -> None:
    # Rotated along the slope as drawn: the angle is only known once the axes are laid out.
    bandwidth = ceiling.memory_bandwidth_bytes_per_s
    x_low = x_limits[0]
    x_at = math.sqrt(x_low * min(ceiling.vector_ridge_point, ceiling.matrix_ridge_point)) / 1.5
    start = ax.transData.transform((x_low, bandwidth * x_low))
    end = ax.transData.transform((ceiling.matrix_ridge_point, ceiling.matrix_peak_flops_per_s))
    angle = math.degrees(math.atan2(end[1] - start[1], end[0] - start[0]))
    ax.annotate(
        f"memory {_human(bandwidth, 'B/s')}",
        (x_at, bandwidth * x_at),
        xytext=(0, 4),
        textcoords="offset points",
        rotation=angle,
        rotation_mode="anchor",
        ha="left",
        va="bottom",
        fontsize=8,
        color=_ROOF_COLOUR,
    )


def _dot_area(weight: float, max_weight: float) -> float:
    if max_weight <= 0:
        return _MIN_DOT_AREA * 3
    return _MIN_DOT_AREA + (_MAX_DOT_AREA - _MIN_DOT_AREA) * weight / max_weight


def _draw_dots(ax: Axes, dots: Sequence[RooflineDot], max_weight: float) -> None:
    # Heaviest first so that small dots stay visible on top of big ones.
    for dot in sorted(dots, key=lambda d: -d.weight):
        colour = _COLOURS[dot.bound or "none"]
        marker = "^" if dot.phase == "backward" else "o"
        area = _dot_area(dot.weight, max_weight)
        if dot.flops_per_s is None:
            ax.plot(
                [dot.intensity], [0.03], transform=ax.get_xaxis_transform(), marker="|",
                markersize=6 + 14 * (area / _MAX_DOT_AREA), color=colour, linestyle="none", zorder=3,
            )  # fmt: skip
            continue
        ax.scatter(
            [dot.intensity],
            [dot.flops_per_s],
            s=area,
            marker=marker,
            facecolors=colour if dot.measured else "none",
            edgecolors=colour,
            linewidths=1.0 if dot.measured else 1.4,
            alpha=0.75,
            zorder=3,
        )


def _wrap_notes(notes: Sequence[str], width_in: float) -> str:
    import textwrap

    # About 16 characters per inch at 7.5 pt; notes longer than the figure wrap rather than clip.
    return textwrap.fill("  ·  ".join(notes), width=max(40, int(width_in * 16)))


def _figure_legend(
    figure: Figure,
    panels: Sequence[RooflinePanel],
    ceilings: Sequence[Ceilings | None],
    strip_fraction: float,
    *,
    strip_only: bool = False,
) -> None:
    from matplotlib.lines import Line2D

    dots = [d for p in panels for d in p.dots]
    handles: list[Any] = []

    def marker(label: str, colour: str, filled: bool, shape_code: str = "o") -> None:
        handles.append(
            Line2D(
                [], [], linestyle="none", marker=shape_code, markersize=7, label=label,
                markerfacecolor=colour if filled else "none", markeredgecolor=colour,
            )
        )  # fmt: skip

    bounds = {d.bound for d in dots}
    if "compute" in bounds:
        marker("compute-bound", _COLOURS["compute"], True)
    if "memory" in bounds:
        marker("memory-bound", _COLOURS["memory"], True)
    if None in bounds:
        marker("no target: bound unknown", _COLOURS["none"], True)
    if any(d.measured for d in dots) and not strip_only:
        marker("measured (achieved FLOP/s)", "#444444", True)
    if any(not d.measured and d.flops_per_s is not None for d in dots):
        marker("untimed (or too short): on its roof", "#444444", False)
    if any(d.phase == "backward" for d in dots):
        marker("backward pass", "#444444", True, "^")
    if any(c is not None for c in ceilings):
        handles.append(Line2D([], [], color=_ROOF_COLOUR, linewidth=1.6, label="memory slope, matrix roof"))
        if any(c is not None and c.matrix_peak_flops_per_s != c.vector_peak_flops_per_s for c in ceilings):
            handles.append(
                Line2D([], [], color=_ROOF_COLOUR, linewidth=1.2, linestyle="--", label="vector roof")
            )
        handles.append(
            Line2D(
                [], [], color=_ROOF_COLOUR, marker="D", markersize=5, linestyle="none", label="ridge point"
            )
        )
    width_in = figure.get_figwidth()
    figure.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, strip_fraction),
        bbox_transform=figure.transFigure,
        ncols=max(1, min(len(handles), int(width_in / 2.1))),
        fontsize=8,
        frameon=False,
    )


# --- labels ------------------------------------------------------------------------------------


def _overlap(box: Bbox, others: Iterable[Bbox]) -> int:
    return sum(1 for other in others if box.overlaps(other))


def _place_labels(ax: Axes, dots: Sequence[RooflineDot], label_top: int, renderer: RendererBase) -> None:
    """Label the ``label_top`` heaviest dots, each where it overlaps no earlier label if it can."""
    from matplotlib.transforms import Bbox

    placeable = [d for d in dots if d.flops_per_s is not None]
    chosen = sorted(placeable, key=lambda d: -d.weight)[:label_top]
    if not chosen:
        return
    inside = ax.get_window_extent(renderer)
    # Obstacles: texts already on the axes (roof and ridge labels) and the labelled dots themselves.
    taken: list[Bbox] = [t.get_window_extent(renderer) for t in ax.texts if t.get_visible()]
    dot_boxes: list[Bbox] = []
    for dot in placeable:
        assert dot.flops_per_s is not None
        x, y = ax.transData.transform((dot.intensity, dot.flops_per_s))
        dot_boxes.append(Bbox.from_bounds(x - 3, y - 3, 6, 6))
    for dot in chosen:
        assert dot.flops_per_s is not None
        annotation = ax.annotate(
            dot.label,
            (dot.intensity, dot.flops_per_s),
            xytext=(0, 0),
            textcoords="offset points",
            fontsize=_LABEL_FONT_SIZE,
            color="#111111",
            zorder=6,
            bbox=_TEXT_BOX,
            arrowprops={"arrowstyle": "-", "color": "#777777", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 2},
        )
        best: tuple[int, int, float, float] | None = None
        for radius in _LABEL_RADII:
            for dx, dy in _LABEL_DIRECTIONS:
                _set_offset(annotation, dx * radius, dy * radius)
                box = _text_extent(annotation, renderer)
                hard = _overlap(box, taken) + (0 if _contains(inside, box) else 10)
                soft = _overlap(box, dot_boxes)
                if best is None or (hard, soft) < best[:2]:
                    best = (hard, soft, dx * radius, dy * radius)
                if hard == 0 and soft == 0:
                    break
            if best is not None and best[:2] == (0, 0):
                break
        assert best is not None
        _set_offset(annotation, best[2], best[3])
        if annotation.arrow_patch is not None:
            annotation.arrow_patch.set_visible(math.hypot(best[2], best[3]) > _LABEL_RADII[0] * 1.5)
        taken.append(_text_extent(annotation, renderer))


def _set_offset(annotation: Annotation, x_points: float, y_points: float) -> None:
    annotation.set_position((x_points, y_points))
    annotation.set_horizontalalignment("left" if x_points > 0 else ("right" if x_points < 0 else "center"))
    annotation.set_verticalalignment("bottom" if y_points > 0 else ("top" if y_points < 0 else "center"))


def _text_extent(annotation: Annotation, renderer: RendererBase) -> Bbox:
    """Display box of the label's text alone (an Annotation's own extent includes its leader line)."""
    from matplotlib.text import Text

    annotation.update_positions(renderer)  # offset-points positions resolve only against a renderer
    return Text.get_window_extent(annotation, renderer)


def _contains(outer: Bbox, inner: Bbox) -> bool:
    return bool(
        outer.x0 <= inner.x0 and inner.x1 <= outer.x1 and outer.y0 <= inner.y0 and inner.y1 <= outer.y1
    )
