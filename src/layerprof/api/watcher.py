"""The :class:`Watcher` behind ``layerprof.watch``: torch's hooks and callbacks turned into the events of
a sample's state machine (:mod:`layerprof.api.watch_states`), and one method per action.

How a step is sampled, and why, is in :mod:`layerprof.api.watch`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch._C._autograd import _get_sequence_nr
from torch.utils.hooks import RemovableHandle

from layerprof.api.counting_mode import CountingMode, engine_callback, in_engine_callback
from layerprof.api.sample_tap import TAP_METHODS, SampleTap
from layerprof.api.sinks import ReportSink, log_table
from layerprof.api.watch_sample import Sample, grad_outputs, sample_report, step_kind
from layerprof.api.watch_states import Action, Event, Transition
from layerprof.core.validate import positive_int
from layerprof.errors import InvalidArgumentError, InvalidModelError
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.targets import TargetArg, resolve_targets
from layerprof.report.facade import Report
from layerprof.timing.backward import BackwardTimer
from layerprof.walk.collect import Collector
from layerprof.walk.hooks import remove_all

__all__ = ["Watcher"]

# Named, not __name__: users configure this logger (README, "During training"); the default sink's.
logger = logging.getLogger("layerprof.api.watch")


@dataclass(frozen=True, slots=True)
class _Call:
    """What the hook that fired an event saw: a starting forward's inputs, an ending one's outputs."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    grads: tuple[torch.Tensor, ...] = ()  # outputs a followed backward can start from


_NO_CALL = _Call()
_Handler = Callable[["Watcher", Sample, Transition, _Call], "Event | None"]


