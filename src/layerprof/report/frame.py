"""A report's rows as a pandas DataFrame (``report.to_pandas()``); pandas is optional.

One line per row of ``report.layers`` (the totals are ``report.total``, not a line), in the report's
order, with the columns of the CSV export: every row field but ``roofline`` (shapes as tuples,
``macs`` and ``intensity`` included), then ``bound@T``, ``roofline_time_ms@T`` and
``roofline_efficiency@T`` for each target T. Counts are int64 columns, times and ratios float64
ones (NaN where not timed or not judged).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from layerprof.core.records import ROW_FIELDS, LayerRow
from layerprof.errors import InvalidArgumentError

if TYPE_CHECKING:
    from layerprof.report.facade import Report

__all__ = ["records", "to_pandas"]

_FIELDS = [name for name in ROW_FIELDS if name != "roofline"]


def records(report: Report) -> list[dict[str, Any]]:
    """The frame's lines as plain dicts, column name -> value, in column order."""
    return [_record(row, report) for row in report.layers]


def _record(row: LayerRow, report: Report) -> dict[str, Any]:
    record = {name: getattr(row, name) for name in _FIELDS}
    for target in report.targets:
        verdict = row.roofline.get(target.name)
        record[f"bound@{target.name}"] = None if verdict is None else verdict.bound
        record[f"roofline_time_ms@{target.name}"] = None if verdict is None else verdict.roofline_time_ms
        record[f"roofline_efficiency@{target.name}"] = (
            None if verdict is None else verdict.roofline_efficiency
        )
    return record


def to_pandas(report: Report) -> Any:
    """A ``pandas.DataFrame`` of the rows; InvalidArgumentError saying how to install pandas without it."""
    try:
        pandas = importlib.import_module("pandas")
    except ImportError as error:
        raise InvalidArgumentError(
            "report.to_pandas() needs pandas, which is not installed: pip install pandas "
            "(report.to_dict() and report.to_csv() need nothing)"
        ) from error
    columns = [*_FIELDS]
    floats = ["intensity", "time_ms", "time_iqr_ms"]
    for target in report.targets:
        columns += [f"{key}@{target.name}" for key in ("bound", "roofline_time_ms", "roofline_efficiency")]
        floats += [f"{key}@{target.name}" for key in ("roofline_time_ms", "roofline_efficiency")]
    table = pandas.DataFrame.from_records(records(report), columns=columns)
    return table.astype(dict.fromkeys(floats, "float64"))
