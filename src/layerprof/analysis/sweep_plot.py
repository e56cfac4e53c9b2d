"""A sweep on the roofline: one panel per target (and dtype), the points joined per series.

The panels, ceilings, dots and legend are the report's own (:func:`layerprof.report.plot_draw.build_figure`);
this only adds the lines that join each series' points in sweep order, and their legend.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from layerprof.analysis.sweep_axes import label_of
from layerprof.report.plot_draw import build_figure
from layerprof.report.plot_layout import DPI, RooflineDot, RooflinePanel, check_path

if TYPE_CHECKING:
    from layerprof.analysis.sweep import Sweep

__all__ = ["plot_sweep"]

logger = logging.getLogger(__name__)

_SERIES_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def _panels(result: Sweep) -> list[tuple[RooflinePanel, str, str]]:
    """(panel, target name, dtype) for every target and every dtype of the sweep."""
    from layerprof.analysis.sweep import attainable

    dtypes = list(dict.fromkeys(p.params.dtype for p in result.points))
    axis = result.series_axis
    out = []
    for target in result.targets:
        for dtype in dtypes:
            dots = tuple(
                RooflineDot(
                    label_of(axis, p.value(axis)) if axis else "point",
                    p.intensity,
                    attainable(p.flops, p.verdicts[target.name]),
                    float(p.flops),
                    p.verdicts[target.name].bound,
                    measured=False,
                )
                for p in result.points
                if p.params.dtype == dtype
            )
            title = f"{target.full_name} ({dtype})" if len(dtypes) > 1 else ""
            out.append((RooflinePanel(target, dtype, dots, title=title), target.name, dtype))
    return out


def plot_sweep(result: Sweep, path: str | Path) -> Path:
    from layerprof.analysis.sweep import attainable
    from layerprof.analysis.sweep_text import describe

    target_path = check_path(path)
    panels = _panels(result)
    series = result.series()
    label_top = len(series[0][1]) if series else 1
    figure = build_figure(
        [panel for panel, _, _ in panels],
        # One panel is narrow: the title wraps rather than clips.
        title=textwrap.fill(f"Sweep: {describe(result)}", width=70 if len(panels) == 1 else 140),
        notes=("lines join each series' points in sweep order",),
        label_top=label_top,
        weight_meaning="FLOPs",
    )
    axes = figure.axes[: len(panels)]
    for ax, (_, target, dtype) in zip(axes, panels, strict=True):
        for index, (name, run) in enumerate(series):
            shown = [p for p in run if p.params.dtype == dtype]
            if len(shown) < 2:
                continue
            ax.plot(
                [p.intensity for p in shown],
                [attainable(p.flops, p.verdicts[target]) for p in shown],
                color=_SERIES_COLOURS[index % len(_SERIES_COLOURS)],
                linewidth=1.1,
                alpha=0.8,
                zorder=2,
                label=name,
            )
        if len(series) > 1:
            ax.legend(fontsize=7, loc="lower right", title="series", title_fontsize=7)
    if target_path.suffix.lower() == ".svg":
        figure.savefig(target_path, format="svg")
    else:
        figure.savefig(target_path, format="png", dpi=DPI)
    logger.info("wrote sweep picture %s", target_path)
    return target_path
