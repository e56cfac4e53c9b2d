"""Timing every layer: forward hooks read a clock (CPU) or record CUDA events, one sample per forward.

On the CPU the hooks read ``time.perf_counter_ns``. On CUDA they record ``torch.cuda.Event``s, taken
from a pool made before the timed forwards, on the current stream, and never synchronize: the events
are read after one ``torch.cuda.synchronize`` per forward (:meth:`LayerTimer.flush`). A hook appends
one entry to each of two flat lists (which module, when) and does nothing else; nesting, calls and
self times are worked out afterwards from the order of the entries, so the time between samples is
all a user pays.

Rows get their times by name (:func:`timed_rows`). A leaf module's row gets its module's time, all
its calls in one forward summed. The glue rows of a container (``layer1.0/add``) share its self
time: its time minus the time of the modules that ran inside it. When a container has several glue
rows, its self time is split in proportion to each glue row's roofline time on the first target (to
its bytes moved when there is no target), since the ops between two child calls cannot be told apart
by hooks. A row's time is the median over the timed forwards, its spread the interquartile range.

:func:`kernel_times` is the optional second opinion on CUDA: one forward under ``torch.profiler``
with a ``record_function`` range per module, each kernel's duration charged to the innermost range.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from types import MappingProxyType, TracebackType
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from layerprof.core import rownames
from layerprof.core.records import LayerRow
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec
from layerprof.roofline.verdicts import judge
from layerprof.walk.hooks import remove_all

__all__ = [
    "RANGE_PREFIX",
    "LayerTimer",
    "Measurement",
    "ModuleTimes",
    "RangeHooks",
    "Stopwatch",
    "Timings",
    "attribute_kernels",
    "check_counts",
    "glue_shares",
    "kernel_times",
    "measure",
    "median_iqr",
    "row_samples",
    "timed_rows",
]

logger = logging.getLogger(__name__)

#: Prefix of the ``record_function`` ranges opened around each module by :class:`RangeHooks`.
RANGE_PREFIX = "layerprof::"


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


def _timing_event() -> torch.cuda.Event:
    return torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]


def check_counts(warmup: object, repeat: object) -> None:
    """``warmup`` must be an int >= 0 and ``repeat`` an int >= 1; the message names the bad value."""
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise InvalidArgumentError(f"repeat must be an int >= 1, got {repeat!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise InvalidArgumentError(f"warmup must be an int >= 0, got {warmup!r}")


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
        self._cuda = self.device.type == "cuda"
        self._codes: list[int] = []  # module index on entry, its bitwise complement on exit
        self._clock_ns: list[int] = []  # CPU: perf_counter_ns, one per code
        self._pool: list[torch.cuda.Event] = []  # CUDA: events, the first _used recorded
        self._used = 0
        self._handles: list[RemovableHandle] = []
        self._forwards: list[_Forward] = []

    # -- hooks ---------------------------------------------------------------------------------------
    def attach(self) -> None:
        if self._handles:
            raise InvalidArgumentError("this LayerTimer is already attached")
        self.reserve(2 * len(self._modules))
        try:
            for code, module in enumerate(self._modules):
                enter, leave = self._cuda_hooks(code) if self._cuda else self._cpu_hooks(code)
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

    def _cpu_hooks(self, code: int) -> tuple[Callable[..., None], Callable[..., None]]:
        codes_append = self._codes.append
        clock_append = self._clock_ns.append
        clock = time.perf_counter_ns
        exit_code = ~code

        def enter(_module: nn.Module, _args: Any) -> None:
            codes_append(code)
            clock_append(clock())  # last, so that the bookkeeping is not in the module's time

        def leave(_module: nn.Module, _args: Any, _output: Any) -> None:
            clock_append(clock())  # first, for the same reason
            codes_append(exit_code)

        return enter, leave

    def _cuda_hooks(self, code: int) -> tuple[Callable[..., None], Callable[..., None]]:
        codes_append = self._codes.append
        record = self._record_event
        exit_code = ~code

        def enter(_module: nn.Module, _args: Any) -> None:
            codes_append(code)
            record()

        def leave(_module: nn.Module, _args: Any, _output: Any) -> None:
            record()
            codes_append(exit_code)

        return enter, leave

    def reserve(self, events: int) -> None:
        """CUDA: have at least ``events`` timing events ready (a forward records two per module call)."""
        if self._cuda:
            while len(self._pool) < events:
                self._pool.append(_timing_event())

    def _record_event(self) -> None:
        used = self._used
        if used == len(self._pool):  # more calls than reserved: grow (only in the first forwards)
            self._pool.append(_timing_event())
        self._pool[used].record()
        self._used = used + 1

    # -- samples -------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Turn what the hooks recorded into samples; call it between forwards, never inside one.

        On CUDA this is where the one synchronize happens and the events are read (and then reused).
        A forward that did not finish (it raised) is dropped.
        """
        if self._cuda:
            used = self._used
            if used:
                torch.cuda.synchronize(self.device)
                base = self._pool[0]
                times_ms = [base.elapsed_time(event) for event in self._pool[:used]]
            else:
                times_ms = []
            self._used = 0
        else:
            base_ns = self._clock_ns[0] if self._clock_ns else 0
            times_ms = [(ns - base_ns) / 1e6 for ns in self._clock_ns]  # ints first: no rounding
            self._clock_ns.clear()
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


