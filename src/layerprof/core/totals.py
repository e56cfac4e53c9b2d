"""The totals row: sums over the rows, so that a table's columns always add up to its last line."""

from __future__ import annotations

from collections.abc import Sequence

from layerprof.core import rownames
from layerprof.core.records import LayerRow, Phase


def total_phase(rows: Sequence[LayerRow]) -> Phase:
    """The totals' phase: the rows' one phase, or ``"step"`` when they hold a forward and a backward."""
    phases = {r.phase for r in rows}
    if len(phases) > 1:
        return "step"
    return rows[0].phase if rows else "forward"


def total_row(rows: Sequence[LayerRow], *, kind: str, time_ms: float | None = None) -> LayerRow:
    flops = sum(r.flops for r in rows)
    matrix = sum(r.matrix_flops for r in rows)
    read = sum(r.bytes_read for r in rows)
    written = sum(r.bytes_written for r in rows)
    return LayerRow(
        name=rownames.TOTAL,
        kind=kind,
        phase=total_phase(rows),
        depth=0,
        calls=1,
        params=sum(r.params for r in rows),
        flops=flops,
        matrix_flops=matrix,
        bytes_read=read,
        bytes_written=written,
        activation_bytes=sum(r.activation_bytes for r in rows),
        time_ms=time_ms,
    )
