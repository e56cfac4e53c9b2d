"""``layerprof.watch``: a per-layer table, forward and backward, every N steps of a training run.

A :class:`Watcher` puts one hook on the model: a forward pre-hook on the root that counts forwards.
Nothing else is installed between samples. On every ``every``-th forward (the ``every``-th,
``2 * every``-th, ... counting from 1) it samples that training step in two consecutive steps, so
that the counter never pollutes the times:

1. **Counting step** (step *k*): a :class:`~layerprof.walk.collect.Collector` on every module and the
   dispatch-mode counter (:class:`~layerprof.walk.collect.OpCounter`) price every aten op, forward and
   backward. The root pre-hook enters the mode (``mode.__enter__()``); the collector's module hooks
   come off when the root's forward returns; the mode stays on through the loss and the backward,
   whose ops are charged to the row of the forward op that made each autograd node. Nothing is timed.
2. **Timing step** (the next forward of the same kind: same ``training`` flag, grad mode, autocast
   state and input shapes; forwards of another kind in between, such as validation, are let through
   untouched): :class:`~layerprof.timing.layers.LayerTimer` hooks time each module's forward and
   :class:`~layerprof.timing.backward.BackwardTimer` hooks on the autograd nodes time the backward,
   row by row (how nodes are matched to rows is explained in :mod:`layerprof.timing.backward`).
   Nothing is counted.

The report (forward rows with their times, backward rows with their backward times) is built and
handed to the sink when the timing step is over; the counts of step *k* go with the times of step
*k + 1*. A sample is one forward and its backward, not one optimizer step, so gradient accumulation
(several forwards and backwards per ``optimizer.step()``) samples micro-batches.

**When a step is over.** When the forward runs with grad disabled or none of its outputs needs a
gradient (an eval step), the step ends when the root's forward returns, and the sample has no backward
rows. Otherwise it ends when the backward through the model's outputs is over: a pre-hook on the
first node to run queues an engine callback (``Variable._execution_engine.queue_callback``). When no
backward comes (validation with grad enabled), the step ends when the next forward of the model
starts. The dispatch mode of the counting step can only leave the mode stack on the thread that
entered it and outside the engine, so after its backward it stays on the stack, passing ops through
untouched, until the next forward starts (or :meth:`Watcher.flush` / :meth:`Watcher.remove` is
called). Likewise, when the engine ends a CUDA backward on one of its device threads, the report is
emitted on the training thread at the next forward, :meth:`Watcher.flush` or :meth:`Watcher.remove`.

**Across ranks.** Under ``torch.distributed`` each rank samples its own step. A ``gather`` helper
(:class:`layerprof.RankGather`, see :mod:`layerprof.distributed.gather`) is told when each timing step starts
and when its backward's last node ran, and turns the finished report into what this rank's sink gets:
one report gathered from every rank on rank 0, with a row for DDP's gradient all-reduce.

Limits: one forward is one sample, so a model called twice before one backward (two inputs through
one network) is sampled without its backward; a forward whose control flow depends on its data gets
its backward untimed (and says so in the log); a backward called on another thread than the counted
forward is not counted (the mode is per thread); checkpointed (recomputed) forwards are not supported.
"""

from __future__ import annotations

import enum
import logging
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Protocol

import torch
from torch import nn
from torch._C._autograd import _get_sequence_nr
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack
from torch.utils._pytree import tree_leaves
from torch.utils.hooks import RemovableHandle

from layerprof.api.sinks import ReportSink, SinkArg, log_table, resolve_sink
from layerprof.core.records import LayerRow
from layerprof.distributed.gather import default_gather
from layerprof.errors import InvalidArgumentError, InvalidModelError
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.targets import TargetArg, resolve_targets
from layerprof.report.assemble import build_report, local_targets
from layerprof.report.facade import Report
from layerprof.timing.backward import BackwardTimer, NodeRows
from layerprof.timing.layers import LayerTimer
from layerprof.timing.rows import timed_rows
from layerprof.walk.collect import ROOT_NAME, Collector, OpCounter
from layerprof.walk.hooks import remove_all
from layerprof.walk.inputs import InputSpec, describe, model_device

__all__ = ["Watcher", "watch"]

logger = logging.getLogger(__name__)  # "layerprof.api.watch": where the tables go by default


