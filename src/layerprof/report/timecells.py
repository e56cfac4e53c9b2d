"""Time cells of the text table: each time column picks milliseconds or microseconds for its values.

A column of times (measured, IQR, slowest rank, kernel, roofline) is printed in ``us`` when all of
its values are below a millisecond, or when one of its non-zero values is below half a microsecond
(which ``ms`` with three decimals would print as ``0.000``); else in ``ms``. Its header says which
(``time ms``, ``roof us@t4``). A lone time in a footer line carries its own unit: ``ms`` from
0.1 ms up, ``us`` below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from layerprof.core.units import milliseconds

__all__ = ["TimeCell", "column_unit", "duration", "resolve_columns"]

#: Below this many milliseconds a non-zero time prints as 0.000 in ms.
_SHOWS_AS_ZERO_MS = 0.0005


@dataclass(frozen=True, slots=True)
class TimeCell:
    """A time in milliseconds (None: not timed, printed ``-``) and a mark printed after it."""

    ms: float | None
    mark: str = ""


def column_unit(values: Sequence[float | None]) -> str:
    """``"us"`` for a column of sub-millisecond times or one with a time ``ms`` would print as 0.000."""
    known = [v for v in values if v is not None]
    if not known:
        return "ms"
    nonzero = [v for v in known if v > 0]
    if max(known) < 1.0 or (nonzero and min(nonzero) < _SHOWS_AS_ZERO_MS):
        return "us"
    return "ms"


def _number(ms: float | None, unit: str) -> str:
    if ms is None:
        return "-"
    return milliseconds(ms * 1000.0 if unit == "us" else ms)


def duration(ms: float) -> str:
    """One time with its unit, for prose: ``0.677 ms``, ``76.30 us``."""
    unit = "ms" if ms >= 0.1 else "us"
    return f"{_number(ms, unit)} {unit}"


def resolve_columns(
    headers: Sequence[str], body: Sequence[Sequence[str | TimeCell]]
) -> tuple[list[str], list[list[str]]]:
    """Headers and string cells: every column holding TimeCells gets its unit, named in its header
    (``" ms"`` becomes ``" us"``); a mark follows its number (``0.012^``), ``-`` takes none."""
    units: dict[int, str] = {}
    for index in range(len(headers)):
        cells = [row[index] for row in body]
        times = [cell.ms for cell in cells if isinstance(cell, TimeCell)]
        if any(isinstance(cell, TimeCell) for cell in cells):
            units[index] = column_unit(times)
    named = [
        header.replace(" ms", f" {units[i]}", 1) if i in units else header for i, header in enumerate(headers)
    ]
    rows = [
        [
            _number(cell.ms, units[i]) + (cell.mark if cell.ms is not None else "")
            if isinstance(cell, TimeCell)
            else cell
            for i, cell in enumerate(row)
        ]
        for row in body
    ]
    return named, rows
