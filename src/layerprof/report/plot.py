"""The roofline picture: one panel per target, its ceilings drawn, one dot per row.

Each panel is log-log: x is operational intensity (FLOPs per byte moved), y is FLOP/s. The ceilings
are one bandwidth slope per memory level (``bandwidth * intensity``: DRAM, and each cache level of
the target, in that level's colour), the matrix roof and the vector roof of the dtype that dominates
the report (float32 matrix work uses the TF32 peak where torch allows it, as the verdicts do), the
DRAM ridge points marked with their value, and over each dot with kernels its launch floor's cap,
``flops / (kernels * launch_overhead_s)``, where that cap is near enough to matter. A row timed on the
panel's target sits at its achieved FLOP/s (a filled dot, sized by its measured time); any other row
sits on its roof, at ``flops / roofline_time`` (a ring, sized by that roofline time on the panel's
target), so the picture shows where it would run at best. Colour says the bound on that panel's
target (compute, the memory level, overhead). A row measured faster than its roof is ringed in black
and always labelled with by how much: a finding to check, named in the notes too.

matplotlib is optional (``pip install layerprof[plot]``) and imported only inside the functions that
draw; figures are built on the Agg canvas, never through pyplot, so no global state is touched.

The picture is made in four modules: :mod:`~layerprof.report.plot_layout` (ceilings, dots, sizes,
colours: no matplotlib), :mod:`~layerprof.report.plot_draw` (the figure),
:mod:`~layerprof.report.plot_ceilings` (the ceilings' lines and labels) and
:mod:`~layerprof.report.plot_labels` (where the labels go, clear of each other). This one turns a
report into panels.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from layerprof.core.records import LayerRow
from layerprof.hardware.specs import DeviceSpec
from layerprof.report.plot_draw import draw_rooflines, require_matplotlib
from layerprof.report.plot_layout import RooflineDot, RooflinePanel, check_label_top, check_path, human
from layerprof.report.titles import report_title
from layerprof.roofline import model as roofline
from layerprof.roofline.verdicts import dominant_dtype, judge, tf32_op

if TYPE_CHECKING:
    from layerprof.report.facade import Report

__all__ = ["plot_roofline", "report_panels", "row_dot"]


def _row_label(row: LayerRow) -> str:
    return f"{row.name} (bwd)" if row.phase == "backward" else row.name


def _achieved_without_target(row: LayerRow) -> float | None:
    if row.time_ms is None or row.time_ms < roofline.DEFAULT_MIN_TIME_MS:
        return None
    return row.flops / (row.time_ms / 1e3)


def row_dot(row: LayerRow, target: DeviceSpec | None) -> RooflineDot:
    """Where and how big ``row`` is drawn on ``target``'s panel.

    Timed on ``target`` (its verdict there carries an efficiency), the dot sits at its achieved FLOP/s
    and is sized by its measured time. Otherwise (untimed, too short, or timed on another device) it
    sits on its roof, at ``flops / roofline_time``, and is sized by that roofline time on ``target``:
    a time measured on one device never sizes a dot on another. Without a target an untimed row has
    no FLOP/s to be drawn at (its ``flops_per_s`` is None) and is sized by its FLOPs."""
    if target is None:
        achieved = _achieved_without_target(row)
        basis: Literal["measured", "flops"] = "measured" if row.time_ms is not None else "flops"
        weight = float(row.time_ms) if row.time_ms is not None else float(row.flops)
        return RooflineDot(
            _row_label(row),
            row.intensity,
            achieved,
            weight,
            None,
            achieved is not None,
            row.phase,
            weight_basis=basis,
        )
    verdict = row.roofline.get(target.name)
    if verdict is None:  # a row judged against other targets: judge it here, the same way
        verdict = judge(row, (target,)).roofline[target.name]
    cap = None
    if target.launch_overhead_s is not None and verdict.kernels > 0 and row.flops > 0:
        cap = row.flops / (verdict.kernels * target.launch_overhead_s)
    timed_here = row.time_ms is not None and verdict.roofline_efficiency is not None
    measured = timed_here and verdict.achieved_flops_per_s is not None
    if measured:
        rate: float | None = verdict.achieved_flops_per_s
    else:
        rate = row.flops / (verdict.roofline_time_ms / 1e3) if verdict.roofline_time_ms > 0 else None
    return RooflineDot(
        _row_label(row),
        row.intensity,
        rate,
        float(row.time_ms) if timed_here and row.time_ms is not None else verdict.roofline_time_ms,
        verdict.bound,
        measured,
        row.phase,
        weight_basis="measured" if timed_here else "predicted",
        above_roof="above-roof" in verdict.flags,
        efficiency=verdict.roofline_efficiency,
        cap_flops_per_s=cap,
    )


def plot_roofline(report: Report, path: str | Path, *, label_top: int = 8) -> Path:
    """Draw ``report`` on the roofline of each of its targets and write it to ``path`` (.png or .svg).

    One panel per target (one bare panel, without ceilings, when the report has none). Every row
    with FLOPs is a dot, forward and backward; rows without FLOPs are counted in a note. Every row
    measured faster than its roof is labelled, and the ``label_top`` heaviest others (by their dot's
    time, by FLOPs without a target), where their label overlaps no other text.
    Returns the path written.
    """
    target_path = check_path(path)
    label_top = check_label_top(label_top)
    require_matplotlib()
    panels, title, notes = report_panels(report)
    return draw_rooflines(panels, target_path, title=title, notes=notes, label_top=label_top)


def report_panels(report: Report) -> tuple[tuple[RooflinePanel, ...], str, list[str]]:
    """The panels of ``report``'s picture (one per target), its title and its notes."""
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
    return panels, title, notes
