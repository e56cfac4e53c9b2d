"""layerprof under ``torch.distributed``: each rank samples its own step, rank 0 gets one table.

Under DDP every rank runs :func:`layerprof.watch` (or :func:`layerprof.profile`) on its own model and
samples its own step. ``every`` counts forwards, and every rank runs the same forwards, so all ranks
sample the same step numbers. A :class:`RankGather` passed as ``gather=`` turns those per-rank
samples into one report on rank 0::

    watcher = layerprof.watch(ddp_model, every=100, gather=layerprof.RankGather())

**Gathering.** When a sample is over, every rank sends rank 0 its row times and counts (plain
numbers: no tensor, no model) with ``torch.distributed.gather_object``. Rank 0 builds one report:
the counts are rank 0's (DDP runs the same model on the same shapes everywhere, so they agree; they
are compared, and a disagreement is logged), each row's time is the median over the ranks, and
``report.ranks`` (:class:`~layerprof.report.facade.RankTimes`) keeps every rank's time of every row. Its
table adds the slowest rank's time and number, and flags the stragglers: rows whose slowest rank
takes more than ``straggler_threshold`` (1.2) times the median. Only rank 0's sink gets a report,
unless ``every_rank_sink=True``, when the other ranks' sinks get their own.

Before each gather a monitored barrier (gloo's; on another backend, on a gloo group made at the
first gather) waits for every rank, so that a rank that died or stopped sampling makes rank 0 raise
:class:`GatherError`, naming the ranks that did not answer, within the process group's timeout
(``init_process_group(timeout=...)``, or ``RankGather(timeout=...)``), instead of hanging.

**The all-reduce.** DDP accepts one communication hook per model, for the model's whole life: it
cannot be registered for one step and taken off. So :class:`RankGather` registers one thin hook when
the watcher is made (``ddp.register_comm_hook``). Outside the timing step of a sample it only calls
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

Limits: every rank must take the same samples; a sample one rank drops (its timed forward raised,
say) leaves the others waiting at the gather until the timeout. Watch the
``DistributedDataParallel`` module itself (its rows are ``module.conv1``, ...; its own forward work,
the buffer broadcast, is in ``(root)`` rows). ``gradient_as_bucket_view`` and ``static_graph`` make
no difference; ``no_sync()`` steps have no all-reduce, hence no row.
"""

from __future__ import annotations

import logging
import re
import statistics
import threading
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from types import MappingProxyType
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils._python_dispatch import _disable_current_modes, _get_current_dispatch_mode_stack

from layerprof.core import rownames
from layerprof.core.records import LayerRow, Phase
from layerprof.core.totals import total_row
from layerprof.errors import InvalidArgumentError, LayerprofError
from layerprof.report.facade import AllreduceTime, RankTimes, Report
from layerprof.roofline.verdicts import judge
from layerprof.walk.collect import OpCounter

__all__ = [
    "ALLREDUCE_ROW",
    "STRAGGLER_THRESHOLD",
    "GatherError",
    "RankGather",
    "RankRow",
    "RankSample",
    "configured_timeout",
    "hidden_ms",
    "merge_ranks",
    "ring_allreduce_bytes",
    "union_ms",
    "with_allreduce",
]

if dist.is_available():
    from torch._C._distributed_c10d import GradBucket  # torch.distributed's, which mypy cannot see

logger = logging.getLogger(__name__)

#: The name of the row of DDP's gradient all-reduce.
ALLREDUCE_ROW = rownames.ALLREDUCE
#: A row is a straggler when its slowest rank takes more than this times the median over the ranks.
STRAGGLER_THRESHOLD = 1.2


