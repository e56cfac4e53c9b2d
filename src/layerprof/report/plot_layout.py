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
from layerprof.core.units import si
from layerprof.core.validate import non_negative_int, path_arg
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec, PeakFallbackWarning, normalize_dtype
from layerprof.roofline import model as roofline

__all__ = [
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
    "ceilings_of",
    "check_label_top",
    "check_path",
    "dot_area",
    "figure_size_px",
    "human",
    "limits",
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

COLOURS: dict[str, str] = {"compute": "#d62728", "memory": "#1f77b4", "none": "#7f7f7f"}


def colour_of(bound: str | None) -> str:
    """A dot's colour: one for compute, one for memory at any level (``memory(L2)``), grey else."""
    if bound is not None and bound.startswith("memory"):
        return COLOURS["memory"]
    return COLOURS.get(bound or "none", COLOURS["none"])


ROOF_COLOUR = "#222222"
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
    return f"{name}\n{mode}: {human(ceiling.memory_bandwidth_bytes_per_s, 'B/s')}, {peaks}"


def _rate(value: float) -> str:
    return human(value, "FLOP/s")


def human(value: float, unit: str) -> str:
    """``human(8.8e12, "FLOP/s") == "8.8 TFLOP/s"``: :func:`si` with a space before the unit."""
    text = si(value)
    if text[-1:].isalpha():
        return f"{text[:-1]} {text[-1]}{unit}"
    return f"{text} {unit}"


def dot_area(weight: float, max_weight: float) -> float:
    if max_weight <= 0:
        return MIN_DOT_AREA * 3
    return MIN_DOT_AREA + (MAX_DOT_AREA - MIN_DOT_AREA) * weight / max_weight
