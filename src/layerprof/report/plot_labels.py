"""Placing the roofline picture's labels where they overlap no other text, dot or edge.

Placement needs the figure laid out (boxes are measured in display space by the renderer), so it
runs after the first draw; matplotlib is imported inside the functions, as everywhere in the
picture's modules.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Literal, NamedTuple

from layerprof.report.plot_layout import LABEL_FONT_SIZE, TEXT_BOX, RooflineDot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.backend_bases import RendererBase
    from matplotlib.text import Annotation
    from matplotlib.transforms import Bbox

__all__ = [
    "DOT_GID",
    "LABEL_DIRECTIONS",
    "LABEL_RADII",
    "Candidate",
    "dot_text",
    "first_fit",
    "place_labels",
    "texts_taken",
]

#: The ``gid`` of every dot label (told from the ceilings' labels by it).
DOT_GID = "dot-label"
# Offsets (points) tried, in order, for a dot's label: next to it first, then further out with a
# leader line; at each distance centred above or below first, where a label cannot be read as its
# neighbour's. The first offset that overlaps no other text nor dot and stays inside the axes wins;
# failing that, the first that overlaps no text (a dot under a label is a blemish, a label under a
# label is unreadable); failing that, the label is left out.
LABEL_RADII = (5.0, 14.0, 26.0, 40.0, 56.0, 75.0, 95.0, 120.0)
LABEL_DIRECTIONS = ((0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0))


class Candidate(NamedTuple):
    """One place to try for a label: anchored at ``xy`` (data), offset by ``offset`` (points)."""

    xy: tuple[float, float]
    offset: tuple[float, float]
    ha: Literal["left", "center", "right"]
    va: Literal["bottom", "center", "top"]


# Labels keep this many pixels from each other: two names that touch read as one.
LABEL_GAP_PX = 2.0


def _overlap(box: Bbox, others: Iterable[Bbox]) -> int:
    wide = box.padded(LABEL_GAP_PX)
    return sum(1 for other in others if wide.overlaps(other))


def first_fit(
    label: Annotation,
    candidates: Sequence[Candidate],
    taken: list[Bbox],
    inside: Bbox,
    renderer: RendererBase,
    *,
    required: bool,
) -> bool:
    """Move ``label`` to the first candidate where its text overlaps nothing in ``taken`` and lies
    inside ``inside``; add its box to ``taken``. With none free, a ``required`` label takes the first
    candidate (and its box is taken too), any other is hidden. Returns whether a free place was found."""
    for candidate in candidates:
        _apply(label, candidate)
        box = _text_extent(label, renderer)
        if _contains(inside, box) and not _overlap(box, taken):
            taken.append(box)
            return True
    if required and candidates:
        _apply(label, candidates[0])
        taken.append(_text_extent(label, renderer))
    else:
        label.set_visible(False)
    return False


def _apply(label: Annotation, candidate: Candidate) -> None:
    label.xy = candidate.xy
    label.set_position(candidate.offset)
    label.set_horizontalalignment(candidate.ha)
    label.set_verticalalignment(candidate.va)


def dot_text(dot: RooflineDot) -> str:
    """A dot's label: its row's name, and for a row faster than its roof by how much."""
    if dot.above_roof and dot.efficiency is not None:
        return f"! {dot.label} ({dot.efficiency:.2g}x its roof)"
    return dot.label


def place_labels(
    ax: Axes, dots: Sequence[RooflineDot], label_top: int, renderer: RendererBase
) -> list[RooflineDot]:
    """Label every dot above its roof, then the ``label_top`` heaviest others, each where its text
    overlaps no other text of the axes (ceiling labels, notes, earlier labels) and stays inside
    them; a label with no such place is left out. Returns the dots left unlabelled for lack of room."""
    from matplotlib.transforms import Bbox

    placeable = [d for d in dots if d.flops_per_s is not None]
    findings = sorted((d for d in placeable if d.above_roof), key=lambda d: -d.weight)
    others = sorted((d for d in placeable if not d.above_roof), key=lambda d: -d.weight)[:label_top]
    chosen = findings + others
    if not chosen:
        return []
    inside = ax.get_window_extent(renderer)
    # Obstacles: texts already on the axes (roof, ridge and slope labels, notes) and the dots.
    taken = texts_taken(ax, renderer)
    dot_boxes: list[Bbox] = []
    for dot in placeable:
        assert dot.flops_per_s is not None
        x, y = ax.transData.transform((dot.intensity, dot.flops_per_s))
        dot_boxes.append(Bbox.from_bounds(x - 3, y - 3, 6, 6))
    left_out: list[RooflineDot] = []
    for dot in chosen:
        assert dot.flops_per_s is not None
        annotation = ax.annotate(
            dot_text(dot),
            (dot.intensity, dot.flops_per_s),
            xytext=(0, 0),
            textcoords="offset points",
            fontsize=LABEL_FONT_SIZE,
            color="#111111",
            fontweight="bold" if dot.above_roof else "normal",
            zorder=6,
            bbox=TEXT_BOX,
            gid=DOT_GID,
            arrowprops={"arrowstyle": "-", "color": "#777777", "linewidth": 0.6, "shrinkA": 0, "shrinkB": 2},
        )
        best: tuple[int, float, float] | None = None
        for radius in LABEL_RADII:
            for dx, dy in LABEL_DIRECTIONS:
                _set_offset(annotation, dx * radius, dy * radius)
                box = _text_extent(annotation, renderer)
                if not _contains(inside, box) or _overlap(box, taken):
                    continue
                soft = _overlap(box, dot_boxes)
                if best is None or soft < best[0]:
                    best = (soft, dx * radius, dy * radius)
                if soft == 0:
                    break
            if best is not None and best[0] == 0:
                break
        if best is None:
            annotation.set_visible(False)
            left_out.append(dot)
            continue
        _set_offset(annotation, best[1], best[2])
        if annotation.arrow_patch is not None:
            annotation.arrow_patch.set_visible(math.hypot(best[1], best[2]) > LABEL_RADII[0] * 1.5)
        taken.append(_text_extent(annotation, renderer))
    return left_out


def texts_taken(ax: Axes, renderer: RendererBase) -> list[Bbox]:
    """Display boxes of the visible texts on ``ax`` (an annotation's text alone, not its leader)."""
    from matplotlib.text import Annotation

    return [
        _text_extent(t, renderer) if isinstance(t, Annotation) else t.get_window_extent(renderer)
        for t in ax.texts
        if t.get_visible() and t.get_text()
    ]


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