class GatherError(LayerprofError, RuntimeError):
    """A sample could not be gathered: a rank did not answer in time (it died or stopped sampling).

    ``missing_ranks`` names the ranks that did not answer, when the barrier could tell (else empty).
    """

    def __init__(self, message: str, missing_ranks: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.missing_ranks = missing_ranks


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
class _AllreduceClock:
    """The state of layerprof's comm hook on one DDP model: idle, or recording one timed backward.

    DDP keeps it for the model's life, so it holds no tensor between samples: the futures of a
    timed backward are dropped when the sample is read.
    """

    def __init__(self, process_group: Any) -> None:
        self.process_group = process_group
        self.recording = False
        self._lock = threading.Lock()
        self._cuda = False
        self._device: torch.device | None = None
        self._start_ns: list[int] = []
        self._end_ns: list[int | None] = []
        self._start_events: list[torch.cuda.Event] = []
        self._end_events: list[torch.cuda.Event | None] = []
        self._bytes: list[int] = []
        self._dtypes: set[str] = set()
        self._futures: list[torch.futures.Future[torch.Tensor]] = []
        self._backward_end_ns: int | None = None
        self._backward_end_event: torch.cuda.Event | None = None

    def start(self) -> None:
        self.clear()
        self.recording = True

    def backward_over(self) -> None:
        """The timed backward's last node ran: the end of the interval that can hide all-reduces."""
        if not self.recording:
            return
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
            event.record()
            self._backward_end_event = event
        else:
            self._backward_end_ns = time.perf_counter_ns()

    def clear(self) -> None:
        with self._lock:
            self.recording = False
            self._cuda, self._device = False, None
            self._start_ns, self._end_ns, self._start_events, self._end_events = [], [], [], []
            self._bytes, self._dtypes, self._futures = [], set(), []
            self._backward_end_ns, self._backward_end_event = None, None

    def run(self, bucket: GradBucket) -> torch.futures.Future[torch.Tensor]:
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        if not self.recording:
            return _out_of_counters_sight(lambda: allreduce_hook(self.process_group, bucket))
        buffer = bucket.buffer()
        cuda = buffer.is_cuda
        # The callback writes into this sample's lists, captured here: a sample dropped before its
        # all-reduces complete gets fresh lists, which a late callback must not touch.
        with self._lock:
            end_ns, end_events = self._end_ns, self._end_events
            index = len(self._bytes)
            self._bytes.append(buffer.numel() * buffer.element_size())
            self._dtypes.add(str(buffer.dtype).removeprefix("torch."))
            self._cuda, self._device = cuda, buffer.device
            if cuda:
                start = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
                self._start_events.append(start)
                end_events.append(None)
                start.record()
            else:
                end_ns.append(None)
                self._start_ns.append(time.perf_counter_ns())
        reduced = _out_of_counters_sight(lambda: allreduce_hook(self.process_group, bucket))

        def done(future: torch.futures.Future[torch.Tensor]) -> torch.Tensor:
            if cuda:  # the callback runs on a stream that waits for the collective
                end = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
                end.record()
                end_events[index] = end
            else:
                end_ns[index] = time.perf_counter_ns()
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
                time_iqr_ms=0.0,
            )
            return row, AllreduceTime(
                buckets=len(self._bytes), payload_bytes=payload, time_ms=union, hidden_ms=hidden
            )
        finally:
            self.clear()

    def _intervals_ms(self) -> tuple[list[tuple[float, float]], float | None]:
        """Each bucket's (start, end) and the backward's end, in ms on one clock."""
        if self._cuda:
            torch.cuda.synchronize(self._device)
            origin = self._start_events[0]
            intervals = [
                (float(origin.elapsed_time(start)), float(origin.elapsed_time(end)))
                for start, end in zip(self._start_events, self._end_events, strict=True)
                if end is not None
            ]
            mark = self._backward_end_event
            return intervals, None if mark is None else float(origin.elapsed_time(mark))
        intervals = [
            (start / 1e6, end / 1e6)
            for start, end in zip(self._start_ns, self._end_ns, strict=True)
            if end is not None
        ]
        mark_ns = self._backward_end_ns
        return intervals, None if mark_ns is None else mark_ns / 1e6


def _out_of_counters_sight(
    call: Callable[[], torch.futures.Future[torch.Tensor]],
) -> torch.futures.Future[torch.Tensor]:
    """Run ``call`` with the dispatch modes off when a layerprof counter is among them: the
    all-reduce has a row of its own and must not be charged to the layer whose node made the bucket."""
    if any(isinstance(mode, OpCounter) for mode in _get_current_dispatch_mode_stack()):
        with _disable_current_modes():
            return call()
    return call()


def _timed_allreduce_hook(state: _AllreduceClock, bucket: GradBucket) -> torch.futures.Future[torch.Tensor]:
    """layerprof's DDP comm hook: DDP's own all-reduce, timed during a sample's timing step."""
    return state.run(bucket)


