"""Compare two reports saved as JSON (``report.to_json(path)``): what changed, row by row. Pure.

Rows are matched by ``(phase, name)``. A matched row is *changed* when its kind, FLOPs, bytes
moved, parameter count or its bound on a target both reports share differ; a measured time that
moved is shown but does not by itself make a row changed (two timed runs never agree to the
nanosecond). Rows only in the new report are *added*, rows only in the old one *removed*.

:meth:`Comparison.regressions` lists which totals (FLOPs, bytes, and the measured time when both
reports have one) grew by more than a given fraction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tabulate import tabulate

from layerprof.core.units import binary_bytes, milliseconds, si
from layerprof.errors import InvalidArgumentError
from layerprof.report.export import SCHEMA_VERSION

__all__ = [
    "BoundChange",
    "Change",
    "Comparison",
    "Regression",
    "RowDiff",
    "compare",
    "load_report",
    "parse_fraction",
    "render",
]

Status = Literal["same", "changed", "added", "removed"]
Quantity = Literal["flops", "bytes", "time_ms"]


@dataclass(frozen=True, slots=True)
class Change:
    """One quantity before and after (None where a report lacks it)."""

    old: float | None
    new: float | None

    @property
    def delta(self) -> float | None:
        return None if self.old is None or self.new is None else self.new - self.old

    @property
    def growth(self) -> float | None:
        """``new / old - 1`` (0.05: 5% more); None when either is missing or old is zero."""
        if self.old is None or self.new is None or self.old == 0:
            return None
        return self.new / self.old - 1.0

    @property
    def differs(self) -> bool:
        return self.old != self.new


@dataclass(frozen=True, slots=True)
class BoundChange:
    target: str
    old: str | None
    new: str | None


@dataclass(frozen=True, slots=True)
class RowDiff:
    """One row of the old report against the row of the same (phase, name) in the new one."""

    phase: str
    name: str
    status: Status
    kind_old: str | None
    kind_new: str | None
    flops: Change
    bytes: Change
    params: Change
    time_ms: Change
    #: Per target both reports share: predicted roofline time.
    roofline_time_ms: tuple[tuple[str, Change], ...] = ()
    #: Only the targets where the bound differs.
    bound_changes: tuple[BoundChange, ...] = ()


@dataclass(frozen=True, slots=True)
class Regression:
    quantity: Quantity
    old: float
    new: float
    growth: float
    limit: float

    def describe(self) -> str:
        return (
            f"REGRESSION total {_QUANTITY_LABEL[self.quantity]}: {_show(self.quantity, self.old)} -> "
            f"{_show(self.quantity, self.new)}, +{self.growth:.1%} > allowed {self.limit:.1%}"
        )


@dataclass(frozen=True, slots=True)
class Comparison:
    old_model: str
    new_model: str
    rows: tuple[RowDiff, ...]
    total: RowDiff
    targets: tuple[str, ...]

    @property
    def changed(self) -> tuple[RowDiff, ...]:
        return tuple(r for r in self.rows if r.status == "changed")

    @property
    def added(self) -> tuple[RowDiff, ...]:
        return tuple(r for r in self.rows if r.status == "added")

    @property
    def removed(self) -> tuple[RowDiff, ...]:
        return tuple(r for r in self.rows if r.status == "removed")

    @property
    def unchanged(self) -> tuple[RowDiff, ...]:
        return tuple(r for r in self.rows if r.status == "same")

    @property
    def identical(self) -> bool:
        return not (self.changed or self.added or self.removed or self.total.status == "changed")

    def regressions(self, max_growth: float) -> tuple[Regression, ...]:
        """Totals that grew by more than ``max_growth`` (0.05 = 5%): FLOPs, bytes, and the measured
        time when both reports have one."""
        if not max_growth >= 0:
            raise InvalidArgumentError(f"max_growth must be a fraction >= 0, got {max_growth!r}")
        found = []
        total = self.total
        for quantity, change in (("flops", total.flops), ("bytes", total.bytes), ("time_ms", total.time_ms)):
            if change.old is None or change.new is None:
                continue
            growth = change.growth
            if growth is None:  # grew from nothing: any growth is too much
                growth = float("inf") if change.new > 0 else 0.0
            # growth exactly at the limit is allowed, without float noise (430080 / 409600 - 1 > 0.05)
            if growth > max_growth and not math.isclose(growth, max_growth, rel_tol=1e-9, abs_tol=1e-12):
                found.append(Regression(quantity, change.old, change.new, growth, max_growth))  # type: ignore[arg-type]
        return tuple(found)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "old_model": self.old_model,
            "new_model": self.new_model,
            "targets": list(self.targets),
            "counts": {
                "changed": len(self.changed),
                "added": len(self.added),
                "removed": len(self.removed),
                "unchanged": len(self.unchanged),
            },
            "total": _row_diff_dict(self.total),
            "rows": [_row_diff_dict(r) for r in self.rows if r.status != "same"],
        }


def _row_diff_dict(row: RowDiff) -> dict[str, Any]:
    def change(value: Change) -> dict[str, Any]:
        return {"old": value.old, "new": value.new, "delta": value.delta, "growth": value.growth}

    return {
        "phase": row.phase,
        "name": row.name,
        "status": row.status,
        "kind_old": row.kind_old,
        "kind_new": row.kind_new,
        "flops": change(row.flops),
        "bytes": change(row.bytes),
        "params": change(row.params),
        "time_ms": change(row.time_ms),
        "roofline_time_ms": {target: change(c) for target, c in row.roofline_time_ms},
        "bound_changes": [{"target": b.target, "old": b.old, "new": b.new} for b in row.bound_changes],
    }


# -- reading -------------------------------------------------------------------------------------


def load_report(path: str | Path) -> dict[str, Any]:
    """A report dict from a JSON file written by ``report.to_json``; one-line errors otherwise."""
    file = Path(path)
    if not file.is_file():
        raise InvalidArgumentError(f"report file {str(file)!r} does not exist or is not a file")
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as error:
        raise InvalidArgumentError(f"{file}: not a JSON file: {error}") from error
    except RecursionError:
        raise InvalidArgumentError(f"{file}: not a layerprof report (JSON nested too deeply)") from None
    check_report_dict(document, str(file))
    return document  # type: ignore[no-any-return]


def check_report_dict(document: object, origin: str = "report") -> None:
    if not isinstance(document, Mapping) or not {"layers", "total", "schema_version"} <= set(document):
        raise InvalidArgumentError(f"{origin}: not a layerprof report (write one with report.to_json(path))")
    version = document["schema_version"]
    if version != SCHEMA_VERSION:
        raise InvalidArgumentError(
            f"{origin}: report schema version {version!r}, this layerprof reads version {SCHEMA_VERSION}"
        )
    if not isinstance(document["layers"], list) or not isinstance(document["total"], Mapping):
        raise InvalidArgumentError(f"{origin}: 'layers' must be a list and 'total' an object")
    for index, row in enumerate(document["layers"]):
        _check_row(row, f"{origin}: layers[{index}]")
    _check_row(document["total"], f"{origin}: total")


#: Counts a gate compares: each must be there, a non-negative integer that fits a float. A gate
#: fails closed: a report it cannot read is a usage error (exit 2), never "no regression".
_COUNT_KEYS = ("flops", "matrix_flops", "bytes_read", "bytes_written", "params")
_LARGEST_COUNT = 2**63 - 1


def _check_row(row: object, where: str) -> None:
    def malformed(detail: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"{where} is malformed: {detail}")

    if not isinstance(row, Mapping):
        raise malformed(f"a row must be an object, got {row!r}")
    name = row.get("name")
    if not isinstance(name, str) or not name:
        raise malformed(f"a row needs a name, got {name!r}")
    if row.get("phase", "forward") not in ("forward", "backward", "step"):
        raise malformed(f"{name}: phase must be forward, backward or step, got {row.get('phase')!r}")
    for key in _COUNT_KEYS:
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _LARGEST_COUNT:
            raise malformed(f"{name}: {key} must be an integer from 0 to 2**63-1, got {value!r}")
    time_ms = row.get("time_ms")
    if time_ms is not None and (
        isinstance(time_ms, bool) or not isinstance(time_ms, (int, float)) or not 0 <= time_ms < math.inf
    ):
        raise malformed(f"{name}: time_ms must be a finite number >= 0 or null, got {time_ms!r}")


def parse_fraction(text: str | float) -> float:
    """``"5%"`` or ``"0.05"`` (or 0.05) -> 0.05. A bare number above 1 is refused as ambiguous."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
        raw = repr(text)
    else:
        raw = str(text).strip()
        percent = raw.endswith("%")
        try:
            value = float(raw.removesuffix("%").strip())
        except ValueError:
            raise InvalidArgumentError(f"fraction {raw!r} must look like 5% or 0.05") from None
        if percent:
            value /= 100.0
        elif value > 1:
            raise InvalidArgumentError(
                f"fraction {raw!r} is above 1: write {raw}% for percent, or a fraction"
            )
    if not value >= 0 or value == float("inf"):
        raise InvalidArgumentError(f"fraction {raw!r} must be a finite value >= 0")
    return value


