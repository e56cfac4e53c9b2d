"""The HTML page's "where the time goes" chart as data: each row's share of the time, by bound.

The time is the measured one when the report was timed, else the predicted (roofline) time on the
first target. Colour says the bound on the target the time belongs to: the one the times were taken
on when there is one, else the first. The chart is a strip of every row in execution order and the
heaviest rows ranked, the rest summed in one line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from layerprof.core.records import LayerRow, Phase
from layerprof.core.units import milliseconds, si
from layerprof.report.plot_layout import COLOURS

if TYPE_CHECKING:
    from layerprof.report.facade import Report

__all__ = ["Bar", "TimeChart", "time_chart"]

RANKED = 15


@dataclass(frozen=True, slots=True)
class Bar:
    row_id: str
    label: str
    ms: str
    share: float  # of the whole time, 0..1
    width: float  # of the widest bar (ranked) or of the strip, in percent
    colour: str
    tip: str


@dataclass(frozen=True, slots=True)
class TimeChart:
    basis: str  # "measured time" or "predicted time on NVIDIA T4 (t4)"
    total_ms: str
    strip: tuple[Bar, ...]
    ranked: tuple[Bar, ...]
    rest: str  # "(170 more rows): 1.23 ms, 12.3%" or ""
    shares: tuple[tuple[str, str, float], ...]  # (bound, colour, share) of the time


def time_chart(report: Report, row_ids: Mapping[tuple[Phase, str], str]) -> TimeChart | None:
    """The chart for ``report``; None when it has neither times nor a target to predict them on."""
    rows = list(report.layers)
    timed = any(r.time_ms is not None for r in rows)
    judge_on = next((t for t in report.targets if t.name in report.timed_on), None)
    target = judge_on or (report.targets[0] if report.targets else None)
    if not timed and target is None:
        return None

    def ms_of(row: LayerRow) -> float:
        if timed:
            return row.time_ms or 0.0
        verdict = row.roofline.get(target.name) if target is not None else None
        return verdict.roofline_time_ms if verdict is not None else 0.0

    def bound_of(row: LayerRow) -> str:
        verdict = row.roofline.get(target.name) if target is not None else None
        if verdict is None:
            return "none"
        return "memory" if verdict.memory_bound else verdict.bound  # one colour for every level

    times = [(row, ms_of(row)) for row in rows]
    total = sum(ms for _, ms in times)
    if total <= 0:
        return None
    basis = "measured time"
    if not timed and target is not None:
        basis = f"predicted time on {target.full_name} ({target.name})"

    def bar(row: LayerRow, ms: float, width: float) -> Bar:
        bound = bound_of(row)
        name = f"{row.name} (backward)" if row.phase == "backward" else row.name
        on = f", {bound}-bound on {target.name}" if target is not None and bound != "none" else ""
        tip = (
            f"{name}  ({row.kind})\n{milliseconds(ms)} ms, {ms / total:.1%} of the {basis}{on}\n"
            f"FLOPs {si(row.flops)}   intensity {row.intensity:.3g} FLOP/B"
        )
        colour = COLOURS.get(bound, COLOURS["none"])
        return Bar(
            row_ids.get((row.phase, row.name), ""), name, milliseconds(ms), ms / total, width, colour, tip
        )

    strip = tuple(bar(row, ms, 100 * ms / total) for row, ms in times if ms > 0)
    heaviest = sorted(times, key=lambda item: -item[1])
    top = [(row, ms) for row, ms in heaviest[:RANKED] if ms > 0]
    widest = top[0][1] if top else 1.0
    ranked = tuple(bar(row, ms, 100 * ms / widest) for row, ms in top)
    left = [ms for _, ms in heaviest[len(top) :]]
    rest = ""
    if left:
        rest = f"({len(left)} more rows): {milliseconds(sum(left))} ms, {sum(left) / total:.1%}"
    by_bound: dict[str, float] = {}
    for row, ms in times:
        by_bound[bound_of(row)] = by_bound.get(bound_of(row), 0.0) + ms
    shares = tuple(
        (bound, COLOURS.get(bound, COLOURS["none"]), by_bound[bound] / total)
        for bound in ("memory", "compute", "overhead", "none")
        if by_bound.get(bound, 0.0) > 0
    )
    return TimeChart(basis, milliseconds(total), strip, ranked, rest, shares)