# DDP compares the hook's annotations with the classes themselves; postponed annotations are strings.
if dist.is_available():
    _timed_allreduce_hook.__annotations__ = typing.get_type_hints(_timed_allreduce_hook)


def _clock_of(model: nn.Module) -> _AllreduceClock | None:
    """layerprof's clock on a DDP ``model``: the one already registered (a watcher made earlier), a
    new one registered now, or None (not DDP, or the model carries another comm hook)."""
    from torch.nn.parallel import DistributedDataParallel

    if not isinstance(model, DistributedDataParallel):
        logger.info("layerprof: %s is not DistributedDataParallel: no all-reduce row", type(model).__name__)
        return None
    for hook, state in getattr(model, "_comm_hooks", ()):
        if hook is _timed_allreduce_hook and isinstance(state, _AllreduceClock):
            return state
    clock = _AllreduceClock(model.process_group)
    try:
        model.register_comm_hook(clock, _timed_allreduce_hook)
    except RuntimeError as error:  # DDP takes one comm hook, and this model has one
        logger.warning("layerprof: DDP's all-reduce is not timed (no (ddp)/allreduce row): %s", error)
        return None
    return clock


# -- what a rank sends -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RankRow:
    """One row of a rank's sample: its key, its times, and the counts rank 0 checks against its own."""

    phase: Phase
    name: str
    time_ms: float | None
    time_iqr_ms: float | None
    flops: int
    bytes_total: int


@dataclass(frozen=True, slots=True)
class RankSample:
    """One rank's sample as plain numbers: what travels to rank 0 (a Report holds a weak reference
    to the model and read-only mappings, which do not pickle)."""

    rank: int
    step: int
    rows: tuple[RankRow, ...]
    total_ms: float | None
    allreduce: AllreduceTime | None

    @staticmethod
    def of(report: Report, rank: int, step: int) -> RankSample:
        rows = tuple(
            RankRow(r.phase, r.name, r.time_ms, r.time_iqr_ms, r.flops, r.bytes_total) for r in report.layers
        )
        return RankSample(rank, step, rows, report.total.time_ms, report.allreduce)


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _check_counts(samples: Sequence[RankSample]) -> None:
    """Log the first row whose counts differ between rank 0 and another rank."""
    reference = {(r.phase, r.name): (r.flops, r.bytes_total) for r in samples[0].rows}
    for sample in samples[1:]:
        if sample.step != samples[0].step:
            logger.warning(
                "layerprof: rank %d sampled step %d, rank 0 step %d",
                sample.rank,
                sample.step,
                samples[0].step,
            )
        for row in sample.rows:
            counts = reference.get((row.phase, row.name))
            if counts != (row.flops, row.bytes_total):
                logger.warning(
                    "layerprof: the counts of %s row %s differ on rank %d (%s FLOPs, %s bytes) from "
                    "rank 0's (%s); the gathered report keeps rank 0's",
                    row.phase, row.name, sample.rank, row.flops, row.bytes_total, counts,
                )  # fmt: skip
                break


def merge_ranks(
    report: Report, samples: Sequence[RankSample], *, straggler_threshold: float = STRAGGLER_THRESHOLD
) -> Report:
    """Rank 0's ``report`` with every rank's times: row times become medians over the ranks and
    ``report.ranks`` keeps each rank's (``samples`` in rank order, rank 0's first)."""
    _check_counts(samples)
    by_rank = [{(r.phase, r.name): r for r in sample.rows} for sample in samples]
    rows_ms: dict[tuple[Phase, str], tuple[float | None, ...]] = {}
    rows = []
    for row in report.layers:
        key = (row.phase, row.name)
        ranked = [rank_rows.get(key) for rank_rows in by_rank]
        times = tuple(None if r is None else r.time_ms for r in ranked)
        rows_ms[key] = times
        iqr = _median([None if r is None else r.time_iqr_ms for r in ranked])
        rows.append(replace(row, time_ms=_median(times), time_iqr_ms=iqr))
    totals = tuple(sample.total_ms for sample in samples)
    ranks = RankTimes(
        world_size=len(samples),
        rows_ms=MappingProxyType(rows_ms),
        total_ms=totals,
        straggler_threshold=straggler_threshold,
    )
    allreduce = _median_allreduce([s.allreduce for s in samples])
    return _rebuilt(report, rows, _median(totals), ranks=ranks, allreduce=allreduce)


