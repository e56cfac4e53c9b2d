"""The roofline model as pure functions: intensity, ridge point, bound, roofline time, verdict.

Conventions (docs/design.md): a FLOP is one multiply or one add; bytes are the compulsory DRAM traffic of
the row (bytes read + bytes written); operational intensity = FLOPs / bytes. A row's work splits into
matrix FLOPs (run on the matrix engines) and vector FLOPs (run on the FMA units). Its roofline time is::

    max(matrix_flops / peak_matrix + vector_flops / peak_vector, bytes / bandwidth)

i.e. the two units are assumed not to overlap with each other, but compute overlaps memory traffic.

The cache-aware verdict (``bytes_by_level`` given: where the cache model,
:mod:`layerprof.roofline.reuse`, says the bytes come from) has one memory term per level and the
launch floor::

    max(matrix_flops / peak_matrix + vector_flops / peak_vector,
        bytes of each level / that level's bandwidth, kernels * launch_overhead_s)

and its bound names the term that sets it: ``compute``, ``memory(<level>)`` or ``overhead``.
Apart from :func:`allow_tf32_for`, which reads torch's TF32 switches, nothing here touches torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

import torch

from layerprof.core.records import Bound, Unit, Verdict
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec, DtypeLike
from layerprof.hardware.table import get_device
from layerprof.roofline.reuse import DRAM

__all__ = [
    "ABOVE_ROOF_TOLERANCE",
    "DEFAULT_MIN_TIME_MS",
    "allow_tf32_for",
    "level_bandwidth",
    "operational_intensity",
    "ridge_point",
    "roofline_time_s",
    "verdict",
]

#: Rows measured faster than this are timer noise and launch overhead, not work: they are flagged
#: ``"too-short"`` and get no achieved rate or efficiency.
DEFAULT_MIN_TIME_MS = 0.005
#: A row measured this much faster than its roofline time is flagged ``"above-roof"`` (the counted
#: bytes were served from cache, the FLOP formula over-counts, or the device spec is too low).
ABOVE_ROOF_TOLERANCE = 0.05
# Relative slack when comparing intensity with the ridge, so that a row exactly at the ridge stays
# "compute" despite rounding in the ridge of a mixed row.
_RIDGE_RTOL = 1e-12


def _device(device: DeviceSpec | str) -> DeviceSpec:
    return get_device(device)


def _check_count(name: str, value: float) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidArgumentError(f"{name} must be a finite number >= 0, got {value!r}")


def ridge_point(
    device: DeviceSpec | str, dtype: DtypeLike, unit: str = "matrix", *, allow_tf32: bool = False
) -> float:
    """FLOPs per byte at which ``unit``'s peak on ``device`` meets its memory bandwidth."""
    return _device(device).ridge_point(dtype, unit, allow_tf32=allow_tf32)


def operational_intensity(flops: float, bytes_moved: float) -> float:
    """FLOPs per byte moved (bytes read + bytes written); 0.0 when nothing is moved."""
    _check_count("flops", flops)
    _check_count("bytes_moved", bytes_moved)
    return flops / bytes_moved if bytes_moved else 0.0


def _compute_time_s(
    matrix_flops: float, vector_flops: float, device: DeviceSpec, dtype: DtypeLike, allow_tf32: bool
) -> float:
    # Only ask for the peaks the row uses, so a dtype missing on an unused unit does not warn.
    seconds = 0.0
    if matrix_flops:
        seconds += matrix_flops / device.peak_flops_per_s(dtype, "matrix", allow_tf32=allow_tf32)
    if vector_flops:
        seconds += vector_flops / device.peak_flops_per_s(dtype, "vector")
    return seconds


def roofline_time_s(
    matrix_flops: float,
    vector_flops: float,
    bytes_moved: float,
    device: DeviceSpec | str,
    dtype: DtypeLike,
    *,
    allow_tf32: bool = False,
) -> float:
    """Lower bound on a row's time on ``device``:
    ``max(matrix_flops / peak_matrix + vector_flops / peak_vector, bytes_moved / bandwidth)``."""
    _check_count("matrix_flops", matrix_flops)
    _check_count("vector_flops", vector_flops)
    _check_count("bytes_moved", bytes_moved)
    spec = _device(device)
    compute_s = _compute_time_s(matrix_flops, vector_flops, spec, dtype, allow_tf32)
    return max(compute_s, bytes_moved / spec.memory_bandwidth_bytes_per_s)


