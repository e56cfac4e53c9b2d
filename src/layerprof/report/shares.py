"""How a report's predicted time divides between memory-bound and compute-bound rows, per target.

One function, read by the HTML page's per-target table and by the ``max_memory_bound_share``
budget (:mod:`layerprof.analysis.budgets`), so that the page and the budget never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable

from layerprof.core.records import LayerRow

__all__ = ["memory_bound_share"]


def memory_bound_share(rows: Iterable[LayerRow], target: str) -> float:
    """Share of the predicted time on ``target`` spent in memory-bound rows (0.0 when the rows predict
    no time there at all); rows without a verdict on ``target`` are left out."""
    total = memory = 0.0
    for row in rows:
        verdict = row.roofline.get(target)
        if verdict is None:
            continue
        total += verdict.roofline_time_ms
        if verdict.bound == "memory":
            memory += verdict.roofline_time_ms
    return memory / total if total > 0 else 0.0