def _median_allreduce(values: Sequence[AllreduceTime | None]) -> AllreduceTime | None:
    known = [v for v in values if v is not None]
    if not known:
        return None
    return AllreduceTime(
        buckets=known[0].buckets,
        payload_bytes=known[0].payload_bytes,
        time_ms=statistics.median(v.time_ms for v in known),
        hidden_ms=statistics.median(v.hidden_ms for v in known),
    )


def _rebuilt(report: Report, rows: Sequence[LayerRow], total_ms: float | None, **fields: Any) -> Report:
    """``report`` with new rows: verdicts, totals and coverage worked out again (as build_report)."""
    judged = [judge(row, report.targets, timed_on=report.timed_on) for row in rows]
    total = total_row(judged, kind=report.total.kind, time_ms=total_ms)
    total = judge(total, report.targets, rows=judged, timed_on=report.timed_on)
    timed = [r.time_ms for r in judged if r.time_ms is not None]
    coverage = sum(timed) / total_ms if timed and total_ms else None
    return replace(report, layers=tuple(judged), total=total, coverage=coverage, **fields)


def with_allreduce(report: Report, row: LayerRow, times: AllreduceTime) -> Report:
    """``report`` with the all-reduce row; the step ends when the last all-reduce does, so the
    end-to-end time grows by the part the backward did not hide."""
    total_ms = report.total.time_ms
    if total_ms is not None:
        total_ms += times.time_ms - times.hidden_ms
    kinds = MappingProxyType({**report.module_kinds, rownames.ALLREDUCE_CONTAINER: row.kind})
    return _rebuilt(report, [*report.layers, row], total_ms, allreduce=times, module_kinds=kinds)