def verdict(
    target_name: str,
    device: DeviceSpec | str,
    *,
    flops: float,
    matrix_flops: float,
    bytes_moved: float,
    dtype: DtypeLike,
    time_ms: float | None = None,
    allow_tf32: bool = False,
    min_time_ms: float = DEFAULT_MIN_TIME_MS,
    bytes_by_level: Mapping[str, int] | None = None,
    kernels: int = 0,
) -> Verdict:
    """Where one row (``flops`` of which ``matrix_flops`` on matrix engines) stands on ``device``.

    * ``unit``: ``"matrix"`` when matrix FLOPs are at least half of the row's FLOPs, else ``"vector"``.
    * ``ridge_point``: the ridge of the row's own unit mix, ``(flops / compute_time) / bandwidth``. For a
      pure row that is the unit's plain ridge; for a row with no FLOPs, the vector ridge.
    * ``bound``: ``"compute"`` when the row's intensity is at or above that ridge, else ``"memory"``
      (equivalently: its compute time is at least its memory time).
    * With ``time_ms``: ``achieved_flops_per_s = flops / time`` and
      ``roofline_efficiency = roofline_time / time``. Flags: ``"too-short"`` when ``time_ms`` is below
      ``min_time_ms`` (no achieved rate or efficiency is judged then), ``"above-roof"`` when the row
      ran more than 5% faster than its roofline time allows.

    With ``bytes_by_level`` (level name -> bytes, ``"DRAM"`` for main memory; summing to
    ``bytes_moved``) and ``kernels``, the verdict is the cache-aware one: the roofline time is the
    largest of the compute time, each level's bytes over its bandwidth and ``kernels`` times the
    device's ``launch_overhead_s`` (0 when it has none), and ``bound`` names it (``"compute"``,
    ``"memory(DRAM)"``, ``"memory(L2)"``, ..., ``"overhead"``). Without it, the DRAM-only verdict:
    ``bound`` is ``"compute"`` or ``"memory"``, and no launch floor.
    """
    _check_count("flops", flops)
    _check_count("matrix_flops", matrix_flops)
    _check_count("bytes_moved", bytes_moved)
    _check_count("min_time_ms", min_time_ms)
    if matrix_flops > flops:
        raise InvalidArgumentError(f"matrix_flops ({matrix_flops!r}) exceeds flops ({flops!r})")
    if time_ms is not None:
        _check_count("time_ms", time_ms)
    spec = _device(device)
    vector_flops = flops - matrix_flops
    unit: Unit = "matrix" if matrix_flops > 0 and matrix_flops >= vector_flops else "vector"

    bandwidth = spec.memory_bandwidth_bytes_per_s
    compute_s = _compute_time_s(matrix_flops, vector_flops, spec, dtype, allow_tf32)
    memory_s = bytes_moved / bandwidth
    if flops == 0:
        ridge = spec.ridge_point(dtype, "vector")
    elif vector_flops == 0:
        ridge = spec.ridge_point(dtype, "matrix", allow_tf32=allow_tf32)
    elif matrix_flops == 0:
        ridge = spec.ridge_point(dtype, "vector")
    else:
        ridge = (flops / compute_s) / bandwidth

    if bytes_moved == 0:
        bound: Bound = "compute" if flops > 0 else "memory"
    else:
        intensity = flops / bytes_moved
        bound = "compute" if intensity >= ridge * (1 - _RIDGE_RTOL) else "memory"

    roofline_s = max(compute_s, memory_s)
    levels: Mapping[str, int] = MappingProxyType({})
    if bytes_by_level is not None:
        levels = _checked_levels(spec, bytes_by_level, bytes_moved)
        bound, roofline_s = _cache_aware(spec, compute_s, levels, _kernels(kernels))
    roofline_ms = roofline_s * 1e3
    achieved: float | None = None
    efficiency: float | None = None
    flags: list[str] = []
    if time_ms is not None:
        if time_ms < min_time_ms or time_ms == 0:
            flags.append("too-short")
        else:
            achieved = flops / (time_ms / 1e3)
            efficiency = roofline_ms / time_ms
            # efficiency > 1 means the row beat its roof; for rows with FLOPs this is exactly
            # achieved > (flops / roofline_time) * (1 + tolerance).
            if efficiency > 1 + ABOVE_ROOF_TOLERANCE:
                flags.append("above-roof")
    return Verdict(
        target=target_name,
        bound=bound,
        unit=unit,
        ridge_point=ridge,
        roofline_time_ms=roofline_ms,
        achieved_flops_per_s=achieved,
        roofline_efficiency=efficiency,
        flags=tuple(flags),
        bytes_by_level=levels,
        kernels=kernels if bytes_by_level is not None else 0,
    )


