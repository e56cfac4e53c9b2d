"""How a report's predicted time divides between what binds its rows, per target.

Read by the table's footer, the HTML page's per-target table and the ``max_memory_bound_share``
budget (:mod:`layerprof.analysis.budgets`), so that they never disagree. Each row's roofline time
goes whole to the term that binds it (its verdict's bound): the compute roof, DRAM, a cache level, or
the launch floor.
"""

from __future__ import annotations

from collections.abc import Iterable

from layerprof.core.records import LayerRow, Verdict

__all__ = ["SHARE_KINDS", "memory_bound_share", "share_kind", "time_shares"]

#: What a row's time can be bound by, in the order the footer lists them.
SHARE_KINDS: tuple[str, ...] = ("compute", "DRAM", "cache", "overhead")


def share_kind(verdict: Verdict) -> str:
    """``compute``, ``DRAM`` (``memory(DRAM)`` and the DRAM-only ``memory``), ``cache`` (any other
    ``memory(<level>)``) or ``overhead``."""
    if verdict.bound in ("memory", "memory(DRAM)"):
        return "DRAM"
    if verdict.memory_bound:
        return "cache"
    return "overhead" if verdict.bound == "overhead" else "compute"


def time_shares(rows: Iterable[LayerRow], target: str) -> dict[str, float]:
    """Share (0..1) of the predicted time on ``target`` bound by each of :data:`SHARE_KINDS` (all 0.0
    when the rows predict no time there); rows without a verdict on ``target`` are left out."""
    times = dict.fromkeys(SHARE_KINDS, 0.0)
    for row in rows:
        verdict = row.roofline.get(target)
        if verdict is not None:
            times[share_kind(verdict)] += verdict.roofline_time_ms
    total = sum(times.values())
    return {kind: (ms / total if total > 0 else 0.0) for kind, ms in times.items()}


def memory_bound_share(rows: Iterable[LayerRow], target: str) -> float:
    """Share of the predicted time on ``target`` spent in memory-bound rows (any level; 0.0 when the
    rows predict no time there at all); rows without a verdict on ``target`` are left out."""
    total = memory = 0.0
    for row in rows:
        verdict = row.roofline.get(target)
        if verdict is None:
            continue
        total += verdict.roofline_time_ms
        if verdict.memory_bound:
            memory += verdict.roofline_time_ms
    return memory / total if total > 0 else 0.0
