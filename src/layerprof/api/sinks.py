"""Where the reports that ``layerprof.watch`` samples go.

``sink`` is one of:

* ``None``: the table is logged at INFO level on the ``layerprof.api.watch`` logger;
* the builtin ``print``: the table is printed (the only way the library prints);
* a path (``str`` or ``os.PathLike``): one JSON object per sample is appended to that file, one
  line each: ``report.to_dict()``, whose ``"step"`` is the index (0-based) of the sampled forward;
* ``"tensorboard:LOGDIR"``, or a :class:`TensorBoard` around your own ``SummaryWriter``: per-row
  scalars and the table as text, at the sampled step (needs ``pip install tensorboard``);
* any other callable: called with the :class:`~layerprof.report.facade.Report` of each sample.

How a step is sampled (a counting step, then a timing step) is in :mod:`layerprof.api.watch`.

A sink is called from wherever the sampled step ends, often from inside ``loss.backward()`` (an
autograd engine callback). An exception there would come out of the user's backward, with the
engine's remaining end-of-backward work skipped, so :class:`GuardedSink` catches it: it is logged
(ERROR, with the traceback, on ``layerprof.api.watch``) and training goes on; with
``watch(..., strict=True)`` it is held instead and raised, once, by the watcher at the next forward
of the model, ``flush()`` or ``remove()``: after the step, never inside its backward.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from layerprof.errors import InvalidArgumentError

if TYPE_CHECKING:
    from layerprof.report.facade import Report

__all__ = [
    "GuardedSink",
    "JsonLinesSink",
    "ReportSink",
    "SinkArg",
    "TensorBoard",
    "log_table",
    "print_table",
    "resolve_sink",
]

logger = logging.getLogger("layerprof.api.watch")

#: What a :class:`~layerprof.api.watcher.Watcher` hands each sample to: the report and its step (the
#: 0-based index of the sampled forward).
ReportSink = Callable[["Report", int], object]

#: A user's sink: see the module docstring.
SinkArg = Union[None, str, "os.PathLike[str]", "TensorBoard", Callable[["Report"], object]]


def log_table(report: Report, step: int) -> None:
    """The default sink: the table at INFO level on the ``layerprof.api.watch`` logger."""
    logger.info("layerprof sample of step %d:\n%s", step, report.table())


def print_table(report: Report, step: int) -> None:
    print(report.table())  # the user passed print: the one place the library prints


class JsonLinesSink:
    """Appends one line of JSON per sample to ``path``: ``report.to_dict()``, with its ``"step"``."""

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

    def __repr__(self) -> str:
        return f"JsonLinesSink({str(self.path)!r})"


class _ReportOnly:
    """A user's callable, which takes the report alone."""

    def __init__(self, call: Callable[[Report], object]) -> None:
        self.call = call

    def __call__(self, report: Report, step: int) -> None:
        self.call(report)

    def __repr__(self) -> str:
        return repr(self.call)  # the user's sink, as the user knows it


