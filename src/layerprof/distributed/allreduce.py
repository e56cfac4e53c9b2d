"""DDP's gradient all-reduce, timed: layerprof's comm hook, the buckets' intervals, the ring's bytes.

DDP accepts one communication hook per model, for the model's whole life: it cannot be registered
for one step and taken off. So :class:`~layerprof.distributed.gather.RankGather` registers one thin
hook when the watcher is made (``ddp.register_comm_hook``). Outside the timing step of a sample it only calls
``allreduce_hook``, DDP's own all-reduce as a hook (divide by the world size, all-reduce: the same
arithmetic as DDP's built-in one). During the timing step it also reads a clock when each bucket is
handed over and when its future completes (``time.perf_counter_ns`` on the CPU; CUDA events on a
GPU, the end one recorded where the future's callback runs, on a stream synchronised with the
collective). The sample gets a row of its own, ``(ddp)/allreduce`` (phase ``backward``, one call per
bucket): its time is the union of the buckets' intervals (how long some all-reduce was in flight);
its bytes are the network traffic of a ring all-reduce, each rank sending and receiving
``2 (N - 1) / N`` times the bucket's bytes (``bytes_read`` sent, ``bytes_written`` received).
``report.allreduce`` (:class:`~layerprof.report.facade.AllreduceTime`) says how much of that time fell
before the backward's last node ended: the part the backward hides. The step's end-to-end time
grows by the rest. In the counting step the all-reduce runs out of the counter's sight, so no layer
row is charged for it. A model that already has a comm hook (fp16 compression, PowerSGD) keeps it,
and its all-reduce is not timed.

The clock is :mod:`layerprof.timing.clocks`' for the device of a sample's first bucket.
"""

from __future__ import annotations

import logging
import threading
import typing
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils._python_dispatch import _disable_current_modes, _get_current_dispatch_mode_stack

from layerprof.core import rownames
from layerprof.core.records import LayerRow
from layerprof.report.facade import AllreduceTime
from layerprof.timing.clocks import Clock, CpuClock, Stamp, clock_for
from layerprof.walk.collect import OpCounter

__all__ = [
    "ALLREDUCE_ROW",
    "AllreduceRecorder",
    "hidden_ms",
    "recorder_of",
    "ring_allreduce_bytes",
    "union_ms",
]

if dist.is_available():
    from torch._C._distributed_c10d import GradBucket  # torch.distributed's, which mypy cannot see

logger = logging.getLogger(__name__)

#: The name of the row of DDP's gradient all-reduce.
ALLREDUCE_ROW = rownames.ALLREDUCE


def ring_allreduce_bytes(payload_bytes: int, world_size: int) -> tuple[int, int]:
    """Bytes one rank sends and receives in a ring all-reduce of ``payload_bytes`` over
    ``world_size`` ranks: ``2 (N - 1) / N x payload`` each way (N - 1 reduce-scatter steps and
    N - 1 all-gather steps, each moving 1/N of the buffer)."""
    moved = 2 * (world_size - 1) * payload_bytes // world_size
    return moved, moved


# -- intervals -------------------------------------------------------------------------------------
def union_ms(intervals: Sequence[tuple[float, float]]) -> float:
    """Length of the union of ``(start, end)`` intervals: how long at least one was open."""
    total = 0.0
    reach = float("-inf")
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


def hidden_ms(intervals: Sequence[tuple[float, float]], until: float) -> float:
    """The part of the union of ``intervals`` that lies before ``until``."""
    return union_ms([(start, min(end, until)) for start, end in intervals if start < until])


