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
from layerprof.report.plot_ceilings import draw_ceiling_lines, label_ceilings
from layerprof.report.plot_labels import place_labels
from layerprof.report.plot_layout import (
    ABOVE_ROOF_COLOUR,
    COLOURS,
    DPI,
    MAX_DOT_AREA,
    ROOF_COLOUR,
    Ceilings,
    RooflineDot,
    RooflinePanel,
    area_of,
    bound_colour,
    bound_label,
    cap_shown,
    ceilings_of,
    check_label_top,
    check_path,
    figure_size_px,
    level_colour,
    limits,
    max_weights,
    panel_grid,
    panel_title,
    strip_height_in,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["build_figure", "draw_rooflines", "require_matplotlib"]

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
    weight_meaning: str | None = None,
) -> Path:
    """Draw ``panels`` side by side (shared axes) and write the figure to ``path`` (.png or .svg).

    The lower-level entry point behind :func:`plot_roofline`, for pictures that are not a report
    (see ``examples/kernel_size_sweep.py``). Dot areas are scaled within each panel, among dots of
    one unit (times, FLOPs); ``weight_meaning`` (the notes' words for it) defaults to one said from
    the dots' ``weight_basis``.
    """
    target_path = check_path(path)
    figure = build_figure(
        panels, title=title, notes=notes, label_top=label_top, weight_meaning=weight_meaning
    )
    if target_path.suffix.lower() == ".svg":
        figure.savefig(target_path, format="svg")
    else:
        figure.savefig(target_path, format="png", dpi=DPI)
    logger.info("wrote roofline picture %s", target_path)
    return target_path


def build_figure(
    panels: Sequence[RooflinePanel],
    *,
    title: str,
    notes: Sequence[str] = (),
    label_top: int = 8,
    weight_meaning: str | None = None,
) -> Figure:
    """The figure :func:`draw_rooflines` writes, laid out and labelled, on an Agg canvas."""
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
            draw_ceiling_lines(ax, ceiling, x_limits)
        _draw_dots(ax, panel.dots)
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
    meaning = weight_meaning if weight_meaning is not None else _weight_meaning(panels)
    findings = _findings(panels)
    notes_text = _wrap_notes([f"dot area ∝ {meaning}", *findings, *notes], width_px / DPI)
    figure.text(0.01, 0.01, notes_text, fontsize=7.5, color="#555555", ha="left", va="bottom")

    # Lay the figure out once, freeze it, then place labels in display space where overlaps show.
    canvas.draw()  # type: ignore[no-untyped-call]
    figure.set_layout_engine("none")
    renderer = canvas.get_renderer()  # type: ignore[no-untyped-call]
    for ax, panel, ceiling in zip(axes_list, panels, ceilings, strict=False):
        if ceiling is not None:
            label_ceilings(ax, ceiling, x_limits, renderer)
        left_out = place_labels(ax, panel.dots, label_top, renderer)
        if left_out:
            logger.info("%d labels left out for lack of room: %s", len(left_out), [d.label for d in left_out])
    return figure


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


def _weight_meaning(panels: Sequence[RooflinePanel]) -> str:
    bases = {d.weight_basis for p in panels for d in p.dots}
    if bases == {"measured"}:
        return "measured time"
    if bases == {"predicted"}:
        return "predicted (roofline) time on the panel's target"
    if bases == {"flops"}:
        return "FLOPs"
    if "flops" in bases:
        return "measured time (ticks: FLOPs)"
    return "time on the panel's target: measured where timed on it, else predicted (roofline)"


def _findings(panels: Sequence[RooflinePanel]) -> list[str]:
    """The notes' line naming every dot measured faster than its roof, on each panel."""
    lines = []
    for panel in panels:
        above = [d for d in panel.dots if d.above_roof]
        if not above:
            continue
        names = ", ".join(
            f"{d.label} ({d.efficiency:.2g}x)" if d.efficiency is not None else d.label for d in above[:5]
        )
        more = f" and {len(above) - 5} more" if len(above) > 5 else ""
        where = f" on {panel.target.name}" if panel.target is not None else ""
        lines.append(f"! faster than its roof{where}, check: {names}{more}")
    return lines


