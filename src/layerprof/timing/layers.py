"""Timing every layer: forward hooks take clock stamps (:mod:`layerprof.timing.clocks`), one sample a forward.

On the CPU a stamp is a ``time.perf_counter_ns`` read. On CUDA it is a ``torch.cuda.Event``, taken
from a pool made before the timed forwards, recorded on the current stream, never synchronizing:
the events are read after one ``torch.cuda.synchronize`` per forward (:meth:`LayerTimer.flush`). A
hook appends one entry to each of two flat lists (which module, when) and does nothing else;
nesting, calls and self times are worked out afterwards from the order of the entries, so the time
between samples is all a user pays.

How rows get their times from these modules' times is :mod:`layerprof.timing.rows`; the optional
second opinion from ``torch.profiler``'s kernels is :mod:`layerprof.timing.kernels`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from layerprof.core import rownames
from layerprof.core.validate import non_negative_int, positive_int
from layerprof.errors import InvalidArgumentError
from layerprof.timing.clocks import Stamp, clock_for
from layerprof.walk.hooks import remove_all

__all__ = [
    "LayerTimer",
    "Measurement",
    "ModuleTimes",
    "Timings",
    "check_counts",
    "measure",
]


@dataclass(frozen=True, slots=True)
class ModuleTimes:
    """One module's times in each timed forward, in milliseconds (one entry per forward)."""

    name: str
    calls: int  # calls per forward (the most seen in one forward)
    total_ms: tuple[float, ...]  # all its calls in that forward, summed
    self_ms: tuple[float, ...]  # total minus the modules that ran inside it


@dataclass(frozen=True, slots=True)
class Timings:
    """The per-module times of ``forwards`` timed forwards; only modules that ran are listed."""

    forwards: int
    modules: Mapping[str, ModuleTimes]


@dataclass(frozen=True, slots=True)
class Measurement:
    """Hooked forwards (per module) and, interleaved with them, forwards without any hook."""

    timings: Timings
    end_to_end_ms: tuple[float, ...]


@dataclass(slots=True)
class _Forward:
    total: list[float]
    self_time: list[float]
    calls: list[int]


def check_counts(warmup: object, repeat: object) -> tuple[int, int]:
    """(warmup, repeat) as ints: ``warmup`` >= 0, ``repeat`` >= 1; the message names the bad value."""
    counted = positive_int("repeat", repeat)
    return non_negative_int("warmup", warmup), counted