# -- the comm hook ---------------------------------------------------------------------------------
class AllreduceRecorder:
    """The state of layerprof's comm hook on one DDP model: idle, or recording one timed backward.

    DDP keeps it for the model's life, so it holds no tensor between samples: the futures of a
    timed backward are dropped when the sample is read.
    """

    def __init__(self, process_group: Any) -> None:
        self.process_group = process_group
        self.recording = False
        self._lock = threading.Lock()
        self._clock: Clock = CpuClock()  # the buckets' clock, chosen at a sample's first bucket
        self._starts: list[Stamp] = []
        self._ends: list[Stamp | None] = []
        self._bytes: list[int] = []
        self._dtypes: set[str] = set()
        self._futures: list[torch.futures.Future[torch.Tensor]] = []
        # The backward's end, with the clock that stamped it: one taken before the first bucket (on
        # the CPU clock) is on no axis the buckets' CUDA events share.
        self._backward_end: tuple[Clock, Stamp] | None = None

    def start(self) -> None:
        self.clear()
        self.recording = True

    def backward_over(self) -> None:
        """The timed backward's last node ran: the end of the interval that can hide all-reduces."""
        if not self.recording:
            return
        clock = self._clock
        self._backward_end = (clock, clock.stamp())

    def clear(self) -> None:
        with self._lock:
            self.recording = False
            self._clock = CpuClock()
            self._starts, self._ends = [], []
            self._bytes, self._dtypes, self._futures = [], set(), []
            self._backward_end = None

    def run(self, bucket: GradBucket) -> torch.futures.Future[torch.Tensor]:
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        if not self.recording:
            return _out_of_counters_sight(lambda: allreduce_hook(self.process_group, bucket))
        buffer = bucket.buffer()
        # The callback writes into this sample's list, captured here: a sample dropped before its
        # all-reduces complete gets a fresh list, which a late callback must not touch.
        with self._lock:
            ends = self._ends
            index = len(self._bytes)
            if index == 0:
                self._clock = clock_for(buffer.device)
            clock = self._clock
            self._bytes.append(buffer.numel() * buffer.element_size())
            self._dtypes.add(str(buffer.dtype).removeprefix("torch."))
            ends.append(None)
            self._starts.append(clock.stamp())
        reduced = _out_of_counters_sight(lambda: allreduce_hook(self.process_group, bucket))

        def done(future: torch.futures.Future[torch.Tensor]) -> torch.Tensor:
            # On CUDA the callback runs on a stream that waits for the collective.
            ends[index] = clock.stamp()
            return future.value()

        timed = reduced.then(done)
        with self._lock:
            self._futures.append(timed)
        return timed

    def read(self, world_size: int) -> tuple[LayerRow, AllreduceTime] | None:
        """The all-reduce row and times of the backward recorded (None when no bucket was reduced);
        waits for the buckets' all-reduces to complete. Recording stops and the state is cleared."""
        self.recording = False
        try:
            if not self._bytes:
                return None
            for future in self._futures:
                future.wait()
            intervals, backward_end = self._intervals_ms()
            union = union_ms(intervals)
            # No end of the backward: a step whose backward was not timed; nothing is known hidden.
            hidden = hidden_ms(intervals, backward_end) if backward_end is not None else 0.0
            payload = sum(self._bytes)
            sent, received = ring_allreduce_bytes(payload, world_size)
            dtype = next(iter(self._dtypes)) if len(self._dtypes) == 1 else None
            row = LayerRow(
                name=ALLREDUCE_ROW,
                kind="allreduce",
                phase="backward",
                depth=rownames.depth(ALLREDUCE_ROW),
                calls=len(self._bytes),
                dtype=dtype,
                bytes_read=sent,
                bytes_written=received,
                time_ms=union,
                time_iqr_ms=None,  # one backward: no spread
            )
            return row, AllreduceTime(
                buckets=len(self._bytes), payload_bytes=payload, time_ms=union, hidden_ms=hidden
            )
        finally:
            self.clear()

    def _intervals_ms(self) -> tuple[list[tuple[float, float]], float | None]:
        """Each bucket's (start, end) and the backward's end, in ms after the first bucket's start."""
        clock = self._clock
        clock.synchronize()
        origin = self._starts[0]
        intervals = [
            (clock.elapsed_ms(origin, start), clock.elapsed_ms(origin, end))
            for start, end in zip(self._starts, self._ends, strict=True)
            if end is not None
        ]
        mark = self._backward_end
        if mark is None or mark[0] is not clock:
            return intervals, None
        return intervals, clock.elapsed_ms(origin, mark[1])


def _out_of_counters_sight(
    call: Callable[[], torch.futures.Future[torch.Tensor]],
) -> torch.futures.Future[torch.Tensor]:
    """Run ``call`` with the dispatch modes off when a layerprof counter is among them: the
    all-reduce has a row of its own and must not be charged to the layer whose node made the bucket."""
    if any(isinstance(mode, OpCounter) for mode in _get_current_dispatch_mode_stack()):
        with _disable_current_modes():
            return call()
    return call()


def _timed_allreduce_hook(state: AllreduceRecorder, bucket: GradBucket) -> torch.futures.Future[torch.Tensor]:
    """layerprof's DDP comm hook: DDP's own all-reduce, timed during a sample's timing step."""
    return state.run(bucket)


# DDP compares the hook's annotations with the classes themselves; postponed annotations are strings.
if dist.is_available():
    _timed_allreduce_hook.__annotations__ = typing.get_type_hints(_timed_allreduce_hook)


def recorder_of(model: nn.Module) -> AllreduceRecorder | None:
    """layerprof's recorder on a DDP ``model``: the one already registered (a watcher made earlier), a
    new one registered now, or None (not DDP, or the model carries another comm hook)."""
    from torch.nn.parallel import DistributedDataParallel

    if not isinstance(model, DistributedDataParallel):
        logger.info("layerprof: %s is not DistributedDataParallel: no all-reduce row", type(model).__name__)
        return None
    for hook, state in getattr(model, "_comm_hooks", ()):
        if hook is _timed_allreduce_hook and isinstance(state, AllreduceRecorder):
            return state
    recorder = AllreduceRecorder(model.process_group)
    try:
        model.register_comm_hook(recorder, _timed_allreduce_hook)
    except RuntimeError as error:  # DDP takes one comm hook, and this model has one
        logger.warning("layerprof: DDP's all-reduce is not timed (no (ddp)/allreduce row): %s", error)
        return None
    return recorder