class SampleTap(Protocol):
    """What a :class:`Watcher` tells a ``gather`` helper (:class:`layerprof.RankGather` is one)."""

    def attach(self, model: nn.Module) -> None: ...  # the watcher is made
    def timing_started(self) -> None: ...  # a timing step's forward starts
    def backward_over(self) -> None: ...  # its backward's last node ran (an engine callback)
    def dropped(self) -> None: ...  # the sample in flight was dropped
    def close(self) -> None: ...  # the watcher is removed

    @property
    def feeds_sink(self) -> bool: ...  # whether this process's sink gets the reports

    def finish(self, report: Report, step: int) -> Report: ...  # this process's report of a sample


_TAP_METHODS = ("attach", "timing_started", "backward_over", "dropped", "close", "finish")


class _Phase(enum.Enum):
    COUNT_FORWARD = "count forward"  # the counter is on and the collector's module hooks are
    COUNT_BACKWARD = "count backward"  # the counted forward is over, its backward may come
    ARMED = "armed"  # the counts are in; the timer's hooks wait for a forward of the same kind
    TIME_FORWARD = "time forward"
    TIME_BACKWARD = "time backward"


@dataclass(frozen=True, slots=True)
class _StepKind:
    """What a timed step must share with the counted one for the counts to describe it."""

    training: bool
    grad_enabled: bool
    autocast: tuple[tuple[str, bool, str], ...]
    inputs: InputSpec


class _StepCounter(OpCounter):  # type: ignore[no-untyped-call]
    """The counter of one counting step; once the step is over it passes every op through untouched
    until it can leave the mode stack (see the module docstring)."""

    def __init__(self, collector: Collector) -> None:
        super().__init__(collector, fast_meta=False)  # real kernels: training goes on with the results
        self.counting = True

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        if self.counting:
            return super().__torch_dispatch__(func, types, args, kwargs)
        return func(*args, **(kwargs or {}))


class _Sample:
    """One sample in flight (internal, mutable, dropped when it is emitted or abandoned)."""

    def __init__(self, step: int, kind: _StepKind, device: torch.device, collector: Collector) -> None:
        self.step = step
        self.kind = kind
        self.device = device
        self.phase = _Phase.COUNT_FORWARD
        self.collector: Collector | None = collector
        self.counter: _StepCounter | None = None
        self.counter_thread = threading.get_ident()
        self.base_sequence_nr = 0
        self.handles: list[RemovableHandle] = []  # this sample's root forward hook, counted-output pre-hooks
        self.counted_forward = False
        self.counted_backward = False  # its backward reached the model (the end callback is queued)
        self.counted_backward_over = False
        # filled when the counting step is over
        self.rows: list[LayerRow] | None = None
        self.unsupported: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        self.node_rows: NodeRows | None = None
        # the timing step
        self.timer: LayerTimer | None = None
        self.skipping = False  # a forward of another kind runs; the timer comes back after it
        self.waited = 0  # forwards of another kind let through
        self.timed_forward = False
        self.backward_timer: BackwardTimer | None = None
        self.timing_thread = 0


def _autocast_state(device_types: tuple[str, ...]) -> tuple[tuple[str, bool, str], ...]:
    state = []
    for device_type in device_types:
        try:
            enabled = torch.is_autocast_enabled(device_type)
            dtype = str(torch.get_autocast_dtype(device_type))
        except (TypeError, RuntimeError):  # torch < 2.4 has no per-device-type query
            enabled, dtype = False, ""
        state.append((device_type, enabled, dtype))
    return tuple(state)


def _grad_outputs(output: Any) -> list[torch.Tensor]:
    return [
        t
        for t in tree_leaves(output)
        if isinstance(t, torch.Tensor) and t.requires_grad and t.grad_fn is not None
    ]


def _check_every(every: object) -> int:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise InvalidArgumentError(f"every must be an int >= 1, got {every!r}")
    return every


