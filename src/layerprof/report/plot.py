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

The picture is made in three modules: :mod:`~layerprof.report.plot_layout` (ceilings, dots, sizes:
no matplotlib), :mod:`~layerprof.report.plot_draw` (the drawing) and
:mod:`~layerprof.report.plot_labels` (where the labels go). This one turns a report into panels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from layerprof.core.records import LayerRow
from layerprof.hardware.specs import DeviceSpec
from layerprof.report.plot_draw import draw_rooflines, require_matplotlib
from layerprof.report.plot_layout import RooflineDot, RooflinePanel, check_label_top, check_path, human
from layerprof.report.titles import report_title
from layerprof.roofline import model as roofline
from layerprof.roofline.verdicts import dominant_dtype, judge, tf32_op

if TYPE_CHECKING:
    from layerprof.report.facade import Report

__all__ = ["plot_roofline", "row_dot"]


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


def plot_roofline(report: Report, path: str | Path, *, label_top: int = 8) -> Path:
    """Draw ``report`` on the roofline of each of its targets and write it to ``path`` (.png or .svg).

    One panel per target (one bare panel, without ceilings, when the report has none). Every row
    with FLOPs is a dot, forward and backward; rows without FLOPs are counted in a note. The
    ``label_top`` heaviest rows (by measured time, by FLOPs when untimed) are labelled.
    Returns the path written.
    """
    target_path = check_path(path)
    label_top = check_label_top(label_top)
    require_matplotlib()
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
    title = f"{report_title(report, brand=False)}: {human(total_flops, 'FLOP')}, {dtype}"
    return draw_rooflines(
        panels,
        target_path,
        title=title,
        notes=notes,
        label_top=label_top,
        weight_meaning="measured time" if timed else "FLOPs",
    )
