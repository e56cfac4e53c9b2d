"""The collectors of counted forwards that never returned, taken off when it is safe to.

A ``KeyboardInterrupt`` (any BaseException) raised inside a counted forward skips torch's always_call
forward hooks, so the collector's module hooks are still on when the next forward starts. torch has
already listed that forward's root pre-hooks, the collector's among them: removed now, it would
still be called, without its kwargs, and raise. So its hooks stay on for that forward, doing
nothing without the counting mode, and :class:`Leftovers` takes them off when it returns (or at
the watcher's ``flush()`` or ``remove()``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

from layerprof.walk.collect import Collector

__all__ = ["Leftovers"]


class Leftovers:
    """Collectors waiting for the end of the forward that is running; :meth:`close` takes them off."""

    def __init__(self) -> None:
        self._collectors: list[Collector] = []
        self._hook: RemovableHandle | None = None

    def keep(self, collector: Collector, model: nn.Module) -> None:
        """Take ``collector`` off when the forward of ``model`` that is running returns."""
        self._collectors.append(collector)
        if self._hook is None:
            # Not always_call: torch walks those over the live hook dict, which this one changes.
            self._hook = model.register_forward_hook(self.close)

    def close(self, *_hook_args: Any) -> None:
        """Every collector kept off, and the hook that waited for them; whichever raises."""
        hook, self._hook = self._hook, None
        collectors, self._collectors = self._collectors, []
        with contextlib.ExitStack() as closing:
            if hook is not None:
                closing.callback(hook.remove)
            for collector in collectors:
                closing.callback(collector.release_graph)
                closing.callback(collector.close)
