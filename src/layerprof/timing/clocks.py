"""The one clock every layerprof timer reads: ``time.perf_counter_ns`` on the CPU, CUDA events on a GPU.

A clock hands out *stamps*: :attr:`Clock.stamp` reads the time now (on the CPU an int of
nanoseconds; on CUDA an event recorded on the current stream, never synchronizing). Stamps become
milliseconds only once the timed work is over: :meth:`Clock.synchronize` once (CUDA; nothing on the
CPU), then :meth:`Clock.elapsed_ms` or :meth:`Clock.since_ms`.

``stamp`` is a plain attribute, so that a hook binds it once and calls it with no frame of its own:
on the CPU it is ``time.perf_counter_ns`` itself, and a hook that only appends stamps costs what a
bare clock read costs.

A CUDA clock keeps its events in a pool: :meth:`Clock.reserve` makes them before the timed work (so
that no hook allocates), :meth:`Clock.recycle` gives read ones back. Taking an event from the pool
and giving it back are single list operations, atomic under the GIL, so hooks on several threads (an
autograd device thread, a comm hook's callback) may stamp at once.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import TypeAlias, cast

import torch

__all__ = ["Clock", "CpuClock", "CudaClock", "Stamp", "clock_for"]

#: What :attr:`Clock.stamp` returns: nanoseconds on the CPU, a recorded event on CUDA.
Stamp: TypeAlias = "int | torch.cuda.Event"


class Clock(ABC):
    """Stamps now, milliseconds later; one per timer (a CUDA clock's pool is not shared)."""

    device: torch.device
    #: Read the time now. A hook binds it once; on the CPU it is ``time.perf_counter_ns``.
    stamp: Callable[[], Stamp]

    @abstractmethod
    def synchronize(self) -> None:
        """Wait until every stamp taken so far has happened (CUDA); a no-op on the CPU."""

    @abstractmethod
    def elapsed_ms(self, start: Stamp, end: Stamp) -> float:
        """Milliseconds from ``start`` to ``end``, both taken by this clock (after :meth:`synchronize`)."""

    def since_ms(self, origin: Stamp, stamps: Iterable[Stamp]) -> list[float]:
        """Each stamp's milliseconds after ``origin``: one time axis for a run of stamps."""
        return [self.elapsed_ms(origin, stamp) for stamp in stamps]

    def reserve(self, count: int) -> None:  # noqa: B027 - the CPU clock has nothing to make
        """Have ``count`` stamps ready before the timed work, so that no hook allocates."""

    def recycle(self, stamps: Iterable[Stamp]) -> None:  # noqa: B027 - CPU stamps are plain ints
        """Give stamps that have been read back, for later :attr:`stamp` calls to reuse."""

    def time_ms(self, call: Callable[[], object]) -> float:
        """Milliseconds ``call()`` takes: a stamp on each side, one synchronize after (no hook)."""
        self.reserve(2)  # both events made before the call, so that making one is not timed
        stamp = self.stamp
        start = stamp()
        call()
        end = stamp()
        self.synchronize()
        elapsed = self.elapsed_ms(start, end)
        self.recycle((start, end))
        return elapsed


class CpuClock(Clock):
    """``time.perf_counter_ns``: stamps are ints, differences taken as ints first (no rounding)."""

    def __init__(self) -> None:
        self.device = torch.device("cpu")
        self.stamp = time.perf_counter_ns

    def synchronize(self) -> None:
        return None

    def elapsed_ms(self, start: Stamp, end: Stamp) -> float:
        return (cast(int, end) - cast(int, start)) / 1e6

    def since_ms(self, origin: Stamp, stamps: Iterable[Stamp]) -> list[float]:
        origin_ns = cast(int, origin)
        return [(ns - origin_ns) / 1e6 for ns in cast("Iterable[int]", stamps)]


class CudaClock(Clock):
    """CUDA events with timing, recorded on the current stream; read after one synchronize."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._spare: list[torch.cuda.Event] = []
        self.stamp = self._record

    def _record(self) -> torch.cuda.Event:
        try:
            event = self._spare.pop()
        except IndexError:  # more stamps than reserved: grow (only in the first timed runs)
            event = _timing_event()
        event.record()
        return event

    def synchronize(self) -> None:
        torch.cuda.synchronize(self.device)

    def elapsed_ms(self, start: Stamp, end: Stamp) -> float:
        return float(cast(torch.cuda.Event, start).elapsed_time(cast(torch.cuda.Event, end)))

    def since_ms(self, origin: Stamp, stamps: Iterable[Stamp]) -> list[float]:
        base = cast(torch.cuda.Event, origin)
        return [float(base.elapsed_time(event)) for event in cast("Iterable[torch.cuda.Event]", stamps)]

    def reserve(self, count: int) -> None:
        while len(self._spare) < count:
            self._spare.append(_timing_event())

    def recycle(self, stamps: Iterable[Stamp]) -> None:
        self._spare.extend(cast("Sequence[torch.cuda.Event]", list(stamps)))


def _timing_event() -> torch.cuda.Event:
    return torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]


def clock_for(device: torch.device | str) -> Clock:
    """CUDA events for a CUDA device, ``perf_counter_ns`` for anything else (CPU, MPS, meta)."""
    where = torch.device(device)
    return CudaClock(where) if where.type == "cuda" else CpuClock()
