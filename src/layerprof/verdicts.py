"""Roofline verdicts on rows: one per target, for a layer, a rolled-up group or the totals."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from types import MappingProxyType

from layerprof import roofline
from layerprof.devices import DeviceSpec
from layerprof.records import LayerRow, Verdict

_PRICED_DTYPES = {"float32", "float16", "bfloat16", "int8", "float8_e4m3fn", "float8_e5m2", "float64"}


def priced_dtype(row: LayerRow) -> str:
    """The dtype whose peak prices a row: its own, or float32 for index and integer bookkeeping rows."""
    if row.dtype in _PRICED_DTYPES:
        return "float32" if row.dtype == "float64" else row.dtype  # type: ignore[return-value]
    return "float32"


def judge(
    row: LayerRow,
    targets: Sequence[DeviceSpec],
    *,
    rows: Sequence[LayerRow] | None = None,
    timed_on: Collection[str] = (),
) -> LayerRow:
    """``row`` with one verdict per target. For the totals, pass the judged ``rows``: the predicted
    time is the sum of their roofline times (each kernel waits for the one before it).

    A measured time is judged (achieved FLOP/s, efficiency, flags) only against the targets named in
    ``timed_on``, the ones that describe the device it was measured on: a time taken on this CPU says
    nothing about a T4's efficiency."""
    if not targets:
        return row
    verdicts: dict[str, Verdict] = {}
    for device in targets:
        verdict = roofline.verdict(
            device.name,
            device,
            flops=row.flops,
            matrix_flops=row.matrix_flops,
            bytes_moved=row.bytes_total,
            dtype=priced_dtype(row) if rows is None else _dominant_dtype(rows),
            time_ms=row.time_ms if device.name in timed_on else None,
            allow_tf32=roofline.allow_tf32_for(device.kind),
        )
        if rows is not None:
            predicted = sum(r.roofline[device.name].roofline_time_ms for r in rows)
            measured = row.time_ms if device.name in timed_on else None
            efficiency = predicted / measured if measured else None
            verdict = replace(verdict, roofline_time_ms=predicted, roofline_efficiency=efficiency)
        verdicts[device.name] = verdict
    return replace(row, roofline=MappingProxyType(verdicts))


def _dominant_dtype(rows: Sequence[LayerRow]) -> str:
    weights: dict[str, int] = {}
    for row in rows:
        weights[priced_dtype(row)] = weights.get(priced_dtype(row), 0) + row.flops + row.bytes_total
    return max(weights, key=lambda k: weights[k]) if weights else "float32"