class Stopwatch:
    """Times one call with no hooks: wall clock on the CPU, a pair of CUDA events on a GPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._events: tuple[torch.cuda.Event, torch.cuda.Event] | None = None
        if device.type == "cuda":
            self._events = (_timing_event(), _timing_event())

    def time_ms(self, call: Callable[[], object]) -> float:
        if self._events is not None:
            start, end = self._events
            start.record()
            call()
            end.record()
            torch.cuda.synchronize(self.device)
            return float(start.elapsed_time(end))
        began = time.perf_counter_ns()
        call()
        return (time.perf_counter_ns() - began) / 1e6


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
    check_counts(warmup, repeat)
    stopwatch = Stopwatch(timer.device)
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


def median_iqr(samples: Sequence[float]) -> tuple[float, float]:
    """Median and interquartile range (75th - 25th percentile, linear interpolation)."""
    if not samples:
        raise InvalidArgumentError("no samples to take a median of")
    if len(samples) == 1:
        return float(samples[0]), 0.0
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return median, q3 - q1


def glue_shares(rows: Sequence[LayerRow], targets: Sequence[DeviceSpec]) -> list[float]:
    """Each glue row's share of its container's self time: its roofline time on the first target
    (its bytes moved without a target) over the group's; equal shares when all weigh nothing."""
    if len(rows) == 1:
        return [1.0]
    if targets:
        weights = [judge(row, targets[:1]).roofline_time_ms or 0.0 for row in rows]
    else:
        weights = [float(row.bytes_total) for row in rows]
    total = sum(weights)
    if total <= 0:
        return [1.0 / len(rows)] * len(rows)
    return [weight / total for weight in weights]


def row_samples(
    rows: Sequence[LayerRow], timings: Timings, targets: Sequence[DeviceSpec]
) -> dict[str, tuple[float, ...]]:
    """Row name -> its time in each forward (ms), for the forward rows whose module was timed."""
    samples: dict[str, tuple[float, ...]] = {}
    glue: dict[str, list[LayerRow]] = {}
    for row in rows:
        if row.phase != "forward":
            continue
        owner, is_glue = rownames.split(row.name)
        if is_glue:
            glue.setdefault(owner, []).append(row)
        elif (module := timings.modules.get(owner)) is not None:
            samples[row.name] = module.total_ms
    for owner, members in glue.items():
        container = timings.modules.get(owner)
        if container is None:
            continue
        for row, share in zip(members, glue_shares(members, targets), strict=True):
            samples[row.name] = tuple(share * t for t in container.self_ms)
    return samples


def timed_rows(rows: Sequence[LayerRow], timings: Timings, targets: Sequence[DeviceSpec]) -> list[LayerRow]:
    """``rows`` with ``time_ms`` (median over forwards) and ``time_iqr_ms``; rows not timed keep None."""
    samples = row_samples(rows, timings, targets)
    result = []
    for row in rows:
        row_times = samples.get(row.name) if row.phase == "forward" else None
        if not row_times:
            result.append(row)
            continue
        median, iqr = median_iqr(row_times)
        result.append(replace(row, time_ms=median, time_iqr_ms=iqr))
    missing = [r.name for r in rows if r.phase == "forward" and r.name not in samples]
    if missing:
        logger.info(
            "%d rows were not timed (their module did not run while timed): %s", len(missing), missing
        )
    return result


