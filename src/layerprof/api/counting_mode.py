"""The counting step's dispatch mode: the one place where ``layerprof.watch`` pushes and pops it.

A :class:`CountingMode` enters the mode stack once (:meth:`~CountingMode.enter`) and leaves it once
(:meth:`~CountingMode.exit`); both are idempotent, and whatever interrupts them (a
``KeyboardInterrupt`` included) the mode's own record of being on the stack is read back from the
stack itself, so that a later ``exit()`` neither leaves it behind nor pops another mode.

Whether it counts is not its own flag: it asks the sample's state (:class:`~layerprof.api.watch_states.
SampleState`) on every op, and passes ops through untouched once the counting step is over, until it
can leave the stack. It can leave only from the thread that entered it, when it is the top mode, and
never from inside an autograd engine callback (:func:`engine_callback`): the engine puts back the
stack it ran the backward with, so a mode popped there would come back. :class:`ModesToLeave` holds
the modes that could not leave yet, and takes each off at the first chance.

While the sample awaits its backward, the mode also reports the first op the autograd engine runs
(``on_backward``): that backward has started, and if the next forward comes before it ended, it raised.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Protocol

import torch
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

from layerprof.walk.collect import Collector, OpCounter

__all__ = ["CountingMode", "ModesToLeave", "engine_callback", "in_engine_callback"]

# Named, not __name__: the watcher's logger (README, "During training").
logger = logging.getLogger("layerprof.api.watch")
_local = threading.local()


@contextlib.contextmanager
def engine_callback() -> Iterator[None]:
    """Marks code run from an autograd engine callback on this thread (the mode stack is off limits)."""
    depth: int = getattr(_local, "callback_depth", 0)
    _local.callback_depth = depth + 1
    try:
        yield
    finally:
        _local.callback_depth = depth


def in_engine_callback() -> bool:
    return bool(getattr(_local, "callback_depth", 0))


class Counts(Protocol):
    """What the mode asks on every op (a :class:`~layerprof.api.watch_states.SampleState`)."""

    @property
    def counting(self) -> bool: ...

    @property
    def awaiting_backward(self) -> bool: ...


class _NothingToCharge:
    """What a forgotten mode charges: nothing (it passes ops through anyway)."""

    def charge(self, func: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> None:
        return None


class _StepCounter(OpCounter):  # type: ignore[no-untyped-call]
    """The counter, on real kernels (training goes on with the results), while ``counts.counting``."""

    def __init__(self, collector: Collector, counts: Counts) -> None:
        super().__init__(collector, fast_meta=False)
        self.counts = counts
        self.on_backward: Callable[[], object] | None = None

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        if self.counts.counting:
            report = self.on_backward
            if (
                report is not None
                and self.counts.awaiting_backward  # first: asking the engine costs more
                and torch._C._current_autograd_node() is not None  # an op of a backward's node
            ):
                report()
            return super().__torch_dispatch__(func, types, args, kwargs)
        return func(*args, **(kwargs or {}))


class CountingMode:
    """Owns one counting step's dispatch mode on the mode stack; also a context manager."""

    def __init__(self, collector: Collector, counts: Counts) -> None:
        self._counter = _StepCounter(collector, counts)
        self.thread: int | None = None  # the thread that entered it
        self._on_stack = False

    @property
    def on_stack(self) -> bool:
        return self._on_stack

    @property
    def on_backward(self) -> Callable[[], object] | None:
        """Called on the first op a backward runs while the sample awaits one (from inside the engine)."""
        return self._counter.on_backward

    @on_backward.setter
    def on_backward(self, call: Callable[[], object] | None) -> None:
        self._counter.on_backward = call

    def forget(self) -> None:
        """The sample is over: let go of its collector (and through it the model) and its callback,
        also while the mode still waits on the stack to leave."""
        self._counter.collector = _NothingToCharge()
        self._counter.on_backward = None

    def _read_back(self) -> None:
        # The stack, not what was attempted, says where the mode is (valid on the entering thread).
        self._on_stack = any(mode is self._counter for mode in _get_current_dispatch_mode_stack())

    def enter(self) -> None:
        """Push the mode on this thread's stack; a second call does nothing."""
        if self._on_stack or self.thread is not None:
            return
        self.thread = threading.get_ident()
        try:
            self._counter.__enter__()  # type: ignore[no-untyped-call]
        finally:
            self._read_back()

    def exit(self) -> bool:
        """Leave the stack if this thread can now; True once the mode is off it (also when it never
        went on). False while it cannot: another thread, another mode above it, an engine callback."""
        if not self._on_stack:
            return True
        if in_engine_callback() or threading.get_ident() != self.thread:
            return False
        stack = _get_current_dispatch_mode_stack()
        if not any(mode is self._counter for mode in stack):
            self._on_stack = False  # taken off by someone else: nothing of ours to pop
            return True
        if stack[-1] is not self._counter:
            return False  # popping now would take the mode above it off instead
        try:
            self._counter.__exit__(None, None, None)  # type: ignore[no-untyped-call]
        finally:
            self._read_back()
        return not self._on_stack

    def __enter__(self) -> CountingMode:
        self.enter()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.exit()


class ModesToLeave:
    """Counting modes that could not leave the stack when their sample was done with them; each
    leaves at the first :meth:`retry` that can take it off (the next forward, flush, remove)."""

    def __init__(self) -> None:
        self._waiting: list[CountingMode] = []

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def leave(self, mode: CountingMode) -> None:
        """Take ``mode`` off the stack now if this thread can, else keep it for a later retry."""
        if mode.exit() or any(m is mode for m in self._waiting):
            return
        if not in_engine_callback():  # from a callback it is expected: the training thread takes it off
            logger.warning(
                "layerprof's counter could not leave the dispatch-mode stack yet (another mode is above "
                "it, or this is not the thread that entered it); it passes ops through until it can"
            )
        self._waiting.append(mode)

    def retry(self) -> None:
        if self._waiting and not in_engine_callback():
            self._waiting = [mode for mode in self._waiting if not mode.exit()]
