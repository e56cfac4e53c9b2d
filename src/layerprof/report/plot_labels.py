"""Placing the roofline picture's dot labels where they overlap no other text, dot or edge.

Placement needs the figure laid out (boxes are measured in display space by the renderer), so it
runs after the first draw; matplotlib is imported inside the functions, as everywhere in the
picture's modules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from layerprof.report.plot_layout import LABEL_FONT_SIZE, TEXT_BOX, RooflineDot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

__all__ = ["LABEL_DIRECTIONS", "LABEL_RADII", "place_labels"]

# Offsets (points) tried, in order, for a dot's label: next to it first, then further out with a
# leader line; at each distance centred above or below first, where a label cannot be read as its
# neighbour's. The first offset that overlaps no other text nor dot and stays inside the axes wins.
LABEL_RADII = (5.0, 14.0, 26.0, 40.0, 56.0, 75.0, 95.0)
LABEL_DIRECTIONS = ((0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0))


def _overlap(box: Bbox, others: Iterable[Bbox]) -> int:
    return sum(1 for other in others if box.overlaps(other))


def place_labels(ax: Axes, dots: Sequence[RooflineDot], label_top: int, renderer: RendererBase) -> None:
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
            fontsize=LABEL_FONT_SIZE,
            color="#111111",
            zorder=6,
            bbox=TEXT_BOX,
            arrowprops={"arrowstyle": "-", "color": "#777777", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 2},
        )
        best: tuple[int, int, float, float] | None = None
        for radius in LABEL_RADII:
            for dx, dy in LABEL_DIRECTIONS:
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
            annotation.arrow_patch.set_visible(math.hypot(best[2], best[3]) > LABEL_RADII[0] * 1.5)
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
