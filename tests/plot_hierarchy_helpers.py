"""Rows with cache-aware verdicts built by hand, and targets with a memory hierarchy, for the plot tests.

The verdicts are written out here as the cache-aware roofline defines them (shared/DESIGN.md, "Memory
hierarchy"): roofline time = max(compute time, each level's bytes / its bandwidth, kernels x launch
floor), the bound naming the term that sets it. They do not come from layerprof's own cache model.
"""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

from layerprof.core.records import LayerRow, Verdict
from layerprof.hardware.specs import CacheLevel, DeviceSpec
from layerprof.roofline import model as roofline

GIB = 1 << 30
MIB = 1 << 20


def hierarchy_target(
    name: str = "hgpu",
    *,
    dram: float = 300e9,
    l2: float = 2.4e12,
    matrix: float = 20e12,
    vector: float = 10e12,
    launch_s: float = 4e-6,
    llc: float | None = None,
) -> DeviceSpec:
    """A GPU-like target with DRAM, an L2 (and an LLC when ``llc`` is given) and a launch floor."""
    levels = [CacheLevel("L2", 6 * MIB, l2)]
    if llc is not None:
        levels.append(CacheLevel("LLC", 48 * MIB, llc))
    return DeviceSpec(
        name=name,
        full_name=f"Test {name}",
        kind="cpu",  # no TF32 question: float32 matrix work at the float32 peak
        memory_bandwidth_bytes_per_s=dram,
        matrix_peak_flops_per_s={"float32": matrix},
        vector_peak_flops_per_s={"float32": vector},
        cache_levels=tuple(levels),
        memory_bytes=16 * GIB,
        launch_overhead_s=launch_s,
    )


def cache_verdict(
    row: LayerRow,
    target: DeviceSpec,
    *,
    shares: dict[str, float],
    kernels: int = 1,
    time_ms: float | None = None,
) -> Verdict:
    """``row``'s verdict on ``target`` with ``shares`` (level name -> fraction) of its bytes served
    from the cache levels and the rest from DRAM."""
    base = roofline.verdict(
        target.name, target, flops=row.flops, matrix_flops=row.matrix_flops, bytes_moved=0, dtype="float32"
    )
    compute_ms = base.roofline_time_ms
    bandwidth = {level.name: level.bandwidth_bytes_per_s for level in target.cache_levels}
    by_level = {name: round(row.bytes_total * share) for name, share in shares.items()}
    by_level["DRAM"] = row.bytes_total - sum(by_level.values())
    bandwidth["DRAM"] = target.memory_bandwidth_bytes_per_s
    times = {"compute": compute_ms}
    times |= {f"memory({name})": by_level[name] / bandwidth[name] * 1e3 for name in by_level}
    assert target.launch_overhead_s is not None
    times["overhead"] = kernels * target.launch_overhead_s * 1e3
    bound = max(times, key=lambda k: times[k])
    roof_ms = times[bound]
    achieved = efficiency = None
    flags: tuple[str, ...] = ()
    if time_ms is not None:
        achieved = row.flops / (time_ms / 1e3)
        efficiency = roof_ms / time_ms
        flags = ("above-roof",) if efficiency > 1 + roofline.ABOVE_ROOF_TOLERANCE else ()
    return Verdict(
        target=target.name,
        bound=bound,
        unit=base.unit,
        ridge_point=base.ridge_point,
        roofline_time_ms=roof_ms,
        achieved_flops_per_s=achieved,
        roofline_efficiency=efficiency,
        flags=flags,
        bytes_by_level=MappingProxyType(by_level),
        kernels=kernels,
    )


def with_verdicts(row: LayerRow, *verdicts: Verdict) -> LayerRow:
    return replace(row, roofline=MappingProxyType({v.target: v for v in verdicts}))