# -- comparing -----------------------------------------------------------------------------------


def _bytes_of(row: Mapping[str, Any]) -> int:
    return int(row.get("bytes_read", 0)) + int(row.get("bytes_written", 0))


def _number(row: Mapping[str, Any] | None, key: str) -> float | None:
    if row is None:
        return None
    value = row.get(key)
    return None if value is None else float(value)


def _diff(
    phase: str,
    name: str,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    targets: Sequence[str],
) -> RowDiff:
    flops = Change(_number(old, "flops"), _number(new, "flops"))
    moved = Change(
        None if old is None else float(_bytes_of(old)), None if new is None else float(_bytes_of(new))
    )
    params = Change(_number(old, "params"), _number(new, "params"))
    time_ms = Change(_number(old, "time_ms"), _number(new, "time_ms"))
    kind_old = None if old is None else str(old.get("kind"))
    kind_new = None if new is None else str(new.get("kind"))
    roofline: list[tuple[str, Change]] = []
    bounds: list[BoundChange] = []
    for target in targets:
        old_verdict = (old or {}).get("roofline", {}).get(target)
        new_verdict = (new or {}).get("roofline", {}).get(target)
        roofline.append(
            (
                target,
                Change(_number(old_verdict, "roofline_time_ms"), _number(new_verdict, "roofline_time_ms")),
            )
        )
        old_bound = None if old_verdict is None else old_verdict.get("bound")
        new_bound = None if new_verdict is None else new_verdict.get("bound")
        if old is not None and new is not None and old_bound != new_bound:
            bounds.append(BoundChange(target, old_bound, new_bound))
    status: Status
    if old is None:
        status = "added"
    elif new is None:
        status = "removed"
    elif kind_old != kind_new or flops.differs or moved.differs or params.differs or bounds:
        status = "changed"
    else:
        status = "same"
    return RowDiff(
        phase, name, status, kind_old, kind_new, flops, moved, params, time_ms, tuple(roofline), tuple(bounds)
    )