class Watcher:
    """Samples a training step of ``model`` every ``every`` forwards (see :mod:`layerprof.api.watch`).

    ``sink`` is called with each sample's report and the index of its counted forward (1-based);
    None logs the table (:func:`~layerprof.api.sinks.log_table`). :func:`layerprof.watch` makes one
    from friendlier arguments (``print``, a file path, a callable taking the report).

    ``gather`` (a :class:`~layerprof.api.sample_tap.SampleTap`, such as :class:`layerprof.RankGather`)
    gathers the samples of every rank of a distributed run: the sink gets what its ``finish``
    returns, where ``feeds_sink``.

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
        self.every = positive_int("every", every)
        if not isinstance(backward, bool):
            raise InvalidArgumentError(f"backward must be True or False, got {backward!r}")
        self.backward = backward
        self.targets: tuple[DeviceSpec, ...] = resolve_targets(target)
        if sink is not None and not callable(sink):
            raise InvalidArgumentError(f"sink must be callable, got {type(sink).__name__}: {sink!r:.80}")
        self._sink: ReportSink = log_table if sink is None else sink
        if gather is not None and not all(callable(getattr(gather, m, None)) for m in TAP_METHODS):
            raise InvalidArgumentError(
                f"gather must be a layerprof.RankGather (with {', '.join(TAP_METHODS)}), got {gather!r:.80}"
            )
        self._gather = gather
        self.forwards = 0
        self._thread: int | None = None
        self.samples = 0
        self.last_report: Report | None = None
        self._sample: Sample | None = None  # the live sample, if any
        self._pending: list[CountingMode] = []  # modes that could not leave the stack yet
        self._leftovers: list[Collector] = []  # collectors of interrupted forwards, off at a forward's end
        self._leftovers_hook: RemovableHandle | None = None
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
        """Finish on this thread what the engine could not: take the counting mode of a step whose
        backward is over off the mode stack, emit a timing step whose backward is over; and after a
        sampled forward that never returned (a ``KeyboardInterrupt``), take its hooks and mode off.
        Optional (the next forward does it); call it from the training thread, outside forwards."""
        self._retry_pending()
        self._close_leftovers()
        if self._sample is not None:
            self._fire(self._sample, Event.FLUSH)

    def remove(self) -> None:
        """Remove the root hook and everything a sample in flight installed; the sample is dropped."""
        hook, self._hook = self._hook, None
        try:
            if hook is not None:
                hook.remove()
        finally:
            try:
                try:
                    if self._sample is not None:
                        self._fire(self._sample, Event.REMOVED)
                finally:
                    self._close_leftovers()
                self._retry_pending()
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

    # -- torch's hooks and callbacks, as events --------------------------------------------------------
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
        self._retry_pending()
        call = _Call(args, kwargs)
        if self._sample is not None:
            self._fire(self._sample, Event.FORWARD_STARTED, call)  # whatever step was running is over
        if self._sample is None and self.forwards % self.every == 0:
            sample = self._sample = Sample(
                self.forwards, step_kind(self.model, args, kwargs), self.model, backward=self.backward
            )
            self._fire(sample, Event.FORWARD_STARTED, call)

    def _forward_returned(self, sample: Sample, _module: nn.Module, _args: Any, output: Any) -> None:
        if output is None and sys.exc_info()[0] is not None:
            # Called (always_call) from the handler of an exception the forward raised: take every
            # hook and the counting mode off now, not at the next forward.
            self._fire(sample, Event.FORWARD_RAISED)
            return
        grads = grad_outputs(output) if self.backward and torch.is_grad_enabled() else ()
        event = Event.FORWARD_ENDED_WITH_GRAD if grads else Event.FORWARD_ENDED
        self._fire(sample, event, _Call(grads=grads))

    def _add_forward_hook(self, sample: Sample) -> None:
        hook = functools.partial(self._forward_returned, sample)
        sample.handles.append(self.model.register_forward_hook(hook, always_call=True))

    def _counted_backward_over(self, sample: Sample) -> None:
        # An engine callback: the mode cannot leave the stack here; it stops counting, and leaves at
        # the next forward or flush(). On another (device) thread the rows wait for the training thread.
        here = threading.get_ident() == sample.mode.thread
        event = Event.COUNTED_BACKWARD_OVER if here else Event.COUNTED_BACKWARD_OVER_OFF_THREAD
        with engine_callback():
            self._fire(sample, event)

    def _timed_backward_over(self, sample: Sample) -> None:
        # An engine callback. The thread that ran the forward emits now; a device thread leaves it
        # to the training thread (next forward, flush or remove).
        here = threading.get_ident() == sample.timing_thread
        event = Event.TIMED_BACKWARD_OVER if here else Event.TIMED_BACKWARD_OVER_OFF_THREAD
        with engine_callback():
            self._fire(sample, event)

    # -- the dispatcher --------------------------------------------------------------------------------
    def _fire(self, sample: Sample, event: Event, call: _Call = _NO_CALL) -> None:
        transition = sample.state.fire(event)
        if not sample.state.live and self._sample is sample:
            self._sample = None  # before the action: a sink that runs the model meets no sample
        try:
            follow = _ACTIONS[transition.action](self, sample, transition, call)
        except BaseException:
            # Whatever stopped the action (KeyboardInterrupt included), nothing stays installed.
            try:
                if event is not Event.HANDLER_RAISED:
                    self._fire(sample, Event.HANDLER_RAISED)
            finally:
                self._release(sample)
            raise
        follow = follow or transition.then
        if follow is not None and sample.state.live:
            self._fire(sample, follow, call)

    # -- actions (one per Action) ----------------------------------------------------------------------
    def _nothing(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        return None

    def _start_counting(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        assert sample.collector is not None  # a new sample's
        sample.collector.attach()
        sample.collector.enter_running_root(call.args, call.kwargs)
        self._add_forward_hook(sample)
        sample.base_sequence_nr = _get_sequence_nr()
        sample.mode.enter()
        return None

    def _follow_backward(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        if sample.collector is not None:
            sample.collector.close()  # its module hooks: the backward needs only the mode

        def reached(_grad_outputs: Any) -> None:
            self._fire(sample, Event.COUNTED_BACKWARD_STARTED)

        for node in {t.grad_fn for t in call.grads if t.grad_fn is not None}:
            sample.handles.append(node.register_prehook(reached))
        # The timing hooks go on now, so that the root's own hooks run in the next forward.
        sample.arm_timer(self.model)
        return None

    def _counts_in(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        self._end_counting(sample, transition, call)
        sample.arm_timer(self.model)
        return None

    def _queue_end(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        torch.autograd.Variable._execution_engine.queue_callback(  # type: ignore[attr-defined]
            lambda: self._counted_backward_over(sample)
        )
        return None

    def _end_counting(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        self._leave_mode(sample.mode)  # from an engine callback it waits for the next forward or flush
        sample.read_counts(backward=self.backward)
        return None

    def _meet_forward(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        self._leave_mode(sample.mode)
        if step_kind(self.model, call.args, call.kwargs) == sample.kind:
            return Event.SAME_KIND
        sample.waited += 1
        return Event.WAITED_TOO_LONG if sample.waited > self.every else Event.OTHER_KIND

    def _start_timing(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        sample.timer.flush()  # nothing should have been recorded since the counted forward; drop it if so
        sample.timer.discard()
        sample.timing_thread = threading.get_ident()
        if self._gather is not None:
            self._gather.timing_started()
        self._add_forward_hook(sample)
        sample.base_sequence_nr = _get_sequence_nr()
        return None

    def _let_through(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        # Another kind of step (validation, a last smaller batch): let it through without hooks.
        sample.timer.close()
        self._add_forward_hook(sample)
        return None

    def _rearm(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        remove_all(sample.handles)
        sample.arm_timer(self.model, fresh=True)
        return None

    def _leave_mode_action(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        self._leave_mode(sample.mode)
        return None

    def _time_backward(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        sample.stop_timing_forward()
        if sample.node_rows is None or not any(r.phase == "backward" for r in sample.rows or ()):
            return Event.NOTHING_TO_TIME
        sample.backward_timer = BackwardTimer(
            sample.node_rows, device=sample.device, on_done=lambda: self._timed_backward_over(sample)
        )
        if sample.backward_timer.attach(call.grads, sample.base_sequence_nr) == 0:
            return Event.NOTHING_TO_TIME  # the log says why
        return None

    def _tell_gather(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        if self._gather is not None:
            self._gather.backward_over()
        return None

    def _tell_gather_and_emit(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        self._tell_gather(sample, transition, call)
        return self._emit(sample, transition, call)

    def _emit(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        """The timing step is over: build the report, release the sample, hand the report on."""
        sample.stop_timing_forward()
        try:
            report = sample_report(sample, self.model, self.targets)
        finally:
            self._release(sample)
        if self._gather is not None:
            report = self._gather.finish(report, sample.step)  # on every rank: it gathers
        self.samples += 1
        self.last_report = report
        if self._gather is None or self._gather.feeds_sink:
            self._sink(report, sample.step)
        return None

    def _drop(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        why = transition.why.format(every=self.every)
        if transition.action is Action.REFUSE:
            logger.warning("layerprof: sample of step %d dropped: %s (a layerprof bug)", sample.step, why)
        else:
            logger.info("layerprof: sample of step %d dropped: %s", sample.step, why)
        try:
            if self._gather is not None:
                self._gather.dropped()
        finally:
            self._release(sample)
        return None

    def _drop_interrupted(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        # The counted forward never returned (a BaseException skips torch's always_call hooks) and a
        # new forward starts. torch listed this forward's root pre-hooks before calling ours, the
        # collector's among them: removed now, it would still be called, without its kwargs, and
        # raise. So the collector's hooks stay on for this forward, doing nothing without the mode,
        # and come off when it returns (or at flush() or remove()); the rest comes off now.
        collector, sample.collector = sample.collector, None
        if collector is not None:
            self._leftovers.append(collector)
            if self._leftovers_hook is None:
                # Not always_call: torch walks those over the live hook dict, which this one changes.
                self._leftovers_hook = self.model.register_forward_hook(self._close_leftovers)
        return self._drop(sample, transition, call)

    def _release_action(self, sample: Sample, transition: Transition, call: _Call) -> Event | None:
        self._release(sample)
        return None

    # -- helpers -------------------------------------------------------------------------------------
    def _release(self, sample: Sample) -> None:
        """Everything ``sample`` installed off, its mode off the stack or queued to leave; idempotent."""
        try:
            sample.release()
        finally:
            self._leave_mode(sample.mode)

    def _leave_mode(self, mode: CountingMode) -> None:
        if mode.exit() or any(m is mode for m in self._pending):
            return
        if not in_engine_callback():  # from a callback it is expected: the training thread takes it off
            logger.warning(
                "layerprof's counter could not leave the dispatch-mode stack yet (another mode is above "
                "it, or this is not the thread that entered it); it passes ops through until it can"
            )
        self._pending.append(mode)

    def _close_leftovers(self, *_hook_args: Any) -> None:
        hook, self._leftovers_hook = self._leftovers_hook, None
        leftovers, self._leftovers = self._leftovers, []
        with contextlib.ExitStack() as closing:  # every one closed, whichever raises
            if hook is not None:
                closing.callback(hook.remove)
            for collector in leftovers:
                closing.callback(collector.release_graph)
                closing.callback(collector.close)

    def _retry_pending(self) -> None:
        if self._pending and not in_engine_callback():
            self._pending = [mode for mode in self._pending if not mode.exit()]


_ACTIONS: Mapping[Action, _Handler] = {
    Action.NOTHING: Watcher._nothing,
    Action.START_COUNTING: Watcher._start_counting,
    Action.FOLLOW_BACKWARD: Watcher._follow_backward,
    Action.COUNTS_IN: Watcher._counts_in,
    Action.QUEUE_END: Watcher._queue_end,
    Action.END_COUNTING: Watcher._end_counting,
    Action.MEET_FORWARD: Watcher._meet_forward,
    Action.START_TIMING: Watcher._start_timing,
    Action.LET_THROUGH: Watcher._let_through,
    Action.REARM: Watcher._rearm,
    Action.LEAVE_MODE: Watcher._leave_mode_action,
    Action.TIME_BACKWARD: Watcher._time_backward,
    Action.TELL_GATHER: Watcher._tell_gather,
    Action.TELL_GATHER_AND_EMIT: Watcher._tell_gather_and_emit,
    Action.EMIT: Watcher._emit,
    Action.DROP: Watcher._drop,
    Action.DROP_INTERRUPTED: Watcher._drop_interrupted,
    Action.REFUSE: Watcher._drop,
    Action.RELEASE: Watcher._release_action,
}