class TensorBoard:
    """Writes each sample to TensorBoard, at the sampled step.

    Scalars, per row (``<phase>`` is ``forward`` or ``backward``; glue rows' ``/`` nests their tags):
    ``layerprof/<phase>/<row>/time_ms`` and ``.../flops_per_s`` (the row's FLOPs over its measured
    time) for timed rows, and ``.../compute_bound@<target>`` (1 compute, 0 memory) for every target;
    ``layerprof/total/time_ms`` and ``layerprof/total/flops``. Text: the table, as ``layerprof/table``.

    ``writer`` is a ``torch.utils.tensorboard.SummaryWriter`` (anything with ``add_scalar``,
    ``add_text`` and ``flush``), or a log directory to open one in.
    """

    def __init__(self, writer: Any) -> None:
        if isinstance(writer, (str, os.PathLike)):
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:  # torch imports tensorboard, an optional extra, here
                raise InvalidArgumentError(
                    f"sink tensorboard:{writer} needs TensorBoard: pip install tensorboard"
                ) from error
            writer = SummaryWriter(log_dir=str(writer))
        if not all(callable(getattr(writer, name, None)) for name in ("add_scalar", "add_text", "flush")):
            raise InvalidArgumentError(
                f"TensorBoard(writer) needs a SummaryWriter or a log directory, got {type(writer).__name__}"
            )
        self.writer = writer

    def __call__(self, report: Report, step: int) -> None:
        add = self.writer.add_scalar
        for row in report.layers:
            tag = f"layerprof/{row.phase}/{row.name}"
            if row.time_ms is not None:
                add(f"{tag}/time_ms", row.time_ms, step)
                if row.time_ms > 0:
                    add(f"{tag}/flops_per_s", row.flops / (row.time_ms * 1e-3), step)
            for target, verdict in row.roofline.items():
                add(f"{tag}/compute_bound@{target}", 1.0 if verdict.bound == "compute" else 0.0, step)
        if report.total.time_ms is not None:
            add("layerprof/total/time_ms", report.total.time_ms, step)
        add("layerprof/total/flops", float(report.total.flops), step)
        # TensorBoard renders text as Markdown: indent the table four spaces to keep it a code block.
        table = "\n".join("    " + line for line in report.table().splitlines())
        self.writer.add_text("layerprof/table", table, step)
        self.writer.flush()

    def __repr__(self) -> str:
        return f"TensorBoard({self.writer!r})"


_TENSORBOARD_PREFIX = "tensorboard:"


def resolve_sink(sink: SinkArg) -> ReportSink:
    """The function a :class:`~layerprof.api.watcher.Watcher` calls, for a ``sink`` argument."""
    if sink is None:
        return log_table
    if sink is builtins.print:
        return print_table
    if isinstance(sink, TensorBoard):
        return sink
    if isinstance(sink, str) and sink.startswith(_TENSORBOARD_PREFIX):
        logdir = sink.removeprefix(_TENSORBOARD_PREFIX)
        if not logdir:
            raise InvalidArgumentError(f"sink {sink!r} names no log directory: tensorboard:runs/x")
        return TensorBoard(logdir)
    if isinstance(sink, (str, os.PathLike)):
        return JsonLinesSink(sink)
    if callable(sink):
        return _ReportOnly(sink)
    raise InvalidArgumentError(
        f"sink must be None, print, a file path or a callable taking a Report, got "
        f"{type(sink).__name__}: {sink!r:.80}"
    )


class GuardedSink:
    """Calls ``sink``; an Exception it raises is logged and training goes on, or, with ``strict``,
    held until :meth:`settle` (the watcher calls it after the step). A BaseException that is not an
    Exception (KeyboardInterrupt) is not the sink's to swallow: it propagates."""

    def __init__(self, sink: ReportSink, *, strict: bool) -> None:
        self.sink = sink
        self.strict = strict
        self._held: tuple[Exception, int] | None = None  # the error and the step it was raised on

    def __call__(self, report: Report, step: int) -> None:
        try:
            self.sink(report, step)
        except Exception as error:
            if self.strict and self._held is None:
                if sys.version_info >= (3, 11):
                    error.add_note(
                        f"raised by the layerprof.watch sink {self.sink!r} on the sample of step {step}, "
                        "and held until after that step (strict=True)"
                    )
                self._held = (error, step)
            else:
                self._log(error, step)

    def _log(self, error: Exception, step: int) -> None:
        logger.error(
            "layerprof: the watch sink %r raised on the sample of step %d; training goes on "
            "(watch(..., strict=True) raises it after the step instead)",
            self.sink,
            step,
            exc_info=error,
        )

    def settle(self, *, raise_it: bool = True) -> None:
        """Raise the held error once (its traceback let go of), or log it instead (``raise_it=False``:
        another exception is on its way and must not be hidden)."""
        if self._held is None:
            return
        (error, step), self._held = self._held, None
        if raise_it:
            raise error
        self._log(error, step)
