"""Roofline verdicts on rows: one per target, for a layer, a rolled-up group or the totals.

A row that carries its ``traffic`` (the cache model's reaches, :mod:`layerprof.roofline.reuse`) gets
the cache-aware verdict: its bytes split over the target's levels, its kernels' launch floor. A row
without (``cache_model=False``, a row made by hand) gets the DRAM-only verdict of the first design.
A group (the totals, a rolled-up module) sums its rows' roofline times, bytes per level and kernels,
and is bound by what binds most of its time."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Literal

from layerprof.core.records import LayerRow, Traffic, Verdict
from layerprof.hardware.specs import DeviceSpec
from layerprof.roofline import model as roofline
from layerprof.roofline.reuse import DRAM, split_by_level

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
        by_level, kernels = _levels(row.traffic, row.bytes_total, device) if rows is None else (None, 0)
        verdict = roofline.verdict(
            device.name,
            device,
            flops=row.flops,
            matrix_flops=row.matrix_flops,
            bytes_moved=row.bytes_total,
            dtype=dtype,
            time_ms=measured,
            allow_tf32=roofline.allow_tf32_for(device.kind, tf32_op(members)),
            bytes_by_level=by_level,
            kernels=kernels,
        )
        if rows is not None:
            member_verdicts = [r.roofline[device.name] for r in rows]
            verdict = _as_group(verdict, sum(v.roofline_time_ms for v in member_verdicts), measured)
            if any(v.bytes_by_level for v in member_verdicts):
                verdict = _cache_aware_group(verdict, rows, member_verdicts)
        verdicts[device.name] = verdict
    return replace(row, roofline=MappingProxyType(verdicts))


def _levels(traffic: Traffic | None, row_bytes: int, device: DeviceSpec) -> tuple[dict[str, int] | None, int]:
    """A row's bytes per level of ``device`` and its kernels; (None, 0) without traffic of its own."""
    if traffic is None:
        return None, 0
    levels = [(level.name, level.capacity_bytes) for level in device.cache_levels]
    by_level = split_by_level(traffic.reach_bytes, levels)
    if sum(by_level.values()) != row_bytes:  # replace()d with other bytes: the traffic is not its own
        return None, 0
    return by_level, traffic.kernels


def _cache_aware_group(verdict: Verdict, rows: Sequence[LayerRow], members: Sequence[Verdict]) -> Verdict:
    """A group's bytes per level and kernels, summed; its bound the one binding most of its time (a
    member without levels, judged DRAM-only, counts all its bytes and time as DRAM's)."""
    by_level: dict[str, int] = {}
    time_by_bound: dict[str, float] = {}
    for row, member in zip(rows, members, strict=True):
        levels = member.bytes_by_level or {DRAM: row.bytes_total}
        for level, nbytes in levels.items():
            by_level[level] = by_level.get(level, 0) + nbytes
        bound = member.bound if member.bound != "memory" else f"memory({DRAM})"
        time_by_bound[bound] = time_by_bound.get(bound, 0.0) + member.roofline_time_ms
    if DRAM in by_level:  # DRAM last, as every verdict lists it
        by_level[DRAM] = by_level.pop(DRAM)
    bound = max(time_by_bound, key=lambda b: time_by_bound[b]) if time_by_bound else verdict.bound
    if all(t == 0 for t in time_by_bound.values()):
        bound = "compute" if verdict.bound == "compute" else f"memory({DRAM})"
    return replace(
        verdict,
        bound=bound,
        bytes_by_level=MappingProxyType(by_level),
        kernels=sum(m.kernels for m in members),
    )


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
