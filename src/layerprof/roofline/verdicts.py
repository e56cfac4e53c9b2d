"""Roofline verdicts on rows: one per target, for a layer, a rolled-up group or the totals."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Literal

from layerprof.core.records import LayerRow, Verdict
from layerprof.hardware.specs import DeviceSpec
from layerprof.roofline import model as roofline

_PRICED_DTYPES = {"float32", "float16", "bfloat16", "int8", "float8_e4m3fn", "float8_e5m2", "float64"}
#: Complex work is counted in real FLOPs, which run at the peak of the real parts' dtype.
_REAL_PARTS = {"complex32": "float16", "complex64": "float32", "complex128": "float64"}


def priced_dtype(row: LayerRow) -> str:
    """The dtype whose peak prices a row: its own (its real parts' when complex), or float32 for index
    and integer bookkeeping rows.

    A dtype the target has no peak for falls back to its float32 peak with a warning naming both."""
    dtype = _REAL_PARTS.get(row.dtype, row.dtype) if row.dtype is not None else None
    return dtype if dtype in _PRICED_DTYPES else "float32"  # type: ignore[return-value]


def tf32_op(rows: Sequence[LayerRow]) -> Literal["conv", "matmul"]:
    """Which of torch's TF32 switches governs the matrix work of ``rows``: cuDNN's for convolutions
    (the rows with a kernel), cuBLAS's for GEMMs and attention; for a mix, that of most FLOPs."""
    conv = sum(r.matrix_flops for r in rows if r.kernel_size is not None)
    gemm = sum(r.matrix_flops for r in rows if r.kernel_size is None)
    return "conv" if conv >= gemm and conv > 0 else "matmul"


def judge(
    row: LayerRow,
    targets: Sequence[DeviceSpec],
    *,
    rows: Sequence[LayerRow] | None = None,
    timed_on: Collection[str] = (),
) -> LayerRow:
    """``row`` with one verdict per target.

    For a row standing for others (the totals, a rolled-up module, the tail of a ``top=`` cut), pass
    those judged ``rows``: its roofline time is the sum of theirs (each kernel waits for the one
    before it), so roofline times add up like every other column.

    A measured time is judged (achieved FLOP/s, efficiency, flags) only against the targets named in
    ``timed_on``, the ones that describe the device it was measured on: a time taken on this CPU says
    nothing about a T4's efficiency."""
    if not targets:
        return row
    members = rows if rows is not None else (row,)
    dtype = priced_dtype(row) if rows is None else dominant_dtype(rows)
    verdicts: dict[str, Verdict] = {}
    for device in targets:
        measured = row.time_ms if device.name in timed_on else None
        verdict = roofline.verdict(
            device.name,
            device,
            flops=row.flops,
            matrix_flops=row.matrix_flops,
            bytes_moved=row.bytes_total,
            dtype=dtype,
            time_ms=measured,
            allow_tf32=roofline.allow_tf32_for(device.kind, tf32_op(members)),
        )
        if rows is not None:
            verdict = _as_group(
                verdict, sum(r.roofline[device.name].roofline_time_ms for r in rows), measured
            )
        verdicts[device.name] = verdict
    return replace(row, roofline=MappingProxyType(verdicts))


def _as_group(verdict: Verdict, predicted_ms: float, measured_ms: float | None) -> Verdict:
    """A group's verdict: the summed roofline time, and its efficiency and flags judged from it."""
    if measured_ms is None:
        return replace(verdict, roofline_time_ms=predicted_ms)
    if measured_ms < roofline.DEFAULT_MIN_TIME_MS or measured_ms == 0:
        return replace(
            verdict,
            roofline_time_ms=predicted_ms,
            achieved_flops_per_s=None,
            roofline_efficiency=None,
            flags=("too-short",),
        )
    efficiency = predicted_ms / measured_ms
    flags = ("above-roof",) if efficiency > 1 + roofline.ABOVE_ROOF_TOLERANCE else ()
    return replace(verdict, roofline_time_ms=predicted_ms, roofline_efficiency=efficiency, flags=flags)


def dominant_dtype(rows: Iterable[LayerRow]) -> str:
    """The dtype carrying most of the rows' FLOPs and bytes (the one the totals are priced at, and
    the roofline picture draws); float32 for no rows."""
    weights: dict[str, int] = {}
    for row in rows:
        weights[priced_dtype(row)] = weights.get(priced_dtype(row), 0) + row.flops + row.bytes_total
    return max(weights, key=lambda k: weights[k]) if weights else "float32"
