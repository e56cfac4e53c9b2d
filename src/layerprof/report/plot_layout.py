"""The roofline picture's layout, without matplotlib: sizes, colours, ceilings, dots, axes' limits.

Everything here is plain data and arithmetic, so that it can be checked without drawing: a
target's ceilings for a dtype (:func:`ceilings_of`), the dots and panels a picture is made of, the
grid of panels and the figure's size, the axes' limits that fit every dot and ridge, the panels'
titles. :mod:`layerprof.report.plot_draw` draws them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from layerprof.core.records import Bound, Phase
from layerprof.core.units import binary_bytes, si
from layerprof.core.validate import non_negative_int, path_arg
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec, PeakFallbackWarning, normalize_dtype
from layerprof.roofline import model as roofline

__all__ = [
    "ABOVE_ROOF_COLOUR",
    "CAP_SHOWN_FACTOR",
    "COLOURS",
    "DPI",
    "LABEL_FONT_SIZE",
    "MAX_COLUMNS",
    "MAX_DOT_AREA",
    "MIN_DOT_AREA",
    "PANEL_HEIGHT_IN",
    "PANEL_WIDTH_IN",
    "ROOF_COLOUR",
    "STRIP_HEIGHT_IN",
    "SUFFIXES",
    "TEXT_BOX",
    "Ceilings",
    "RooflineDot",
    "RooflinePanel",
    "Slope",
    "area_of",
    "bound_colour",
    "bound_label",
    "cap_shown",
    "ceilings_of",
    "check_label_top",
    "check_path",
    "dot_area",
    "figure_size_px",
    "human",
    "level_colour",
    "limits",
    "max_weights",
    "panel_grid",
    "panel_title",
    "strip_height_in",
]

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

#: Colour of each bound: "memory" (the DRAM-only verdict) and "memory(DRAM)" share DRAM's blue; each
#: cache level has its own (:func:`level_colour`), which its slope on the picture is drawn in too.
COLOURS: dict[str, str] = {
    "compute": "#d62728",
    "memory": "#1f77b4",
    "memory(DRAM)": "#1f77b4",
    "memory(L1)": "#9467bd",
    "memory(L2)": "#17becf",
    "memory(L3)": "#2ca02c",
    "memory(LLC)": "#2ca02c",
    "overhead": "#ff7f0e",
    "none": "#7f7f7f",
}
# Levels with a name outside the table get one of these, chosen by the name (the same every time).
_SPARE_LEVEL_COLOURS = ("#8c564b", "#bcbd22", "#e377c2", "#7b4173")
ROOF_COLOUR = "#222222"
#: The ring around a dot measured faster than its roof allows (its verdict's "above-roof" flag).
ABOVE_ROOF_COLOUR = "#000000"
#: A dot's launch-floor cap (``flops / (kernels * launch_overhead_s)``) is drawn when it is at most
#: this many times the rate the dot is drawn at: further up it bounds nothing the eye could see.
CAP_SHOWN_FACTOR = 4.0
MIN_DOT_AREA = 12.0
MAX_DOT_AREA = 420.0
LABEL_FONT_SIZE = 7.5
# Text drawn over dots stays readable on a faint white box.
TEXT_BOX: dict[str, Any] = {
    "boxstyle": "round,pad=0.15",
    "facecolor": "white",
    "edgecolor": "none",
    "alpha": 0.75,
}


@dataclass(frozen=True, slots=True)
class Slope:
    """One bandwidth ceiling: the rate a row would reach if every byte it moves came from ``level``
    (``"DRAM"`` or a cache level's name) at ``bandwidth_bytes_per_s``."""

    level: str
    bandwidth_bytes_per_s: float

    @property
    def bound(self) -> str:
        return f"memory({self.level})"


@dataclass(frozen=True, slots=True)
class Ceilings:
    """The lines of one target's roofline for one dtype: the DRAM slope and the two compute roofs
    (whose ridges are taken against DRAM), every cache level's slope, and the launch floor."""

    memory_bandwidth_bytes_per_s: float
    matrix_peak_flops_per_s: float
    vector_peak_flops_per_s: float
    matrix_dtype: str  # "tf32" where float32 matrix work runs as TF32
    vector_dtype: str
    fallback: bool  # the device has no figure for the dtype: its float32 peaks are drawn
    #: DRAM first, then the cache levels from the outermost (slowest) to the innermost.
    slopes: tuple[Slope, ...] = ()
    launch_overhead_s: float | None = None

    @property
    def cache_slopes(self) -> tuple[Slope, ...]:
        return tuple(s for s in self.slopes if s.level != "DRAM")

    @property
    def matrix_ridge_point(self) -> float:
        return self.matrix_peak_flops_per_s / self.memory_bandwidth_bytes_per_s

    @property
    def vector_ridge_point(self) -> float:
        return self.vector_peak_flops_per_s / self.memory_bandwidth_bytes_per_s


@dataclass(frozen=True, slots=True)
class RooflineDot:
    """One point of a panel. ``flops_per_s`` is None when it cannot be placed (untimed, no target):
    such dots are drawn as ticks along the x axis.

    ``weight`` sizes the dot, in ``weight_basis`` units: ``"measured"`` (ms, timed on this panel's
    target), ``"predicted"`` (ms, the roofline time on this panel's target) or ``"flops"``; dots of a
    panel are scaled together when their bases share a unit. ``above_roof`` marks a row measured
    faster than its roof allows (``efficiency`` says by how much); ``cap_flops_per_s`` is its launch
    floor's cap, ``flops / (kernels * launch_overhead_s)``, None without kernels or floor."""

    label: str
    intensity: float
    flops_per_s: float | None
    weight: float
    bound: Bound | None
    measured: bool
    phase: Phase = "forward"
    weight_basis: Literal["measured", "predicted", "flops"] = "flops"
    above_roof: bool = False
    efficiency: float | None = None
    cap_flops_per_s: float | None = None


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
    caches = [Slope(level.name, level.bandwidth_bytes_per_s) for level in reversed(target.cache_levels)]
    slopes = (Slope("DRAM", target.memory_bandwidth_bytes_per_s), *caches)
    return Ceilings(
        memory_bandwidth_bytes_per_s=target.memory_bandwidth_bytes_per_s,
        matrix_peak_flops_per_s=matrix,
        vector_peak_flops_per_s=vector,
        matrix_dtype="tf32" if uses_tf32 else ("float32" if fallback else key),
        vector_dtype="float32" if fallback else key,
        fallback=fallback,
        slopes=slopes,
        launch_overhead_s=target.launch_overhead_s,
    )


def level_colour(level: str) -> str:
    """The colour of a memory level (``"DRAM"``, ``"L2"``, ...): its slope's and its bound dots'."""
    known = COLOURS.get(f"memory({level})")
    if known is not None:
        return known
    return _SPARE_LEVEL_COLOURS[sum(map(ord, level)) % len(_SPARE_LEVEL_COLOURS)]


def bound_colour(bound: str | None) -> str:
    """The colour of a dot bound by ``bound`` (``"compute"``, ``"memory(L2)"``, ...; None: no target)."""
    if bound is None:
        return COLOURS["none"]
    if bound in COLOURS:
        return COLOURS[bound]
    if bound.startswith("memory(") and bound.endswith(")"):
        return level_colour(bound[len("memory(") : -1])
    return COLOURS["none"]


def bound_label(bound: str | None) -> str:
    """The legend's words for ``bound``: ``"memory(L2)"`` -> ``"memory-bound (L2)"``."""
    if bound is None:
        return "no target: bound unknown"
    if bound == "overhead":
        return "overhead-bound (launch floor)"
    if bound.startswith("memory(") and bound.endswith(")"):
        return f"memory-bound ({bound[len('memory(') : -1]})"
    return f"{bound}-bound"


def cap_shown(dot: RooflineDot) -> bool:
    """Whether ``dot``'s launch-floor cap is drawn: it has one, the dot is placed, and the cap is at
    most :data:`CAP_SHOWN_FACTOR` times the dot's rate (it is the ceiling, or close to it)."""
    return (
        dot.cap_flops_per_s is not None
        and dot.flops_per_s is not None
        and dot.flops_per_s > 0
        and dot.cap_flops_per_s <= CAP_SHOWN_FACTOR * dot.flops_per_s
    )


def figure_size_px(panels: int) -> tuple[int, int]:
    """(width, height) in pixels of a figure with ``panels`` panels."""
    columns, rows = panel_grid(panels)
    width_in = columns * PANEL_WIDTH_IN
    height_in = rows * PANEL_HEIGHT_IN + strip_height_in(columns)
    return round(width_in * DPI), round(height_in * DPI)


def strip_height_in(columns: int) -> float:
    return STRIP_HEIGHT_IN[0] if columns == 1 else STRIP_HEIGHT_IN[1]


def panel_grid(panels: int) -> tuple[int, int]:
    """(columns, rows): as few rows as MAX_COLUMNS allows, the panels spread evenly over them."""
    count = max(panels, 1)
    rows = math.ceil(count / MAX_COLUMNS)
    return math.ceil(count / rows), rows


def check_path(path: str | Path) -> Path:
    target = path_arg("path", path)
    if target.suffix.lower() not in SUFFIXES:
        raise InvalidArgumentError(
            f"roofline picture path must end in {' or '.join(SUFFIXES)}, got suffix {target.suffix!r} "
            f"in {str(path)!r}"
        )
    return target


def check_label_top(label_top: object) -> int:
    """How many dots to label: an int >= 0 (numpy integers too), else an error naming the value."""
    return non_negative_int("label_top", label_top)


def limits(
    panels: Sequence[RooflinePanel], ceilings: Sequence[Ceilings | None]
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(x, y) limits shared by every panel: every dot, ridge and roof inside, with room for labels."""
    xs = [d.intensity for p in panels for d in p.dots if d.intensity > 0]
    ys = [d.flops_per_s for p in panels for d in p.dots if d.flops_per_s is not None and d.flops_per_s > 0]
    ys += [d.cap_flops_per_s for p in panels for d in p.dots if cap_shown(d) and d.cap_flops_per_s]
    for c in ceilings:
        if c is not None:  # every slope's ridge, so that each slope is seen meeting the roof
            xs += [c.matrix_ridge_point, c.vector_ridge_point]
            xs += [c.matrix_peak_flops_per_s / s.bandwidth_bytes_per_s for s in c.cache_slopes]
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


def panel_title(panel: RooflinePanel, ceiling: Ceilings | None) -> str:
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
    title = f"{name}\n{mode}: {human(ceiling.memory_bandwidth_bytes_per_s, 'B/s')}, {peaks}"
    hierarchy = []
    if panel.target is not None:
        hierarchy = [
            f"{level.name} {binary_bytes(level.capacity_bytes)}"
            f" at {human(level.bandwidth_bytes_per_s, 'B/s')}"
            for level in panel.target.cache_levels
        ]
    if ceiling.launch_overhead_s is not None:
        hierarchy.append(f"launch floor {si(ceiling.launch_overhead_s * 1e6)} µs/kernel")
    lines = [title]
    for part in hierarchy:  # wrapped, so that a CPU's three levels and its floor fit over one panel
        if len(lines) > 1 and len(lines[-1]) + len(part) + 2 <= _TITLE_WIDTH:
            lines[-1] += f", {part}"
        else:
            lines.append(part)
    return "\n".join(lines)


#: Characters of a panel title's hierarchy line before it wraps (a panel is ~6.5 inches wide).
_TITLE_WIDTH = 80


def _rate(value: float) -> str:
    return human(value, "FLOP/s")


def human(value: float, unit: str) -> str:
    """``human(8.8e12, "FLOP/s") == "8.8 TFLOP/s"``: :func:`si` with a space before the unit."""
    text = si(value)
    if text[-1:].isalpha():
        return f"{text[:-1]} {text[-1]}{unit}"
    return f"{text} {unit}"


def _unit(dot: RooflineDot) -> str:
    return "flops" if dot.weight_basis == "flops" else "ms"


def max_weights(dots: Sequence[RooflineDot]) -> dict[str, float]:
    """The heaviest weight of each unit among ``dots`` (ms for measured and predicted times, FLOPs):
    a panel's dots are sized against those of the same unit only."""
    heaviest: dict[str, float] = {}
    for dot in dots:
        heaviest[_unit(dot)] = max(heaviest.get(_unit(dot), 0.0), dot.weight)
    return heaviest


def area_of(dot: RooflineDot, heaviest: dict[str, float]) -> float:
    """``dot``'s area in points², against :func:`max_weights` of its panel."""
    return dot_area(dot.weight, heaviest.get(_unit(dot), 0.0))


def dot_area(weight: float, max_weight: float) -> float:
    if max_weight <= 0:
        return MIN_DOT_AREA * 3
    return MIN_DOT_AREA + (MAX_DOT_AREA - MIN_DOT_AREA) * weight / max_weight