# -- the public face -------------------------------------------------------------------------------
_MISSING = re.compile(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier")


def _check_threshold(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1.0:
        raise InvalidArgumentError(f"straggler_threshold must be a number >= 1, got {value!r}")
    return float(value)


class RankGather:
    """Gather the samples of every rank to rank 0 and time DDP's all-reduce (see the module doc).

    Pass one to ``layerprof.watch(ddp_model, gather=RankGather())`` (one per watcher) or to
    ``layerprof.profile(model, inputs, gather=RankGather())``. Without ``torch.distributed``
    initialised, or with one rank, nothing is gathered (the all-reduce row is still added).

    ``straggler_threshold``: slowest rank / median above which a row is flagged (default 1.2).
    ``every_rank_sink``: the other ranks' sinks get their own (ungathered) reports too.
    ``time_allreduce``: register the comm hook that times DDP's all-reduce (a watched DDP model).
    ``timeout``: how long rank 0 waits for the others at a gather (default: the process group's).
    """

    def __init__(
        self,
        *,
        straggler_threshold: float = STRAGGLER_THRESHOLD,
        every_rank_sink: bool = False,
        time_allreduce: bool = True,
        timeout: timedelta | None = None,
    ) -> None:
        self.straggler_threshold = _check_threshold(straggler_threshold)
        for name, flag in (("every_rank_sink", every_rank_sink), ("time_allreduce", time_allreduce)):
            if not isinstance(flag, bool):
                raise InvalidArgumentError(f"{name} must be True or False, got {flag!r}")
        if timeout is not None and (not isinstance(timeout, timedelta) or timeout <= timedelta(0)):
            raise InvalidArgumentError(f"timeout must be a positive datetime.timedelta, got {timeout!r}")
        self.every_rank_sink = every_rank_sink
        self.time_allreduce = time_allreduce
        self.timeout = timeout
        self._clock: _AllreduceClock | None = None
        self._attached = False
        self._barrier_group: Any = None  # a gloo group for the barrier and the gather, when made

    def __repr__(self) -> str:
        return (
            f"RankGather(straggler_threshold={self.straggler_threshold}, "
            f"every_rank_sink={self.every_rank_sink}, time_allreduce={self.time_allreduce})"
        )

    # -- what a Watcher calls ------------------------------------------------------------------------
    def attach(self, model: nn.Module) -> None:
        """The watcher of ``model`` is made: register (or find) the comm hook on a DDP model."""
        if self._attached:
            raise InvalidArgumentError("this RankGather already serves a watcher; give each watcher its own")
        self._attached = True
        if self.time_allreduce and dist.is_available():
            self._clock = _clock_of(model)

    def timing_started(self) -> None:
        if self._clock is not None:
            self._clock.start()

    def backward_over(self) -> None:
        if self._clock is not None:
            self._clock.backward_over()

    def dropped(self) -> None:
        """The sample in flight was dropped: stop recording."""
        if self._clock is not None:
            self._clock.clear()

    def close(self) -> None:
        """The watcher is removed: the comm hook stays on the model (DDP cannot take it off) and idles."""
        if self._clock is not None:
            self._clock.clear()
            self._clock = None

    @property
    def feeds_sink(self) -> bool:
        """Whether this rank's sink gets the reports: rank 0's, or every rank's with every_rank_sink."""
        return self.every_rank_sink or _rank_and_size()[0] == 0

    # -- what watch() and profile() call -------------------------------------------------------------
    def finish(self, report: Report, step: int) -> Report:
        """This rank's sample is over: the all-reduce row added, then the gather (a collective every
        rank must reach). Returns the gathered report on rank 0, this rank's own elsewhere."""
        rank, world_size = _rank_and_size()
        if self._clock is not None:
            measured = self._clock.read(world_size)
            if measured is not None:
                report = with_allreduce(report, *measured)
        if world_size == 1:
            return report
        samples = self._gather(RankSample.of(report, rank, step), rank, world_size, step)
        if samples is None:
            return report
        return merge_ranks(report, samples, straggler_threshold=self.straggler_threshold)

    def _gather(self, sample: RankSample, rank: int, world_size: int, step: int) -> list[RankSample] | None:
        group = self._group()
        try:
            timeout = self.timeout or configured_timeout(group)
            dist.monitored_barrier(group=group, timeout=timeout, wait_all_ranks=True)
        except RuntimeError as error:
            missing = _missing_ranks(str(error))
            who = f"rank {', '.join(map(str, missing))}" if missing else "a rank"
            raise GatherError(
                f"layerprof: rank {rank} could not gather the sample of step {step}: {who} did not reach "
                f"it (died, or stopped sampling). torch.distributed said: {error}",
                missing,
            ) from error
        gathered: list[Any] | None = [None] * world_size if rank == 0 else None
        try:
            dist.gather_object(sample, gathered, dst=0, group=group)
        except RuntimeError as error:
            raise GatherError(
                f"layerprof: rank {rank} could not gather the sample of step {step}: {error}"
            ) from error
        if gathered is None:
            return None
        return sorted(typing.cast(list[RankSample], gathered), key=lambda s: s.rank)

    def _group(self) -> Any:
        """The group to gather over: the default one on gloo, else a gloo group made now (every rank
        reaches its first gather together), whose barrier can name a missing rank."""
        if dist.get_backend() == dist.Backend.GLOO:
            return None
        if self._barrier_group is None:
            self._barrier_group = dist.new_group(
                backend="gloo", timeout=self.timeout or configured_timeout(None)
            )
        return self._barrier_group


def configured_timeout(group: Any) -> timedelta | None:
    """The timeout ``group`` (None: the default group) was made with, e.g. by
    ``init_process_group(timeout=...)``; None when torch does not say. (A monitored barrier given no
    timeout waits torch's default, 30 minutes, whatever the group was made with.)"""
    process_group = dist.group.WORLD if group is None else group
    if process_group is None:
        return None
    for device in ("cpu", "cuda"):
        try:
            timeout = process_group._get_backend(torch.device(device)).options._timeout
        except (AttributeError, RuntimeError):
            continue
        if isinstance(timeout, timedelta):
            return timeout
    return None


def _rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _missing_ranks(message: str) -> tuple[int, ...]:
    found = _MISSING.search(message)
    if found is None:
        return ()
    return tuple(int(part) for part in found.group(1).replace(",", " ").split())


def default_gather(gather: object) -> Any:
    """``gather`` as watch() and profile() take it: ``None`` gathers (with a fresh
    :class:`RankGather`) exactly when ``torch.distributed`` runs with more than one rank; ``True``
    always does (one rank gathers to itself); ``False`` never gathers; anything else is used as given."""
    if gather is False:
        return None
    if gather is True:
        return RankGather()
    if gather is None:
        running = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        return RankGather() if running else None
    return gather
