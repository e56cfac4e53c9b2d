"""What a :class:`~layerprof.api.watcher.Watcher` tells a ``gather`` helper about its samples."""

from __future__ import annotations

from typing import Protocol

from torch import nn

from layerprof.errors import InvalidArgumentError
from layerprof.report.facade import Report

__all__ = ["TAP_METHODS", "SampleTap", "check_tap"]


class SampleTap(Protocol):
    """What a :class:`Watcher` tells a ``gather`` helper (:class:`layerprof.RankGather` is one)."""

    def attach(self, model: nn.Module) -> None: ...  # the watcher is made
    def timing_started(self) -> None: ...  # a timing step's forward starts
    def backward_over(self) -> None: ...  # its backward's last node ran (an engine callback)
    def dropped(self) -> None: ...  # the sample in flight was dropped
    def close(self) -> None: ...  # the watcher is removed

    @property
    def feeds_sink(self) -> bool: ...  # whether this process's sink gets the reports

    # this process's report of a sample; None: no report of it (the gather dropped it, and says why)
    def finish(self, report: Report, step: int) -> Report | None: ...


TAP_METHODS = ("attach", "timing_started", "backward_over", "dropped", "close", "finish")


def check_tap(gather: SampleTap | None) -> SampleTap | None:
    """``gather`` itself, once it is None or has every method a watcher calls."""
    if gather is not None and not all(callable(getattr(gather, m, None)) for m in TAP_METHODS):
        raise InvalidArgumentError(
            f"gather must be a layerprof.RankGather (with {', '.join(TAP_METHODS)}), got {gather!r:.80}"
        )
    return gather
