"""Rank 0's report with every rank's times, and a report with the all-reduce row: rebuilt, never mutated.

Each rank sends a :class:`RankSample` (plain numbers, with the step it sampled and its kind).
:func:`merge_ranks` merges samples of one step and one kind only (it refuses any other), keeps rank
0's counts (compared with every other rank's; a disagreement is logged), takes each row's time as the
median over the ranks and keeps every rank's in ``report.ranks``. :func:`with_allreduce` adds the
``(ddp)/allreduce`` row and grows the step by the part of the all-reduce the backward did not hide.
Both work verdicts, totals and coverage out again, as ``build_report`` does.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Literal

from layerprof.core import rownames
from layerprof.core.records import LayerRow, Phase
from layerprof.core.totals import total_row
from layerprof.errors import InvalidArgumentError
from layerprof.report.facade import AllreduceTime, RankTimes, Report
from layerprof.roofline.verdicts import judge

__all__ = [
    "STRAGGLER_THRESHOLD",
    "RankRow",
    "RankSample",
    "SampleKind",
    "check_one_sample",
    "merge_ranks",
    "with_allreduce",
]

logger = logging.getLogger(__name__)

#: A row is a straggler when its slowest rank takes more than this times the median over the ranks.
STRAGGLER_THRESHOLD = 1.2

#: What a sample timed: a training step (forward and backward rows) or a forward alone.
SampleKind = Literal["train", "forward-only"]


@dataclass(frozen=True, slots=True)
class RankRow:
    """One row of a rank's sample: its key, its times, and the counts rank 0 checks against its own."""

    phase: Phase
    name: str
    time_ms: float | None
    time_iqr_ms: float | None
    flops: int
    bytes_total: int


@dataclass(frozen=True, slots=True)
class RankSample:
    """One rank's sample as plain numbers: what travels to rank 0 (a Report holds a weak reference
    to the model and read-only mappings, which do not pickle). ``step`` is the index of the sampled
    forward on that rank (0 for ``profile``)."""

    rank: int
    step: int
    rows: tuple[RankRow, ...]
    total_ms: float | None
    allreduce: AllreduceTime | None
    kind: SampleKind = "forward-only"

    @staticmethod
    def of(report: Report, rank: int, step: int) -> RankSample:
        rows = tuple(
            RankRow(r.phase, r.name, r.time_ms, r.time_iqr_ms, r.flops, r.bytes_total) for r in report.layers
        )
        trained = any(r.phase == "backward" and r.name != rownames.ALLREDUCE for r in report.layers)
        kind: SampleKind = "train" if trained else "forward-only"
        return RankSample(rank, step, rows, report.total.time_ms, report.allreduce, kind)

    def describe(self) -> str:
        """``rank 1: step 4 (train)``, for messages."""
        return f"rank {self.rank}: step {self.step} ({self.kind})"


def check_one_sample(samples: Sequence[RankSample]) -> None:
    """Raise :class:`~layerprof.errors.InvalidArgumentError` unless every sample is of one step and kind."""
    if len({(s.step, s.kind) for s in samples}) > 1:
        raise InvalidArgumentError(
            "layerprof: samples of different steps or kinds are never merged: "
            + ", ".join(s.describe() for s in samples)
        )


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _check_counts(samples: Sequence[RankSample]) -> None:
    """Log the first row whose counts differ between rank 0 and another rank."""
    reference = {(r.phase, r.name): (r.flops, r.bytes_total) for r in samples[0].rows}
    for sample in samples[1:]:
        for row in sample.rows:
            counts = reference.get((row.phase, row.name))
            if counts != (row.flops, row.bytes_total):
                logger.warning(
                    "layerprof: the counts of %s row %s differ on rank %d (%s FLOPs, %s bytes) from "
                    "rank 0's (%s); the gathered report keeps rank 0's",
                    row.phase, row.name, sample.rank, row.flops, row.bytes_total, counts,
                )  # fmt: skip
                break


def merge_ranks(
    report: Report, samples: Sequence[RankSample], *, straggler_threshold: float = STRAGGLER_THRESHOLD
) -> Report:
    """Rank 0's ``report`` with every rank's times: row times become medians over the ranks and
    ``report.ranks`` keeps each rank's (``samples`` in rank order, rank 0's first). Samples of
    different steps or kinds are refused (:class:`~layerprof.errors.InvalidArgumentError`)."""
    check_one_sample(samples)
    _check_counts(samples)
    by_rank = [{(r.phase, r.name): r for r in sample.rows} for sample in samples]
    rows_ms: dict[tuple[Phase, str], tuple[float | None, ...]] = {}
    rows = []
    for row in report.layers:
        key = (row.phase, row.name)
        ranked = [rank_rows.get(key) for rank_rows in by_rank]
        times = tuple(None if r is None else r.time_ms for r in ranked)
        rows_ms[key] = times
        iqr = _median([None if r is None else r.time_iqr_ms for r in ranked])
        rows.append(replace(row, time_ms=_median(times), time_iqr_ms=iqr))
    totals = tuple(sample.total_ms for sample in samples)
    ranks = RankTimes(
        world_size=len(samples),
        rows_ms=MappingProxyType(rows_ms),
        total_ms=totals,
        straggler_threshold=straggler_threshold,
    )
    allreduce = _median_allreduce([s.allreduce for s in samples])
    return _rebuilt(report, rows, _median(totals), ranks=ranks, allreduce=allreduce)


def _median_allreduce(values: Sequence[AllreduceTime | None]) -> AllreduceTime | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return AllreduceTime(
        buckets=known[0].buckets,
        payload_bytes=known[0].payload_bytes,
        time_ms=statistics.median(v.time_ms for v in known),
        hidden_ms=statistics.median(v.hidden_ms for v in known),
    )


def _rebuilt(report: Report, rows: Sequence[LayerRow], total_ms: float | None, **fields: Any) -> Report:
    """``report`` with new rows: verdicts, totals and coverage worked out again (as build_report)."""
    judged = [judge(row, report.targets, timed_on=report.timed_on) for row in rows]
    total = total_row(judged, kind=report.total.kind, time_ms=total_ms)
    total = judge(total, report.targets, rows=judged, timed_on=report.timed_on)
    timed = [r.time_ms for r in judged if r.time_ms is not None]
    coverage = sum(timed) / total_ms if timed and total_ms else None
    return replace(report, layers=tuple(judged), total=total, coverage=coverage, **fields)


def with_allreduce(report: Report, row: LayerRow, times: AllreduceTime) -> Report:
    """``report`` with the all-reduce row; the step ends when the last all-reduce does, so the
    end-to-end time grows by the part the backward did not hide."""
    total_ms = report.total.time_ms
    if total_ms is not None:
        total_ms += times.time_ms - times.hidden_ms
    kinds = MappingProxyType({**report.module_kinds, rownames.ALLREDUCE_CONTAINER: row.kind})
    return _rebuilt(report, [*report.layers, row], total_ms, allreduce=times, module_kinds=kinds)
