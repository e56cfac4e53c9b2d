"""Where the reports that ``layerprof.watch`` samples go.

``sink`` is one of:

* ``None``: the table is logged at INFO level on the ``layerprof.api.watch`` logger;
* the builtin ``print``: the table is printed (the only way the library prints);
* a path (``str`` or ``os.PathLike``): one JSON object per sample is appended to that file, one
  line each: ``report.to_dict()`` plus ``"step"``, the index (1-based) of the sampled forward;
* any other callable: called with the :class:`~layerprof.report.facade.Report` of each sample.

How a step is sampled (a counting step, then a timing step) is in :mod:`layerprof.api.watch`.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Union

from layerprof.errors import InvalidArgumentError

if TYPE_CHECKING:
    from layerprof.report.facade import Report

__all__ = ["JsonLinesSink", "ReportSink", "SinkArg", "log_table", "print_table", "resolve_sink"]

logger = logging.getLogger("layerprof.api.watch")

#: What a :class:`~layerprof.api.watcher.Watcher` hands each sample to: the report and the index of the
#: sampled forward.
ReportSink = Callable[["Report", int], object]

#: A user's sink: see the module docstring.
SinkArg = Union[None, str, "os.PathLike[str]", Callable[["Report"], object]]


def log_table(report: Report, step: int) -> None:
    """The default sink: the table at INFO level on the ``layerprof.api.watch`` logger."""
    logger.info("layerprof sample of step %d:\n%s", step, report.table())


def print_table(report: Report, step: int) -> None:
    print(report.table())  # the user passed print: the one place the library prints


class JsonLinesSink:
    """Appends one line of JSON per sample to ``path``: ``report.to_dict()`` plus ``"step"``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise InvalidArgumentError(f"sink {str(path)!r} is a directory; give a file to append to")
        if not self.path.parent.is_dir():
            raise InvalidArgumentError(
                f"sink {str(path)!r}: its directory {str(self.path.parent)!r} does not exist"
            )

    def __call__(self, report: Report, step: int) -> None:
        line = json.dumps({**report.to_dict(), "step": step})
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")


class _ReportOnly:
    """A user's callable, which takes the report alone."""

    def __init__(self, call: Callable[[Report], object]) -> None:
        self.call = call

    def __call__(self, report: Report, step: int) -> None:
        self.call(report)


def resolve_sink(sink: SinkArg) -> ReportSink:
    """The function a :class:`~layerprof.api.watcher.Watcher` calls, for a ``sink`` argument."""
    if sink is None:
        return log_table
    if sink is builtins.print:
        return print_table
    if isinstance(sink, (str, os.PathLike)):
        return JsonLinesSink(sink)
    if callable(sink):
        return _ReportOnly(sink)
    raise InvalidArgumentError(
        f"sink must be None, print, a file path or a callable taking a Report, got "
        f"{type(sink).__name__}: {sink!r:.80}"
    )