def _draw_dots(ax: Axes, dots: Sequence[RooflineDot]) -> None:
    heaviest = max_weights(dots)
    # Heaviest first so that small dots stay visible on top of big ones.
    for dot in sorted(dots, key=lambda d: -area_of(d, heaviest)):
        colour = bound_colour(dot.bound)
        marker = "^" if dot.phase == "backward" else "o"
        area = area_of(dot, heaviest)
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
        if dot.above_roof:  # a finding: a ring around it, and its label is always drawn
            ring = (math.sqrt(area) + 7) ** 2
            ax.scatter(
                [dot.intensity], [dot.flops_per_s], s=ring, marker="o", facecolors="none",
                edgecolors=ABOVE_ROOF_COLOUR, linewidths=1.8, zorder=4,
            )  # fmt: skip
        if cap_shown(dot):  # the launch floor: no faster than flops / (kernels x launch time)
            assert dot.cap_flops_per_s is not None
            ax.plot(
                [dot.intensity] * 2, [dot.flops_per_s, dot.cap_flops_per_s], color=COLOURS["overhead"],
                linewidth=0.7, linestyle=":", zorder=2,
            )  # fmt: skip
            ax.plot(
                [dot.intensity], [dot.cap_flops_per_s], marker="_", markersize=11, markeredgewidth=1.8,
                color=COLOURS["overhead"], linestyle="none", zorder=4,
            )  # fmt: skip


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
    levels = []  # every memory level with a slope drawn or a dot bound by it, DRAM first
    for c in ceilings:
        levels += [s.level for s in c.slopes] if c is not None else []
    levels += sorted(b[len("memory(") : -1] for b in bounds if b is not None and b.startswith("memory("))
    levels = list(dict.fromkeys(levels))
    if "compute" in bounds:
        marker(bound_label("compute"), COLOURS["compute"], True)
    for level in levels:  # one entry per level: its slope and its dots, in its colour
        bound_here = f"memory({level})" in bounds
        handles.append(
            Line2D(
                [], [], color=level_colour(level), linewidth=1.4, marker="o" if bound_here else "none",
                markersize=6, label=f"{level}: slope" + (", memory-bound dots" if bound_here else ""),
                linestyle="-" if level == "DRAM" else (0, (6, 2)),
            )
        )  # fmt: skip
    if "memory" in bounds:
        marker("memory-bound (DRAM-only verdict)", COLOURS["memory"], True)
    if "overhead" in bounds:
        marker(bound_label("overhead"), COLOURS["overhead"], True)
    if None in bounds:
        marker(bound_label(None), COLOURS["none"], True)
    if any(d.measured for d in dots) and not strip_only:
        marker("measured (achieved FLOP/s)", "#444444", True)
    if any(not d.measured and d.flops_per_s is not None for d in dots):
        marker("untimed (or too short): on its roof", "#444444", False)
    if any(d.phase == "backward" for d in dots):
        marker("backward pass", "#444444", True, "^")
    if any(d.above_roof for d in dots):
        marker("! faster than its roof: check", ABOVE_ROOF_COLOUR, False)
    if any(cap_shown(d) for d in dots):
        handles.append(
            Line2D(
                [], [], linestyle="none", marker="_", markersize=11, markeredgewidth=1.8,
                color=COLOURS["overhead"], label="launch floor cap: flops / (kernels x launch time)",
            )
        )  # fmt: skip
    if any(c is not None for c in ceilings):
        handles.append(Line2D([], [], color=ROOF_COLOUR, linewidth=1.6, label="matrix roof"))
        if any(c is not None and c.matrix_peak_flops_per_s != c.vector_peak_flops_per_s for c in ceilings):
            handles.append(
                Line2D([], [], color=ROOF_COLOUR, linewidth=1.2, linestyle="--", label="vector roof")
            )
        handles.append(
            Line2D(
                [], [], color=ROOF_COLOUR, marker="D", markersize=5, linestyle="none", label="ridge (DRAM)"
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
