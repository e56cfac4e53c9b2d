"""Drawing the roofline picture with matplotlib: panels, ceilings, dots, legend, notes, then labels.

matplotlib is optional (``pip install layerprof[plot]``) and imported only inside the functions that
draw; figures are built on the Agg canvas, never through pyplot, so no global state is touched.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import normalize_dtype
from layerprof.report.plot_labels import place_labels
from layerprof.report.plot_layout import (
    COLOURS,
    DPI,
    MAX_DOT_AREA,
    ROOF_COLOUR,
    TEXT_BOX,
    Ceilings,
    RooflineDot,
    RooflinePanel,
    ceilings_of,
    check_label_top,
    check_path,
    colour_of,
    dot_area,
    figure_size_px,
    human,
    limits,
    panel_grid,
    panel_title,
    strip_height_in,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["draw_rooflines", "require_matplotlib"]

logger = logging.getLogger(__name__)


def require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as error:
        raise InvalidArgumentError(
            "the roofline picture needs matplotlib: pip install layerprof[plot]"
        ) from error


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
    target_path = check_path(path)
    label_top = check_label_top(label_top)
    if not panels:
        raise InvalidArgumentError("draw_rooflines needs at least one panel")
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    columns, rows = panel_grid(len(panels))
    width_px, height_px = figure_size_px(len(panels))
    height_in = height_px / DPI
    strip_fraction = strip_height_in(columns) / height_in
    figure = Figure(figsize=(width_px / DPI, height_in), dpi=DPI)
    # The panels are laid out above the strip; the legend and notes are placed in it by hand.
    figure.set_layout_engine(ConstrainedLayoutEngine(rect=(0.0, strip_fraction, 1.0, 1.0 - strip_fraction)))
    canvas = FigureCanvasAgg(figure)
    grid = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False)
    axes_list: list[Axes] = [grid[i // columns][i % columns] for i in range(rows * columns)]
    for spare in axes_list[len(panels) :]:
        spare.set_visible(False)

    ceilings = [None if p.target is None else ceilings_of(p.target, p.dtype, p.tf32_op) for p in panels]
    x_limits, y_limits = limits(panels, ceilings)
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
        ax.set_title(panel_title(panel, ceiling), fontsize=10)
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
        place_labels(ax, panel.dots, label_top, renderer)

    if target_path.suffix.lower() == ".svg":
        figure.savefig(target_path, format="svg")
    else:
        figure.savefig(target_path, format="png", dpi=DPI)
    logger.info("wrote roofline picture %s", target_path)
    return target_path


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


def _draw_ceilings(ax: Axes, ceiling: Ceilings, x_limits: tuple[float, float]) -> None:
    x_low, x_high = x_limits
    bandwidth = ceiling.memory_bandwidth_bytes_per_s
    matrix_ridge = ceiling.matrix_ridge_point
    vector_ridge = ceiling.vector_ridge_point
    same = math.isclose(ceiling.matrix_peak_flops_per_s, ceiling.vector_peak_flops_per_s, rel_tol=1e-9)
    # Memory slope up to the highest ridge, then the roofs as flat lines to the right edge.
    ax.plot(
        [x_low, matrix_ridge], [bandwidth * x_low, ceiling.matrix_peak_flops_per_s],
        color=ROOF_COLOUR, linewidth=1.6, zorder=2,
    )  # fmt: skip
    ax.plot(
        [matrix_ridge, x_high], [ceiling.matrix_peak_flops_per_s] * 2,
        color=ROOF_COLOUR, linewidth=1.6, zorder=2,
    )  # fmt: skip
    if same:  # one roof; the title says so
        _mark_ridge(ax, matrix_ridge, ceiling.matrix_peak_flops_per_s, "ridge")
        return
    ax.text(
        x_high / 1.08, ceiling.matrix_peak_flops_per_s * 1.1, "matrix roof",
        ha="right", va="bottom", fontsize=7.5, color=ROOF_COLOUR, zorder=5, bbox=TEXT_BOX,
    )  # fmt: skip
    ax.plot(
        [vector_ridge, x_high], [ceiling.vector_peak_flops_per_s] * 2,
        color=ROOF_COLOUR, linewidth=1.2, linestyle="--", zorder=2,
    )  # fmt: skip
    ax.text(
        x_high / 1.08, ceiling.vector_peak_flops_per_s / 1.1, "vector roof",
        ha="right", va="top", fontsize=7.5, color=ROOF_COLOUR, zorder=5, bbox=TEXT_BOX,
    )  # fmt: skip
    _mark_ridge(ax, matrix_ridge, ceiling.matrix_peak_flops_per_s, "matrix ridge")
    _mark_ridge(ax, vector_ridge, ceiling.vector_peak_flops_per_s, "vector ridge")


def _mark_ridge(ax: Axes, ridge: float, peak: float, name: str) -> None:
    ax.plot([ridge], [peak], marker="D", markersize=5, color=ROOF_COLOUR, zorder=4, linestyle="none")
    ax.plot(
        [ridge, ridge], [ax.get_ylim()[0], peak], color=ROOF_COLOUR, linewidth=0.6, linestyle=":", zorder=1
    )
    ax.annotate(
        f"{name}\n{ridge:.3g} FLOP/B",
        (ridge, peak),
        xytext=(4, -6),
        textcoords="offset points",
        ha="left",
        va="top",
        fontsize=7.5,
        color=ROOF_COLOUR,
        zorder=5,
        bbox=TEXT_BOX,
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
        f"memory {human(bandwidth, 'B/s')}",
        (x_at, bandwidth * x_at),
        xytext=(0, 4),
        textcoords="offset points",
        rotation=angle,
        rotation_mode="anchor",
        ha="left",
        va="bottom",
        fontsize=8,
        color=ROOF_COLOUR,
    )


def _draw_dots(ax: Axes, dots: Sequence[RooflineDot], max_weight: float) -> None:
    # Heaviest first so that small dots stay visible on top of big ones.
    for dot in sorted(dots, key=lambda d: -d.weight):
        colour = colour_of(dot.bound)
        marker = "^" if dot.phase == "backward" else "o"
        area = dot_area(dot.weight, max_weight)
        if dot.flops_per_s is None:
            ax.plot(
                [dot.intensity], [0.03], transform=ax.get_xaxis_transform(), marker="|",
                markersize=6 + 14 * (area / MAX_DOT_AREA), color=colour, linestyle="none", zorder=3,
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

    bounds = {"memory" if d.bound and d.bound.startswith("memory") else d.bound for d in dots}
    if "compute" in bounds:
        marker("compute-bound", COLOURS["compute"], True)
    if "memory" in bounds:
        marker("memory-bound", COLOURS["memory"], True)
    if None in bounds:
        marker("no target: bound unknown", COLOURS["none"], True)
    if any(d.measured for d in dots) and not strip_only:
        marker("measured (achieved FLOP/s)", "#444444", True)
    if any(not d.measured and d.flops_per_s is not None for d in dots):
        marker("untimed (or too short): on its roof", "#444444", False)
    if any(d.phase == "backward" for d in dots):
        marker("backward pass", "#444444", True, "^")
    if any(c is not None for c in ceilings):
        handles.append(Line2D([], [], color=ROOF_COLOUR, linewidth=1.6, label="memory slope, matrix roof"))
        if any(c is not None and c.matrix_peak_flops_per_s != c.vector_peak_flops_per_s for c in ceilings):
            handles.append(
                Line2D([], [], color=ROOF_COLOUR, linewidth=1.2, linestyle="--", label="vector roof")
            )
        handles.append(
            Line2D([], [], color=ROOF_COLOUR, marker="D", markersize=5, linestyle="none", label="ridge point")
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