# -- kernel times (CUDA, torch.profiler) -------------------------------------------------------------
class RangeHooks:
    """A ``record_function`` range named ``RANGE_PREFIX + module name`` around every module's forward."""

    def __init__(self, root: nn.Module, *, root_name: str = rownames.ROOT) -> None:
        self._named = [(name or root_name, module) for name, module in root.named_modules()]
        self._open: list[AbstractContextManager[Any]] = []
        self._handles: list[RemovableHandle] = []

    def attach(self) -> None:
        try:
            for name, module in self._named:
                self._handles.append(module.register_forward_pre_hook(self._enter_hook(RANGE_PREFIX + name)))
                self._handles.append(module.register_forward_hook(self._leave, prepend=True))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            remove_all(self._handles)
        finally:
            while self._open:  # a forward that raised left ranges open
                self._open.pop().__exit__(None, None, None)

    def _enter_hook(self, range_name: str) -> Callable[..., None]:
        def enter(_module: nn.Module, _args: Any) -> None:
            scope = torch.autograd.profiler.record_function(range_name)
            scope.__enter__()  # type: ignore[no-untyped-call]
            self._open.append(scope)

        return enter

    def _leave(self, _module: nn.Module, _args: Any, _output: Any) -> None:
        if self._open:
            self._open.pop().__exit__(None, None, None)


class _Kernel(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def duration(self) -> float: ...  # microseconds


class ProfilerEvent(Protocol):
    """The parts of ``torch.autograd.profiler_util.FunctionEvent`` that :func:`attribute_kernels` reads."""

    @property
    def name(self) -> str: ...

    @property
    def kernels(self) -> Sequence[_Kernel]: ...

    @property
    def cpu_parent(self) -> ProfilerEvent | None: ...


def _op_key(event_name: str) -> str:
    # The counter names glue rows after the op packet without its in-place underscore: aten::add_ -> add.
    name = event_name.removeprefix("aten::")
    return name.rstrip("_") or name


def attribute_kernels(
    events: Iterable[ProfilerEvent], rows: Sequence[LayerRow], targets: Sequence[DeviceSpec]
) -> dict[str, float]:
    """Row name -> milliseconds of device kernels it launched, from one profiled forward.

    Each kernel goes to the innermost range around the CPU event that launched it. A module row takes
    its range's kernels; in a container's range, a kernel goes to the glue row named after an aten op
    on its launch path (``layer1.0/add`` for ``aten::add_``), and kernels no glue row claims are split
    among the container's glue rows like its self time. Kernels outside every range are logged.
    """
    forward_rows = [row for row in rows if row.phase == "forward"]
    names = {row.name for row in forward_rows}
    glue: dict[str, list[LayerRow]] = {}
    for row in forward_rows:
        container, is_glue = rownames.split(row.name)
        if is_glue:
            glue.setdefault(container, []).append(row)
    kernel_us: dict[str, float] = defaultdict(float)
    unclaimed_us: dict[str, float] = defaultdict(float)
    outside_us = 0.0
    for event in events:
        kernels = getattr(event, "kernels", None)
        if not kernels or event.name.startswith(RANGE_PREFIX):
            continue  # device-side copies of a range's annotation are not kernels
        duration_us = float(sum(k.duration for k in kernels if not k.name.startswith(RANGE_PREFIX)))
        path = [event.name]
        owner: str | None = None
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith(RANGE_PREFIX):
                owner = parent.name.removeprefix(RANGE_PREFIX)
                break
            path.append(parent.name)
            parent = parent.cpu_parent
        if owner is None:
            outside_us += duration_us
        elif owner in names:
            kernel_us[owner] += duration_us
        elif owner in glue:
            claimed = next(
                (
                    rownames.glue(owner, _op_key(op))
                    for op in reversed(path)
                    if rownames.glue(owner, _op_key(op)) in names
                ),
                None,
            )
            if claimed is None:
                unclaimed_us[owner] += duration_us
            else:
                kernel_us[claimed] += duration_us
        else:
            outside_us += duration_us
    for owner, duration_us in unclaimed_us.items():
        for row, share in zip(glue[owner], glue_shares(glue[owner], targets), strict=True):
            kernel_us[row.name] += share * duration_us
    if outside_us:
        logger.info("%.1f us of kernels ran outside every row's range", outside_us)
    return {row.name: kernel_us.get(row.name, 0.0) / 1e3 for row in forward_rows}


def kernel_times(
    forward: Callable[[], object],
    root: nn.Module,
    rows: Sequence[LayerRow],
    targets: Sequence[DeviceSpec],
    *,
    device: torch.device,
    root_name: str = rownames.ROOT,
) -> dict[str, float]:
    """One ``forward`` of ``root`` under ``torch.profiler`` (CPU + CUDA activity); row -> kernel ms."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    ranges = RangeHooks(root, root_name=root_name)
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
        ranges.attach()
        try:
            forward()
        finally:
            ranges.close()
        torch.cuda.synchronize(device)
    return attribute_kernels(profiler.events(), rows, targets)
