"""Budgets: limits a report must stay within before a model ships. Pure: a report and limits in,
results out.

=========================== ============================================================ ==========
budget                      value checked                                                per target
=========================== ============================================================ ==========
``max_gflops``              ``report.total.flops / 1e9``                                 no
``max_params``              ``report.total.params``                                      no
``max_latency_ms``          roofline-predicted ``total.roofline[t].roofline_time_ms``;   yes
                            the measured ``total.time_ms`` when the report is timed      (no)
``max_memory_bound_share``  share (0..1) of the predicted time spent in memory-bound rows yes
``min_roofline_efficiency`` ``total.roofline[t].roofline_efficiency`` (timed, on the     yes
                            targets that describe the device the time was taken on)
``max_peak_memory``         ``report.memory_by_target[t].peak_bytes`` (bytes, or a size  yes
                            such as ``"6GiB"``; ``report.memory`` without a target)
=========================== ============================================================ ==========

:func:`check` returns one :class:`BudgetResult` per budget and target; :func:`assert_within` raises
an ``AssertionError`` naming what failed, by how much, with the table of the rows that cost most.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Literal, get_args

from layerprof.core.units import binary_bytes, parse_bytes, si
from layerprof.errors import InvalidArgumentError
from layerprof.report import shares

if TYPE_CHECKING:
    from layerprof.report.facade import Report

__all__ = [
    "BUDGET_NAMES",
    "BudgetName",
    "BudgetResult",
    "Budgets",
    "assert_within",
    "check",
    "failure_message",
    "failures",
    "memory_bound_share",
]

BudgetName = Literal[
    "max_gflops",
    "max_params",
    "max_latency_ms",
    "max_memory_bound_share",
    "min_roofline_efficiency",
    "max_peak_memory",
]
#: Every budget, in the order results are reported: the one list the CLI's flags and config keys
#: are derived from (read off ``BudgetName``, so that the two cannot drift apart).
BUDGET_NAMES: tuple[BudgetName, ...] = get_args(BudgetName)
Basis = Literal["counted", "predicted", "measured"]

# The table sort that puts the rows a failed budget is about first.
_SORT_FOR: dict[BudgetName, str] = {
    "max_gflops": "flops",
    "max_params": "params",
    "max_latency_ms": "roofline_time",
    "max_memory_bound_share": "roofline_time",
    "min_roofline_efficiency": "time",
    "max_peak_memory": "memory",
}


@dataclass(frozen=True, slots=True)
class Budgets:
    """Limits; None means "not checked". Every limit must be a positive finite number, and the two
    shares (``max_memory_bound_share``, ``min_roofline_efficiency``) at most 1."""

    max_gflops: float | None = None
    max_params: float | None = None
    max_latency_ms: float | None = None
    max_memory_bound_share: float | None = None
    min_roofline_efficiency: float | None = None
    #: Bytes; a size string (``"6GiB"``, ``"512MB"``) is read as one.
    max_peak_memory: float | str | None = None

    def __post_init__(self) -> None:
        for name in BUDGET_NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            if name == "max_peak_memory" and isinstance(value, str):
                value = _size(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidArgumentError(f"budget {name} must be a number, got {value!r}")
            if value <= 0:
                raise InvalidArgumentError(f"budget {name} must be above 0, got {value!r}")
            if name in ("max_memory_bound_share", "min_roofline_efficiency") and value > 1:
                raise InvalidArgumentError(f"budget {name} is a share between 0 and 1, got {value!r}")
            object.__setattr__(self, name, float(value))

    @classmethod
    def from_mapping(cls, limits: Mapping[str, float | None]) -> Budgets:
        unknown = sorted(set(limits) - set(BUDGET_NAMES))
        if unknown:
            raise InvalidArgumentError(
                f"unknown budget(s) {', '.join(unknown)}; known: {', '.join(BUDGET_NAMES)}"
            )
        return cls(**{name: limits[name] for name in BUDGET_NAMES if name in limits})  # type: ignore[arg-type]

    def overridden_by(self, other: Budgets) -> Budgets:
        """These limits with every limit ``other`` sets replacing ours (the command line over a file)."""
        changes = {
            f.name: getattr(other, f.name) for f in fields(other) if getattr(other, f.name) is not None
        }
        return replace(self, **changes)

    def limits(self) -> tuple[tuple[BudgetName, float], ...]:
        """The budgets that are set, in :data:`BUDGET_NAMES` order."""
        return tuple((name, getattr(self, name)) for name in BUDGET_NAMES if getattr(self, name) is not None)

    @property
    def empty(self) -> bool:
        return not self.limits()

    @property
    def needs_timing(self) -> bool:
        return self.min_roofline_efficiency is not None


@dataclass(frozen=True, slots=True)
class BudgetResult:
    """One budget checked on one target (``target`` is None for a budget no target changes)."""

    budget: BudgetName
    target: str | None
    value: float
    limit: float
    basis: Basis

    @property
    def is_minimum(self) -> bool:
        return self.budget.startswith("min_")

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.is_minimum else self.value <= self.limit

    @property
    def excess(self) -> float:
        """How far past the limit, as a fraction of it (0.25: 25% over, or under for a minimum);
        zero or negative when the budget holds."""
        gap = self.limit - self.value if self.is_minimum else self.value - self.limit
        return gap / self.limit

    def describe(self) -> str:
        """One line: ``FAIL max_latency_ms @ t4: 12.3 ms > limit 10.0 ms, over by 23.0% (predicted)``."""
        where = f" @ {self.target}" if self.target is not None else ""
        value, limit = _format(self.budget, self.value), _format(self.budget, self.limit)
        if self.passed:
            relation = ">=" if self.is_minimum else "<="
            return f"ok   {self.budget}{where}: {value} {relation} limit {limit} ({self.basis})"
        relation, word = ("<", "under") if self.is_minimum else (">", "over")
        return (
            f"FAIL {self.budget}{where}: {value} {relation} limit {limit}, "
            f"{word} by {self.excess:.1%} ({self.basis})"
        )


def _size(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as error:
        raise InvalidArgumentError(f"budget max_peak_memory: {error}") from None


def _format(budget: BudgetName, value: float) -> str:
    if budget == "max_peak_memory":
        return binary_bytes(value)
    if budget == "max_gflops":
        return f"{value:.4g} GFLOPs"
    if budget == "max_params":
        return f"{si(value)} params"
    if budget == "max_latency_ms":
        return f"{value:.4g} ms"  # not rounded to a fixed point: 0.0004 ms stays visible
    return f"{value:.1%}"


def _target_names(report: Report, target: str | Sequence[str] | None) -> tuple[str, ...]:
    known = tuple(t.name for t in report.targets)
    if target is None:
        return known
    wanted = (target,) if isinstance(target, str) else tuple(target)
    missing = [name for name in wanted if name not in known]
    if missing:
        raise InvalidArgumentError(
            f"target(s) {', '.join(missing)} not in the report; "
            f"it was judged on {', '.join(known) or 'no target'}"
        )
    return wanted


def memory_bound_share(report: Report, target: str) -> float:
    """Share of the predicted time on ``target`` spent in memory-bound rows (0.0 for a report that
    predicts no time at all): :func:`layerprof.report.shares.memory_bound_share` of its rows, the
    figure the HTML page shows."""
    return shares.memory_bound_share(report.layers, target)


def check(
    report: Report,
    budgets: Budgets | None = None,
    *,
    target: str | Sequence[str] | None = None,
    max_gflops: float | None = None,
    max_params: float | None = None,
    max_latency_ms: float | None = None,
    max_memory_bound_share: float | None = None,
    min_roofline_efficiency: float | None = None,
    max_peak_memory: float | str | None = None,
) -> tuple[BudgetResult, ...]:
    """Check ``report`` against ``budgets`` (keyword limits override them), on every target of the
    report or on ``target`` only. A per-target budget on a report without targets, or
    ``min_roofline_efficiency`` on an untimed report, raises :class:`InvalidArgumentError`."""
    from layerprof.report.facade import Report  # at call time: importing budgets stays cheap

    if not isinstance(report, Report):
        raise InvalidArgumentError(f"report must be a layerprof Report, got {type(report).__name__}")
    limits = (budgets or Budgets()).overridden_by(
        Budgets(
            max_gflops,
            max_params,
            max_latency_ms,
            max_memory_bound_share,
            min_roofline_efficiency,
            max_peak_memory,
        )
    )
    names = _target_names(report, target)
    total = report.total
    measured = total.time_ms
    results: list[BudgetResult] = []
    for budget, limit in limits.limits():
        if budget == "max_gflops":
            results.append(BudgetResult(budget, None, total.flops / 1e9, limit, "counted"))
        elif budget == "max_params":
            results.append(BudgetResult(budget, None, float(total.params), limit, "counted"))
        elif budget == "max_latency_ms" and measured is not None:
            results.append(BudgetResult(budget, None, measured, limit, "measured"))
        elif budget == "max_peak_memory":
            results += _peak_memory(report, names, limit)
        else:
            if not names:
                raise InvalidArgumentError(
                    f"budget {budget} is judged per target, and the report has no target"
                )
            judged = names
            if budget == "min_roofline_efficiency":
                judged = _efficiency_targets(report, names, explicit=target is not None)
            for name in judged:
                results.append(_per_target(report, budget, name, limit))
    return tuple(results)


def _efficiency_targets(report: Report, names: Sequence[str], *, explicit: bool) -> tuple[str, ...]:
    """The targets a measured time was judged against (its efficiency is set): the measured spec of
    this machine, or the table entry of the GPU it ran on. A time taken here says nothing of a T4."""
    if report.total.time_ms is None:
        raise InvalidArgumentError(
            "budget min_roofline_efficiency needs a timed report (layerprof.profile, or audit --time)"
        )
    judged = tuple(n for n in names if report.total.roofline[n].roofline_efficiency is not None)
    unjudged = [n for n in names if n not in judged]
    if not judged or (explicit and unjudged):
        raise InvalidArgumentError(
            "budget min_roofline_efficiency compares the measured time with the roofline of the device "
            f"it was measured on, and the report's target(s) {', '.join(unjudged)} are not; "
            "add target 'auto' (this machine, measured) or the device table's entry for this GPU"
        )
    return judged


def _peak_memory(report: Report, names: Sequence[str], limit: float) -> list[BudgetResult]:
    """The peak on each target (or without one), as counted by analyze."""
    if report.memory is None:
        raise InvalidArgumentError(
            "budget max_peak_memory needs a report counted with memory (layerprof.analyze, or audit)"
        )
    if not names:
        return [BudgetResult("max_peak_memory", None, float(report.memory.peak_bytes), limit, "counted")]
    return [
        BudgetResult(
            "max_peak_memory", name, float(report.memory_by_target[name].peak_bytes), limit, "counted"
        )
        for name in names
    ]


def _per_target(report: Report, budget: BudgetName, name: str, limit: float) -> BudgetResult:
    verdict = report.total.roofline[name]
    if budget == "max_latency_ms":
        return BudgetResult(budget, name, verdict.roofline_time_ms, limit, "predicted")
    if budget == "max_memory_bound_share":
        return BudgetResult(budget, name, memory_bound_share(report, name), limit, "predicted")
    efficiency = verdict.roofline_efficiency
    assert efficiency is not None  # _efficiency_targets keeps only the targets that have one
    return BudgetResult(budget, name, efficiency, limit, "measured")


def failures(results: Sequence[BudgetResult]) -> tuple[BudgetResult, ...]:
    return tuple(r for r in results if not r.passed)


def failure_message(report: Report, results: Sequence[BudgetResult], *, top: int = 10) -> str:
    """What failed and by how much, then the ``top`` costliest rows for each kind of failure."""
    failed = failures(results)
    lines = [f"{report.model_name or 'model'}: {len(failed)} budget(s) exceeded"]
    lines += [f"  {r.describe()}" for r in failed]
    sorts: list[str] = []
    for result in failed:
        sort = (
            "time"
            if result.budget == "max_latency_ms" and result.basis == "measured"
            else _SORT_FOR[result.budget]
        )
        if sort not in sorts:
            sorts.append(sort)
    for sort in sorts:
        lines += ["", f"rows by {sort.replace('_', ' ')}:", report.table(sort=sort, top=top)]
    return "\n".join(lines)


def assert_within(
    report: Report,
    *,
    target: str | Sequence[str] | None = None,
    max_gflops: float | None = None,
    max_params: float | None = None,
    max_latency_ms: float | None = None,
    max_memory_bound_share: float | None = None,
    min_roofline_efficiency: float | None = None,
    max_peak_memory: float | str | None = None,
    top: int = 10,
) -> tuple[BudgetResult, ...]:
    """Check the budgets; return the results when all hold, else raise ``AssertionError`` with one
    line per failed budget and the table of the rows that cost most."""
    results = check(
        report,
        target=target,
        max_gflops=max_gflops,
        max_params=max_params,
        max_latency_ms=max_latency_ms,
        max_memory_bound_share=max_memory_bound_share,
        min_roofline_efficiency=min_roofline_efficiency,
        max_peak_memory=max_peak_memory,
    )
    if not results:
        raise InvalidArgumentError(
            "assert_within needs at least one budget (max_gflops=..., max_latency_ms=...)"
        )
    if failures(results):
        raise AssertionError(failure_message(report, results, top=top))
    return results