def level_bandwidth(device: DeviceSpec, level: str) -> float:
    """Bytes/s of one level of ``device``'s hierarchy: a cache level by name, or ``"DRAM"``."""
    if level == DRAM:
        return device.memory_bandwidth_bytes_per_s
    for cache in device.cache_levels:
        if cache.name == level:
            return cache.bandwidth_bytes_per_s
    known = ", ".join([*(c.name for c in device.cache_levels), DRAM])
    raise InvalidArgumentError(f"{device.name} has no memory level {level!r}; its levels: {known}")


def _kernels(kernels: int) -> int:
    if isinstance(kernels, bool) or not isinstance(kernels, int) or kernels < 0:
        raise InvalidArgumentError(f"kernels must be an int >= 0, got {kernels!r}")
    return kernels


def _checked_levels(device: DeviceSpec, by_level: Mapping[str, int], bytes_moved: float) -> Mapping[str, int]:
    bandwidths = _bandwidths(device)
    total = 0
    for level, nbytes in by_level.items():
        if level not in bandwidths:
            level_bandwidth(device, level)  # raises, naming the device's levels
        if type(nbytes) is not int or nbytes < 0:  # not a bool either
            raise InvalidArgumentError(f"bytes_by_level[{level!r}] must be an int >= 0, got {nbytes!r}")
        total += nbytes
    if total != bytes_moved:
        raise InvalidArgumentError(f"bytes_by_level sums to {total}, not to bytes_moved = {bytes_moved!r}")
    return by_level if isinstance(by_level, MappingProxyType) else MappingProxyType(dict(by_level))


def _bandwidths(device: DeviceSpec) -> dict[str, float]:
    """Level name -> bytes/s, DRAM first, then the caches outermost first (the order ties go in)."""
    bandwidths = {DRAM: device.memory_bandwidth_bytes_per_s}
    for cache in reversed(device.cache_levels):
        bandwidths[cache.name] = cache.bandwidth_bytes_per_s
    return bandwidths


def _cache_aware(
    device: DeviceSpec, compute_s: float, by_level: Mapping[str, int], kernels: int
) -> tuple[Bound, float]:
    """(bound, roofline seconds): the largest term; on a tie compute, then the slower memory level
    (DRAM first, then the caches outermost first), then the launch floor."""
    bound, longest = "compute", compute_s * (1 + _RIDGE_RTOL)
    memory_level, memory_s = DRAM, 0.0
    for level, bandwidth in _bandwidths(device).items():
        seconds = by_level.get(level, 0) / bandwidth
        if seconds > memory_s:
            memory_level, memory_s = level, seconds
    if memory_s > longest or longest == 0:
        bound, longest = f"memory({memory_level})", memory_s
    overhead_s = kernels * (device.launch_overhead_s or 0.0)
    if overhead_s > longest:
        bound = "overhead"
    return bound, max(compute_s, memory_s, overhead_s)


def allow_tf32_for(device_kind: str, op: Literal["any", "conv", "matmul"] = "any") -> bool:
    """Whether float32 matrix work on a ``device_kind`` target should use the TF32 peak.

    Follows torch's own switches: ``torch.backends.cudnn.allow_tf32`` governs convolutions (default
    True), ``torch.backends.cuda.matmul.allow_tf32`` governs GEMMs (default False). With ``op="any"``
    the answer is True when either allows TF32, because a CNN's matrix work is mostly convolutions.
    A ``"cpu"`` target never uses TF32. This is the only place in layerprof that reads these flags.
    """
    if device_kind not in ("gpu", "cpu"):
        raise InvalidArgumentError(f"device_kind must be 'gpu' or 'cpu', got {device_kind!r}")
    if op not in ("any", "conv", "matmul"):
        raise InvalidArgumentError(f"op must be 'any', 'conv' or 'matmul', got {op!r}")
    if device_kind == "cpu":
        return False
    conv = bool(torch.backends.cudnn.allow_tf32)
    matmul = bool(torch.backends.cuda.matmul.allow_tf32)
    if op == "conv":
        return conv
    if op == "matmul":
        return matmul
    return conv or matmul