def _keyed(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    keyed: dict[tuple[str, str], Mapping[str, Any]] = {}
    for row in rows:
        phase, name = str(row.get("phase", "forward")), str(row.get("name"))
        key = (phase, name)
        copy = 2
        while key in keyed:  # a name seen twice (should not happen) keeps both rows apart
            key = (phase, f"{name}#{copy}")
            copy += 1
        keyed[key] = row
    return keyed


def _target_names(report: Mapping[str, Any]) -> list[str]:
    return [str(t.get("name")) for t in report.get("targets", []) if isinstance(t, Mapping)]


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> Comparison:
    """Row-by-row and total differences between two report dicts (``report.to_dict()`` or
    :func:`load_report`)."""
    check_report_dict(old, "old report")
    check_report_dict(new, "new report")
    try:
        return _compare(old, new)
    except (TypeError, ValueError, AttributeError, KeyError) as error:
        # A damaged or hand-edited file: a usage error (exit 2), never a "regression" (exit 1).
        raise InvalidArgumentError(
            f"a report has a malformed row ({type(error).__name__}: {error}); "
            "compare reads files written by `layerprof audit --format json` or report.to_json()"
        ) from error


def _compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> Comparison:
    new_targets = _target_names(new)
    targets = tuple(t for t in _target_names(old) if t in new_targets)
    old_rows, new_rows = _keyed(old["layers"]), _keyed(new["layers"])
    diffs = [
        _diff(phase, name, old_rows.get((phase, name)), row, targets)
        for (phase, name), row in new_rows.items()
    ]
    diffs += [
        _diff(phase, name, row, None, targets)
        for (phase, name), row in old_rows.items()
        if (phase, name) not in new_rows
    ]
    total = _diff("forward", "total", old["total"], new["total"], targets)
    return Comparison(str(old.get("model", "")), str(new.get("model", "")), tuple(diffs), total, targets)


# -- rendering -----------------------------------------------------------------------------------

_QUANTITY_LABEL: dict[str, str] = {"flops": "FLOPs", "bytes": "bytes", "time_ms": "time"}


def _show(quantity: str, value: float | None) -> str:
    if value is None:
        return "-"
    if quantity == "bytes":
        return binary_bytes(value)
    if quantity == "time_ms":
        return f"{milliseconds(value)} ms"
    return si(value)


def _cell(quantity: str, change: Change) -> str:
    if change.old is None and change.new is None:
        return ""
    if change.old is None or change.new is None or not change.differs:
        return _show(quantity, change.new if change.new is not None else change.old)
    growth = change.growth
    percent = "" if growth is None else f" ({growth:+.1%})"
    return f"{_show(quantity, change.old)} -> {_show(quantity, change.new)}{percent}"


def _bounds_cell(row: RowDiff) -> str:
    return ", ".join(f"{b.target}: {b.old or '-'} -> {b.new or '-'}" for b in row.bound_changes)


def render(comparison: Comparison, *, fmt: str = "simple", show_all: bool = False) -> str:
    """A summary line, the table of changed/added/removed rows (every row with ``show_all``), the
    totals, and the predicted time per shared target."""
    rows = comparison.rows if show_all else tuple(r for r in comparison.rows if r.status != "same")
    with_time = any(r.time_ms.old is not None or r.time_ms.new is not None for r in (*rows, comparison.total))
    with_phase = any(r.phase != "forward" for r in rows)
    headers = ["layer", *(["phase"] if with_phase else []), "change", "type", "FLOPs", "bytes", "params"]
    headers += ["time"] if with_time else []
    headers += ["bound"]
    body = []
    for row in (*rows, comparison.total):
        kind = row.kind_new if row.kind_old in (None, row.kind_new) else f"{row.kind_old} -> {row.kind_new}"
        if row.kind_new is None:
            kind = row.kind_old
        cells = [row.name, *([row.phase] if with_phase else []), row.status, kind or ""]
        cells += [_cell("flops", row.flops), _cell("bytes", row.bytes), _cell("params", row.params)]
        cells += [_cell("time_ms", row.time_ms)] if with_time else []
        cells.append(_bounds_cell(row))
        body.append(cells)
    counts = (
        f"{len(comparison.changed)} changed, {len(comparison.added)} added, "
        f"{len(comparison.removed)} removed, {len(comparison.unchanged)} unchanged"
    )
    lines = [f"layerprof compare: {comparison.old_model} -> {comparison.new_model}: {counts}"]
    if comparison.identical:
        lines.append("no change: every row and the totals are the same")
    lines.append(tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True))
    for target, change in comparison.total.roofline_time_ms:
        lines.append(f"predicted on {target}: {_cell('time_ms', change)}")
    if comparison.added:
        lines.append("added: " + ", ".join(_label(r) for r in comparison.added))
    if comparison.removed:
        lines.append("removed: " + ", ".join(_label(r) for r in comparison.removed))
    return "\n".join(lines)


def _label(row: RowDiff) -> str:
    return row.name if row.phase == "forward" else f"{row.name} ({row.phase})"
