"""Drawing one panel's ceilings: a bandwidth slope per memory level, the compute roofs, the ridges.

The lines are drawn before the figure is laid out; their labels after (:func:`label_ceilings`),
when display space is known, each at the first of its candidate places where it overlaps no other
text and stays inside the axes (:func:`layerprof.report.plot_labels.first_fit`). matplotlib is
imported inside the functions, as everywhere in the picture's modules.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from layerprof.report.plot_labels import Candidate, first_fit, texts_taken
from layerprof.report.plot_layout import ROOF_COLOUR, TEXT_BOX, Ceilings, Slope, human, level_colour

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

__all__ = ["CEILING_GID", "draw_ceiling_lines", "label_ceilings"]

#: The ``gid`` every ceiling label carries (roofs, ridges, slopes), so that they can be told from
#: the dots' labels (in the tests, in an SVG).
CEILING_GID = "ceiling-label"
# Where along a slope its label is tried: fractions of the way (in log space) from the left edge to
# the slope's ridge.
_ALONG = (0.3, 0.15, 0.45, 0.6, 0.05, 0.75, 0.9)


def _ridge(ceiling: Ceilings, slope: Slope, peak: float) -> float:
    return peak / slope.bandwidth_bytes_per_s


def draw_ceiling_lines(ax: Axes, ceiling: Ceilings, x_limits: tuple[float, float]) -> None:
    """Every slope from the left edge to where it meets the matrix roof (in its level's colour), the
    matrix roof and the vector roof from the leftmost slope to the right edge, the DRAM ridges."""
    x_low, x_high = x_limits
    matrix, vector = ceiling.matrix_peak_flops_per_s, ceiling.vector_peak_flops_per_s
    slopes = ceiling.slopes or (Slope("DRAM", ceiling.memory_bandwidth_bytes_per_s),)
    for slope in slopes:
        dram = slope.level == "DRAM"
        ax.plot(
            [x_low, _ridge(ceiling, slope, matrix)], [slope.bandwidth_bytes_per_s * x_low, matrix],
            color=level_colour(slope.level), linewidth=1.6 if dram else 1.3, zorder=2,
            linestyle="-" if dram else (0, (6, 2)),
        )  # fmt: skip
    fastest = max(slopes, key=lambda s: s.bandwidth_bytes_per_s)
    ax.plot(
        [_ridge(ceiling, fastest, matrix), x_high], [matrix] * 2, color=ROOF_COLOUR, linewidth=1.6, zorder=2
    )
    same = math.isclose(matrix, vector, rel_tol=1e-9)
    if not same:
        ax.plot(
            [_ridge(ceiling, fastest, vector), x_high], [vector] * 2,
            color=ROOF_COLOUR, linewidth=1.2, linestyle="--", zorder=2,
        )  # fmt: skip
    for ridge, peak in [(ceiling.matrix_ridge_point, matrix)] + (
        [] if same else [(ceiling.vector_ridge_point, vector)]
    ):
        ax.plot([ridge], [peak], marker="D", markersize=5, color=ROOF_COLOUR, zorder=4, linestyle="none")
        ax.plot(
            [ridge, ridge],
            [ax.get_ylim()[0], peak],
            color=ROOF_COLOUR,
            linewidth=0.6,
            linestyle=":",
            zorder=1,
        )


def _annotation(ax: Axes, text: str, xy: tuple[float, float], *, rotation: float = 0.0) -> Annotation:
    return ax.annotate(
        text,
        xy,
        xytext=(0, 0),
        textcoords="offset points",
        rotation=rotation,
        rotation_mode="anchor",
        fontsize=7.5,
        color=ROOF_COLOUR,
        zorder=5,
        bbox=TEXT_BOX,
        gid=CEILING_GID,
    )


def label_ceilings(
    ax: Axes, ceiling: Ceilings, x_limits: tuple[float, float], renderer: RendererBase
) -> None:
    """Label the roofs, the DRAM ridges and every slope, none over another text of the axes.

    A label with no free place among its candidates takes the first one (the roofs, the ridges, the
    DRAM slope: the picture cannot be read without them), or is left out (a cache level's slope, whose
    figure the panel's title gives too)."""
    x_low, x_high = x_limits
    matrix, vector = ceiling.matrix_peak_flops_per_s, ceiling.vector_peak_flops_per_s
    same = math.isclose(matrix, vector, rel_tol=1e-9)
    inside = ax.get_window_extent(renderer)
    taken: list[Bbox] = texts_taken(ax, renderer)
    fastest = max(ceiling.slopes or (Slope("DRAM", ceiling.memory_bandwidth_bytes_per_s),),
                  key=lambda s: s.bandwidth_bytes_per_s)  # fmt: skip

    def along_roof(peak: float, above_first: bool) -> list[Candidate]:
        start = _ridge(ceiling, fastest, peak)
        xs = [x for x in (x_high / 1.08 / 2.5**k for k in range(6)) if x > start * 1.5] or [x_high / 1.08]
        above = [Candidate((x, peak), (0, 3), "right", "bottom") for x in xs]
        below = [Candidate((x, peak), (0, -3), "right", "top") for x in xs]
        return above + below if above_first else below + above

    roof_name = "roof" if same else "matrix roof"
    label = _annotation(ax, f"{roof_name} {human(matrix, 'FLOP/s')}", (x_high, matrix))
    first_fit(label, along_roof(matrix, True), taken, inside, renderer, required=True)
    if not same:
        label = _annotation(ax, f"vector roof {human(vector, 'FLOP/s')}", (x_high, vector))
        first_fit(label, along_roof(vector, False), taken, inside, renderer, required=True)
    ridges = [("ridge" if same else "matrix ridge", ceiling.matrix_ridge_point, matrix)]
    if not same:
        ridges.append(("vector ridge", ceiling.vector_ridge_point, vector))
    for name, ridge, peak in ridges:
        label = _annotation(ax, f"{name}\n{ridge:.3g} FLOP/B", (ridge, peak))
        candidates = [
            Candidate((ridge, peak), (sign * 4, -dy), "left" if sign > 0 else "right", "top")
            for dy in (6, 22, 40, 60, 85)
            for sign in (1, -1)
        ]
        candidates += [Candidate((ridge, peak), (sign * 4, 6), "left" if sign > 0 else "right", "bottom")
                       for sign in (1, -1)]  # fmt: skip
        first_fit(label, candidates, taken, inside, renderer, required=True)
    # The slopes are parallel on log-log axes: one angle for all, known only once laid out.
    start = ax.transData.transform((x_low, ceiling.memory_bandwidth_bytes_per_s * x_low))
    end = ax.transData.transform((ceiling.matrix_ridge_point, matrix))
    angle = math.degrees(math.atan2(end[1] - start[1], end[0] - start[0]))
    for slope in ceiling.slopes or (Slope("DRAM", ceiling.memory_bandwidth_bytes_per_s),):
        bandwidth = slope.bandwidth_bytes_per_s
        ridge = min(_ridge(ceiling, slope, matrix), _ridge(ceiling, slope, vector))
        if ridge <= x_low:
            continue  # the slope meets the roofs left of the axes: there is no slope to label
        label = _annotation(
            ax, f"{slope.level} {human(bandwidth, 'B/s')}", (x_low, bandwidth * x_low), rotation=angle
        )
        label.set_color(level_colour(slope.level))
        xs = [x_low * (ridge / x_low) ** t for t in _ALONG]
        candidates = [Candidate((x, bandwidth * x), (0, 3), "left", "bottom") for x in xs]
        candidates += [Candidate((x, bandwidth * x), (0, -3), "left", "top") for x in xs]
        first_fit(label, candidates, taken, inside, renderer, required=slope.level == "DRAM")