class Watcher:
    """Samples a training step of ``model`` every ``every`` forwards (see :mod:`layerprof.api.watch`).

    ``sink`` is called with each sample's report and the index of its counted forward (1-based);
    None logs the table (:func:`log_table`). :func:`layerprof.watch` makes one from friendlier
    arguments (``print``, a file path, a callable taking the report).

    ``gather`` (a :class:`SampleTap`, such as :class:`layerprof.RankGather`) gathers the samples of
    every rank of a distributed run: the sink gets what its ``finish`` returns, where ``feeds_sink``.

    ``forwards`` counts the model's forwards seen, ``samples`` the reports emitted, ``last_report`` is
    the latest one (None before the first). ``remove()`` takes every hook off, a sample in flight
    included; ``with layerprof.watch(model) as watcher:`` does it at the end of the block.

    Threads: samples belong to the thread that runs the model's first forward; forwards on other
    threads are neither counted nor sampled, and must not run while a sample is in flight (they
    would pass through its per-layer hooks). Call ``remove()`` and ``flush()`` on the training
    thread: a counting mode can only leave the dispatch-mode stack of the thread it entered.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        every: int = 100,
        target: TargetArg = "auto",
        backward: bool = True,
        sink: ReportSink | None = None,
        gather: SampleTap | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InvalidModelError(
                f"model must be a torch.nn.Module, got {type(model).__name__}: {model!r:.80}"
            )
        self.model = model
        self.every = _check_every(every)
        if not isinstance(backward, bool):
            raise InvalidArgumentError(f"backward must be True or False, got {backward!r}")
        self.backward = backward
        self.targets: tuple[DeviceSpec, ...] = resolve_targets(target)
        if sink is not None and not callable(sink):
            raise InvalidArgumentError(f"sink must be callable, got {type(sink).__name__}: {sink!r:.80}")
        self._sink: ReportSink = log_table if sink is None else sink
        if gather is not None and not all(callable(getattr(gather, m, None)) for m in _TAP_METHODS):
            raise InvalidArgumentError(
                f"gather must be a layerprof.RankGather (with {', '.join(_TAP_METHODS)}), got {gather!r:.80}"
            )
        self._gather = gather
        self.forwards = 0
        self._thread: int | None = None
        self.samples = 0
        self.last_report: Report | None = None
        self._sample: _Sample | None = None
        self._stranded: list[tuple[_StepCounter, int]] = []  # counters that could not leave the stack yet
        self._in_callback = False  # inside an engine callback, where the mode stack must not be touched
        self._hook: RemovableHandle | None = model.register_forward_pre_hook(
            self._on_forward, with_kwargs=True
        )
        if gather is not None:
            try:
                gather.attach(model)
            except BaseException:
                self._gather = None  # it did not take this watcher on: not ours to close
                self.remove()
                raise

    # -- public --------------------------------------------------------------------------------------
    @property
    def attached(self) -> bool:
        return self._hook is not None

    @property
    def in_flight(self) -> bool:
        """Whether a sample has started and not been emitted (or abandoned) yet."""
        return self._sample is not None

    def flush(self) -> None:
        """Finish on this thread what the engine could not: take the counter of a counting step whose
        backward is over off the mode stack, emit a timing step whose backward is over. Optional (the
        next forward does it); call it from the training thread, e.g. after ``loss.backward()``."""
        self._retry_stranded()
        sample = self._sample
        if sample is None:
            return
        if sample.phase is _Phase.COUNT_BACKWARD and sample.counted_backward_over:
            self._end_counting(sample, pop=True)
        elif sample.phase is _Phase.ARMED:
            self._pop_counter(sample)
        elif (
            sample.phase is _Phase.TIME_BACKWARD
            and sample.backward_timer is not None
            and sample.backward_timer.done
        ):
            self._finish(sample)

    def remove(self) -> None:
        """Remove the root hook and everything a sample in flight installed; the sample is dropped."""
        hook, self._hook = self._hook, None
        sample, self._sample = self._sample, None
        try:
            if hook is not None:
                hook.remove()
        finally:
            try:
                if sample is not None:
                    self._release(sample)
                self._retry_stranded()
            finally:
                if self._gather is not None:
                    self._gather.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.remove()

    def __repr__(self) -> str:
        state = "removed" if self._hook is None else "in flight" if self._sample else "idle"
        return (
            f"Watcher({type(self.model).__name__}, every={self.every}, {state}, "
            f"forwards={self.forwards}, samples={self.samples})"
        )

    # -- the root pre-hook ---------------------------------------------------------------------------
    def _on_forward(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        # Samples belong to the thread that ran the first forward: forwards of the same model on other
        # threads pass untouched (hooks registered while another thread is mid-forward would be
        # called half-registered by torch).
        if self._thread is None:
            self._thread = threading.get_ident()
        elif threading.get_ident() != self._thread:
            return
        self.forwards += 1
        if self._sample is None and self.forwards % self.every:
            return  # the cost of a step that is not sampled
        self._retry_stranded()
        sample = self._sample
        if sample is not None:
            self._advance(sample, args, kwargs)
        if self._sample is None and self.forwards % self.every == 0:
            self._start_counting(args, kwargs)

    def _advance(self, sample: _Sample, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A new forward starts while ``sample`` is in flight: whatever step was running is over."""
        if sample.phase in (_Phase.COUNT_FORWARD, _Phase.COUNT_BACKWARD):
            self._end_counting(sample, pop=True)
        if sample.phase in (_Phase.TIME_FORWARD, _Phase.TIME_BACKWARD):
            self._finish(sample)
            return
        if self._sample is not sample or sample.phase is not _Phase.ARMED:
            return
        self._pop_counter(sample)
        if sample.skipping:  # the forward let through before raised: the timer could not come back
            self._abandon(sample, "a forward let through before the timing step raised")
            return
        if self._kind(args, kwargs) == sample.kind:
            self._start_timing(sample)
            return
        sample.waited += 1
        if sample.waited > self.every:
            self._abandon(sample, f"no forward like the counted one came in {self.every} forwards")
            return
        # Another kind of step (validation, a last smaller batch): let it through without hooks.
        if sample.timer is not None:
            sample.timer.close()
        sample.skipping = True
        sample.handles.append(self.model.register_forward_hook(self._after_forward, always_call=True))

    # -- counting ------------------------------------------------------------------------------------
    def _kind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> _StepKind:
        where = model_device(self.model)
        types = ("cpu",) if where is None or where.type == "cpu" else ("cpu", where.type)
        return _StepKind(
            training=self.model.training,
            grad_enabled=torch.is_grad_enabled(),
            autocast=_autocast_state(types),
            inputs=describe(args, kwargs),
        )

    def _start_counting(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        kind = self._kind(args, kwargs)
        device = model_device(self.model) or torch.device("cpu")
        collector = Collector(self.model, track_backward=self.backward)
        sample = self._sample = _Sample(self.forwards, kind, device, collector)
        try:
            collector.attach()
            collector.enter_running_root(args, kwargs)
            sample.handles.append(self.model.register_forward_hook(self._after_forward, always_call=True))
            sample.base_sequence_nr = _get_sequence_nr()
            sample.counter = _StepCounter(collector)
            sample.counter.__enter__()  # type: ignore[no-untyped-call]
        except BaseException:
            self._sample = None
            self._release(sample)
            raise

    def _counted_forward_over(self, sample: _Sample, output: Any) -> None:
        sample.counted_forward = True
        if sample.collector is not None:
            sample.collector.close()  # its module hooks: the backward needs only the mode
        grads = _grad_outputs(output) if self.backward and torch.is_grad_enabled() else []
        if grads:
            sample.phase = _Phase.COUNT_BACKWARD
            for node in {t.grad_fn for t in grads if t.grad_fn is not None}:
                sample.handles.append(node.register_prehook(self._counted_backward_started))
        else:
            self._end_counting(sample, pop=True)
        # The timing hooks go on now, so that the root's own hooks run in the next forward.
        if self._sample is sample:
            sample.timer = LayerTimer(self.model, device=sample.device, root_name=ROOT_NAME)
            sample.timer.attach()

    def _counted_backward_started(self, _grad_outputs: Any) -> None:
        sample = self._sample
        if sample is not None and sample.phase is _Phase.COUNT_BACKWARD and not sample.counted_backward:
            sample.counted_backward = True  # set here, so that it is queued once
            torch.autograd.Variable._execution_engine.queue_callback(  # type: ignore[attr-defined]
                lambda: self._counted_backward_over(sample)
            )

    def _counted_backward_over(self, sample: _Sample) -> None:
        # An engine callback: the mode cannot leave the stack here (the engine restores the stack it
        # ran the backward with), so the counter stops counting and leaves at the next forward.
        sample.counted_backward_over = True
        if sample.counter is not None:
            sample.counter.counting = False
        if self._sample is sample and threading.get_ident() == sample.counter_thread:
            self._in_callback = True
            try:
                self._end_counting(sample, pop=False)
            finally:
                self._in_callback = False

    def _end_counting(self, sample: _Sample, *, pop: bool) -> None:
        """The counting step is over: rows out of the collector, graph let go, the timing step armed."""
        if sample.counter is not None:
            sample.counter.counting = False
        if pop:
            self._pop_counter(sample)
        if sample.rows is not None:
            return
        collector, sample.collector = sample.collector, None
        remove_all(sample.handles)
        if collector is None:
            return
        collector.close()
        if not sample.counted_forward:
            collector.release_graph()
            self._abandon(sample, "the counted forward raised")
            return
        sample.rows = collector.rows()
        sample.unsupported = dict(collector.unsupported)
        sample.kinds = collector.module_kinds()
        if self.backward:
            sample.node_rows = NodeRows.of(
                collector.backward_row_names(), sample.base_sequence_nr, collector.parameter_row_names()
            )
        collector.release_graph()
        sample.phase = _Phase.ARMED

    def _pop_counter(self, sample: _Sample) -> None:
        counter, sample.counter = sample.counter, None
        if counter is not None:
            counter.counting = False
            self._leave_mode(counter, sample.counter_thread)

    def _leave_mode(self, counter: _StepCounter, thread: int) -> None:
        stack = _get_current_dispatch_mode_stack()
        if not self._in_callback and threading.get_ident() == thread and stack and stack[-1] is counter:
            counter.__exit__(None, None, None)  # type: ignore[no-untyped-call]
        elif (counter, thread) not in self._stranded:
            logger.warning(
                "layerprof's counter could not leave the dispatch-mode stack yet (another mode is above "
                "it, or this is not the thread that entered it); it passes ops through until it can"
            )
            self._stranded.append((counter, thread))

    def _retry_stranded(self) -> None:
        if not self._stranded or self._in_callback:
            return
        stranded, self._stranded = self._stranded, []
        for counter, thread in stranded:
            stack = _get_current_dispatch_mode_stack()
            if threading.get_ident() == thread and stack and stack[-1] is counter:
                counter.__exit__(None, None, None)  # type: ignore[no-untyped-call]
            else:
                self._stranded.append((counter, thread))

    # -- timing --------------------------------------------------------------------------------------
    def _start_timing(self, sample: _Sample) -> None:
        timer = sample.timer
        if timer is None:
            self._abandon(sample, "the timing hooks were not on")
            return
        timer.flush()  # nothing should have been recorded since the counted forward; drop it if so
        timer.discard()
        sample.phase = _Phase.TIME_FORWARD
        sample.timing_thread = threading.get_ident()
        if self._gather is not None:
            self._gather.timing_started()
        sample.handles.append(self.model.register_forward_hook(self._after_forward, always_call=True))
        sample.base_sequence_nr = _get_sequence_nr()

    def _timed_forward_over(self, sample: _Sample, output: Any) -> None:
        sample.timed_forward = True
        if sample.timer is not None:
            sample.timer.close()
        remove_all(sample.handles)
        grads = _grad_outputs(output) if torch.is_grad_enabled() else []
        if not grads or sample.node_rows is None or not any(r.phase == "backward" for r in sample.rows or ()):
            self._finish(sample)
            return
        backward_timer = BackwardTimer(
            sample.node_rows, device=sample.device, on_done=lambda: self._timed_backward_over(sample)
        )
        sample.backward_timer = backward_timer
        if backward_timer.attach(grads, sample.base_sequence_nr) == 0:
            self._finish(sample)  # nothing to time in the backward (the log says why)
            return
        sample.phase = _Phase.TIME_BACKWARD

    def _timed_backward_over(self, sample: _Sample) -> None:
        # An engine callback. The thread that ran the forward emits now; a device thread leaves it
        # to the training thread (next forward, flush or remove).
        if self._gather is not None and self._sample is sample:
            self._gather.backward_over()
        if self._sample is sample and threading.get_ident() == sample.timing_thread:
            self._in_callback = True
            try:
                self._finish(sample)
            finally:
                self._in_callback = False

    def _after_forward(self, _module: nn.Module, _args: tuple[Any, ...], output: Any) -> None:
        sample = self._sample
        if sample is None:
            return
        if output is None and sys.exc_info()[0] is not None:
            # Called (always_call) from the handler of an exception the forward raised: take every
            # hook and the counting mode off now, not at the next forward.
            self._abandon(sample, "the forward raised")
            return
        if sample.phase is _Phase.COUNT_FORWARD:
            self._counted_forward_over(sample, output)
        elif sample.phase is _Phase.TIME_FORWARD:
            self._timed_forward_over(sample, output)
        elif sample.phase is _Phase.ARMED and sample.skipping:
            remove_all(sample.handles)
            sample.skipping = False
            sample.timer = LayerTimer(self.model, device=sample.device, root_name=ROOT_NAME)
            sample.timer.attach()

    # -- results -------------------------------------------------------------------------------------
    def _finish(self, sample: _Sample) -> None:
        """The timing step is over: build the report, drop the sample, hand the report to the sink."""
        self._sample = None
        try:
            if sample.rows is None or not sample.timed_forward:
                logger.info(
                    "layerprof: sample of step %d dropped: its timed forward did not finish", sample.step
                )
                if self._gather is not None:
                    self._gather.dropped()
                return
            report = self._report(sample)
        finally:
            self._release(sample)
        if self._gather is not None:
            report = self._gather.finish(report, sample.step)  # on every rank: it gathers
        self.samples += 1
        self.last_report = report
        if self._gather is None or self._gather.feeds_sink:
            self._sink(report, sample.step)

    def _report(self, sample: _Sample) -> Report:
        assert sample.rows is not None and sample.timer is not None
        sample.timer.flush()  # CUDA: the one synchronize of the step
        timings = sample.timer.timings()
        rows = timed_rows(sample.rows, timings, self.targets) if timings.forwards else list(sample.rows)
        root = timings.modules.get(ROOT_NAME)
        total_ms = root.total_ms[-1] if root is not None and root.total_ms else None
        backward_timer = sample.backward_timer
        if backward_timer is not None and backward_timer.done:
            times = backward_timer.read()
            rows = [
                replace(r, time_ms=times.rows_ms[r.name], time_iqr_ms=0.0)
                if r.phase == "backward" and r.name in times.rows_ms
                else r
                for r in rows
            ]
            if total_ms is not None and times.span_ms is not None:
                total_ms += times.span_ms
        return build_report(
            self.model,
            rows,
            sample.unsupported,
            self.targets,
            sample.kind.inputs,
            sample.kinds,
            total_time_ms=total_ms,
            timed_on=local_targets(self.targets, sample.device),
        )

    def _abandon(self, sample: _Sample, why: str) -> None:
        logger.info("layerprof: sample of step %d dropped: %s", sample.step, why)
        if self._sample is sample:
            self._sample = None
        if self._gather is not None:
            self._gather.dropped()
        self._release(sample)

    def _release(self, sample: _Sample) -> None:
        """Take off everything ``sample`` installed; idempotent, never raises halfway."""
        try:
            remove_all(sample.handles)
            if sample.collector is not None:
                sample.collector.close()
                sample.collector.release_graph()
                sample.collector = None
        finally:
            try:
                self._pop_counter(sample)
            finally:
                if sample.timer is not None:
                    sample.timer.close()
                if sample.backward_timer is not None:
                    sample.backward_timer.close()
                    sample.backward_timer.on_done = None  # it refers back to the sample


def watch(
    model: nn.Module,
    *,
    every: int = 100,
    target: TargetArg = "auto",
    backward: bool = True,
    sink: SinkArg = None,
    gather: SampleTap | bool | None = None,
) -> Watcher:
    """Sample one training step of ``model`` in every ``every`` forwards: a per-layer report of the
    forward and the backward (FLOPs, bytes, times, roofline verdicts on ``target``) goes to ``sink``
    (see :mod:`layerprof.api.sinks`). Between samples the model carries one forward pre-hook on its root.

    ``backward=False`` samples forwards only. ``watcher.remove()`` (or leaving ``with watch(...)``)
    takes every hook off, a sample in flight included. How a step is sampled: :mod:`layerprof.api.watch`.

    Under ``torch.distributed`` with several ranks (DDP), rank 0's sink gets one report of every
    rank's sample, with DDP's all-reduce in a row of its own (:mod:`layerprof.distributed.gather`); pass a
    ``layerprof.RankGather(...)`` to configure it, ``gather=False`` to keep each rank's own.
    """
    return Watcher(
        model,
        every=every,
        target=target,
        backward=backward,
        sink=resolve_sink(sink),
        gather=default_gather(gather),
    )