class LayerTimer:
    """Timing hooks on every module of ``root``; each forward of ``root`` is one sample.

    ``attach`` registers a forward pre-hook and a forward hook per module (the forward hook is
    prepended, so the module's time ends as soon as its forward returns); ``close`` removes every
    handle. Call :meth:`flush` between forwards (on CUDA it synchronizes once and reads the events),
    then :meth:`timings`. Modules are named as in ``root.named_modules()``, the root ``root_name``.
    """

    def __init__(
        self, root: nn.Module, *, device: torch.device | str | None = None, root_name: str = rownames.ROOT
    ) -> None:
        named = list(root.named_modules())
        self.names: tuple[str, ...] = tuple(name or root_name for name, _ in named)
        self._modules: tuple[nn.Module, ...] = tuple(module for _, module in named)
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.clock = clock_for(self.device)
        self._codes: list[int] = []  # module index on entry, its bitwise complement on exit
        self._stamps: list[Stamp] = []  # one per code
        self._handles: list[RemovableHandle] = []
        self._forwards: list[_Forward] = []

    # -- hooks ---------------------------------------------------------------------------------------
    def attach(self) -> None:
        if self._handles:
            raise InvalidArgumentError("this LayerTimer is already attached")
        self.reserve(2 * len(self._modules))
        try:
            for code, module in enumerate(self._modules):
                enter, leave = self._hooks(code)
                self._handles.append(module.register_forward_pre_hook(enter))
                self._handles.append(module.register_forward_hook(leave, prepend=True))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        remove_all(self._handles)

    def __enter__(self) -> LayerTimer:
        self.attach()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _hooks(self, code: int) -> tuple[Callable[..., None], Callable[..., None]]:
        codes_append = self._codes.append
        stamps_append = self._stamps.append
        stamp = self.clock.stamp
        exit_code = ~code

        def enter(_module: nn.Module, _args: Any) -> None:
            codes_append(code)
            stamps_append(stamp())  # last, so that the bookkeeping is not in the module's time

        def leave(_module: nn.Module, _args: Any, _output: Any) -> None:
            stamps_append(stamp())  # first, for the same reason
            codes_append(exit_code)

        return enter, leave

    def reserve(self, events: int) -> None:
        """CUDA: have at least ``events`` timing events ready (a forward records two per module call)."""
        self.clock.reserve(events)

    # -- samples -------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Turn what the hooks recorded into samples; call it between forwards, never inside one.

        On CUDA this is where the one synchronize happens and the events are read (and then reused).
        A forward that did not finish (it raised) is dropped.
        """
        stamps = list(self._stamps)
        self._stamps.clear()
        if stamps:
            self.clock.synchronize()
            times_ms = self.clock.since_ms(stamps[0], stamps)
            self.clock.recycle(stamps)
        else:
            times_ms = []
        codes = list(self._codes)
        self._codes.clear()
        self._forwards.extend(_fold(codes, times_ms, len(self.names)))

    def discard(self) -> None:
        """Forget the forwards flushed so far (after warm-up)."""
        self._forwards.clear()

    @property
    def forwards(self) -> int:
        return len(self._forwards)

    def running_layer(self) -> str | None:
        """The innermost module entered but not left in the unflushed record (after a failed forward)."""
        open_modules: list[int] = []
        for code in self._codes:
            if code >= 0:
                open_modules.append(code)
            elif open_modules and open_modules[-1] == ~code:
                open_modules.pop()
        return self.names[open_modules[-1]] if open_modules else None

    def timings(self) -> Timings:
        """Per-module times over the flushed forwards."""
        modules: dict[str, ModuleTimes] = {}
        for index, name in enumerate(self.names):
            calls = [forward.calls[index] for forward in self._forwards]
            if not any(calls):
                continue
            modules[name] = ModuleTimes(
                name=name,
                calls=max(calls),
                total_ms=tuple(forward.total[index] for forward in self._forwards),
                self_ms=tuple(forward.self_time[index] for forward in self._forwards),
            )
        return Timings(forwards=len(self._forwards), modules=MappingProxyType(modules))


def _fold(codes: Sequence[int], times_ms: Sequence[float], size: int) -> list[_Forward]:
    """Complete forwards of the root (module 0) from entry/exit codes and their times."""
    forwards: list[_Forward] = []
    stack: list[tuple[int, float]] = []
    total = [0.0] * size
    inner = [0.0] * size
    calls = [0] * size
    for code, now in zip(codes, times_ms, strict=True):
        if code >= 0:
            if code == 0:  # a forward of the root starts; an unfinished one before it raised
                stack = []
                total, inner, calls = [0.0] * size, [0.0] * size, [0] * size
            elif not stack:
                continue  # a submodule called on its own, outside a forward of the root
            stack.append((code, now))
            continue
        index = ~code
        if not any(entry == index for entry, _ in stack):
            continue
        entry, start = stack.pop()
        while entry != index:  # modules that raised inside a caller that caught it: no time
            entry, start = stack.pop()
        duration = now - start
        total[index] += duration
        calls[index] += 1
        if stack:
            inner[stack[-1][0]] += duration
        elif index == 0:
            self_time = [max(0.0, t - i) for t, i in zip(total, inner, strict=True)]
            forwards.append(_Forward(total, self_time, calls))
    return forwards


def measure(
    hooked: Callable[[], object],
    plain: Callable[[], object],
    timer: LayerTimer,
    *,
    warmup: int,
    repeat: int,
) -> Measurement:
    """``warmup`` rounds, then ``repeat`` rounds of one ``plain`` forward (no hooks, timed whole) and
    one ``hooked`` forward (``timer`` attached to its model). Interleaving the two puts clock drift
    and background load on both alike, and which one goes first alternates between rounds. One
    synchronize per forward on CUDA (in ``timer.flush``), none inside a forward."""
    warmup, repeat = check_counts(warmup, repeat)
    stopwatch = clock_for(timer.device)  # its own clock: its events never mix with the timer's
    end_to_end: list[float] = []
    for round_index in range(warmup + repeat):
        if round_index == warmup:
            timer.discard()
            end_to_end.clear()
        if round_index % 2:
            hooked()
            timer.flush()
            end_to_end.append(stopwatch.time_ms(plain))
        else:
            end_to_end.append(stopwatch.time_ms(plain))
            hooked()
            timer.flush()
    return Measurement(timings=timer.timings(), end_to_end_ms=tuple(end_to_end))
