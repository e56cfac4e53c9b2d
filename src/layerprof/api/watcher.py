"""The :class:`Watcher` behind ``layerprof.watch``: torch's hooks and callbacks turned into the events of
a sample's state machine (:mod:`layerprof.api.watch_states`), and one method per action.

How a step is sampled, and why, is in :mod:`layerprof.api.watch`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch._C._autograd import _get_sequence_nr
from torch.utils.hooks import RemovableHandle

from layerprof.api.compiled import unwrap_compiled
from layerprof.api.counting_mode import ModesToLeave, engine_callback
from layerprof.api.leftovers import Leftovers
from layerprof.api.nvtx import NvtxRanges
from layerprof.api.sample_tap import SampleTap, check_tap
from layerprof.api.sinks import GuardedSink, ReportSink, log_table
from layerprof.api.watch_sample import NO_CALL, Call, Sample, grad_outputs, sample_report, step_kind
from layerprof.api.watch_states import OFF_THREAD, Action, Event, Transition
from layerprof.core.validate import check_bool, positive_int
from layerprof.errors import InvalidArgumentError, InvalidModelError
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.targets import TargetArg, resolve_targets
from layerprof.report.facade import Report
from layerprof.timing.backward import BackwardTimer
from layerprof.walk.hooks import remove_all

__all__ = ["Watcher"]

# Named, not __name__: users configure this logger (README, "During training"); the default sink's.
logger = logging.getLogger("layerprof.api.watch")


_Handler = Callable[["Watcher", Sample, Transition, Call], "Event | None"]


class Watcher:
    """Samples a training step of ``model`` every ``every`` forwards (see :mod:`layerprof.api.watch`).

    ``sink`` is called with each sample's report and its step, the index of its counted forward
    (0-based: steps 0, ``every``, ``2 * every``, ...; ``report.step`` too);
    None logs the table (:func:`~layerprof.api.sinks.log_table`). :func:`layerprof.watch` makes one
    from friendlier arguments (``print``, a file path, a callable taking the report).

    ``gather`` (a :class:`~layerprof.api.sample_tap.SampleTap`, such as :class:`layerprof.RankGather`)
    gathers the samples of every rank of a distributed run: the sink gets what its ``finish``
    returns, where ``feeds_sink``.

    A sink that raises does not break the step it is called from (often inside ``loss.backward()``):
    its error is logged and training goes on; with ``strict=True`` it is raised after the step
    instead, at the next forward of the model, :meth:`flush` or :meth:`remove`
    (:class:`~layerprof.api.sinks.GuardedSink`).

    ``forwards`` counts the model's forwards seen, ``samples`` the reports emitted, ``last_report`` is
    the latest one (None before the first). ``remove()`` takes every hook off, a sample in flight
    included; ``with layerprof.watch(model) as watcher:`` does it at the end of the block. A removed
    watcher holds the model only weakly (``watcher.model`` is None once the user let go of it).

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
        strict: bool = False,
        nvtx: bool = False,
        cache_model: bool = True,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InvalidModelError(
                f"model must be a torch.nn.Module, got {type(model).__name__}: {model!r:.80}"
            )
        # Strong while attached; remove() lets go, so that a removed watcher never keeps it alive.
        self._model: nn.Module | None = model
        self._model_ref = weakref.ref(model)
        self._model_name = type(model).__name__
        self.every = positive_int("every", every)
        self.backward, self._cache = check_bool("backward", backward), check_bool("cache_model", cache_model)
        check_bool("strict", strict)
        check_bool("nvtx", nvtx)
        self.targets: tuple[DeviceSpec, ...] = resolve_targets(target)
        if sink is not None and not callable(sink):
            raise InvalidArgumentError(f"sink must be callable, got {type(sink).__name__}: {sink!r:.80}")
        self._sink = GuardedSink(log_table if sink is None else sink, strict=strict)
        self._gather = check_tap(gather)
        self.forwards = 0
        self._thread: int | None = None
        self.samples = 0
        self.last_report: Report | None = None
        self._sample: Sample | None = None  # the live sample, if any
        self._to_leave = ModesToLeave()  # modes that could not leave the stack yet
        self._leftovers = Leftovers()  # collectors of interrupted forwards, off at a forward's end
        self._hook: RemovableHandle | None = model.register_forward_pre_hook(
            self._on_forward, with_kwargs=True
        )
        self._nvtx = NvtxRanges(model, backward=backward).attach() if nvtx else None
        if gather is not None:
            try:
                gather.attach(model)
            except BaseException:
                self._gather = None  # it did not take this watcher on: not ours to close
                self.remove()
                raise

    # -- public --------------------------------------------------------------------------------------
    @property
    def model(self) -> nn.Module | None:
        """The watched model; after :meth:`remove`, None once nothing else holds it."""
        return self._model if self._model is not None else self._model_ref()

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
        Optional (the next forward does it); call it from the training thread, outside forwards.
        With ``strict=True``, then raises the error of a sink that raised since the last step."""
        self._to_leave.retry()
        self._leftovers.close()
        if self._sample is not None:
            self._fire(self._sample, Event.FLUSH)
        self._sink.settle()

    def remove(self) -> None:
        """Remove the root hook and everything a sample in flight installed; the sample is dropped.
        With ``strict=True``, then raises the error of a sink that raised since the last step."""
        try:
            self._take_off()
        except BaseException:
            self._sink.settle(raise_it=False)  # logged: the error on its way is the one to see
            raise
        self._sink.settle()

    def _take_off(self) -> None:
        hook, self._hook = self._hook, None
        with contextlib.ExitStack() as closing:  # each one runs, whichever raises; the last first
            closing.callback(setattr, self, "_model", None)
            ranges, self._nvtx = self._nvtx, None
            if ranges is not None:
                closing.callback(ranges.close)
            if self._gather is not None:
                closing.callback(self._gather.close)
            closing.callback(self._to_leave.retry)
            closing.callback(self._leftovers.close)
            if self._sample is not None:
                closing.callback(self._fire, self._sample, Event.REMOVED)
            if hook is not None:
                hook.remove()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if error is not None:
            self._sink.settle(raise_it=False)  # logged: the block's own exception is the one to see
        self.remove()

    def __repr__(self) -> str:
        state = "removed" if self._hook is None else "in flight" if self._sample else "idle"
        counts = f"forwards={self.forwards}, samples={self.samples}"
        return f"Watcher({self._model_name}, every={self.every}, {state}, {counts})"

    # -- torch's hooks and callbacks, as events --------------------------------------------------------
    def _on_forward(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        # Samples belong to the thread that ran the first forward: forwards of the same model on other
        # threads pass untouched (hooks registered while another thread is mid-forward would be
        # called half-registered by torch).
        if self._thread is None:
            self._thread = threading.get_ident()
        elif threading.get_ident() != self._thread:
            return
        self._sink.settle()  # strict: a sink's error of an earlier step, before this forward counts
        step = self.forwards  # 0-based: this forward's index
        self.forwards += 1
        if self._sample is None and step % self.every:
            return  # the cost of a step that is not sampled
        self._to_leave.retry()
        call = Call(args, kwargs)
        if self._sample is not None:
            self._fire(self._sample, Event.FORWARD_STARTED, call)  # whatever step was running is over
            self._sink.settle()  # ... and the sink it was emitted to may have raised: before a new one
        if self._sample is None and step % self.every == 0:
            model = self._watched
            kind = step_kind(model, args, kwargs)
            # A torch.compile wrapper is hooked itself (its hooks run eagerly), its module is walked.
            sample = self._sample = Sample(
                step, kind, unwrap_compiled(model), backward=self.backward, cache_model=self._cache
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
        self._fire(sample, event, Call(grads=grads))

    def _add_forward_hook(self, sample: Sample) -> None:
        hook = functools.partial(self._forward_returned, sample)
        sample.handles.append(self._watched.register_forward_hook(hook, always_call=True))

    @property
    def _watched(self) -> nn.Module:
        # Events that install anything come from the model's own hooks, which remove() takes off first.
        if self._model is None:
            raise RuntimeError("layerprof: a removed watcher was asked to sample (a layerprof bug)")
        return self._model

    def _from_engine(self, sample: Sample, event: Event) -> None:
        # From inside the autograd engine (a callback, an op of a backward node): the mode stack is
        # off limits there, so a mode to leave waits for the training thread.
        with engine_callback():
            self._fire(sample, event)

    def _backward_over(self, sample: Sample, event: Event) -> None:
        # An engine callback ending a counted or timed backward. On the step's own thread the watcher
        # acts now (a counting mode stops counting, and leaves at the next forward or flush()); on
        # another (a CUDA device thread) the rest waits for the training thread.
        counted = event is Event.COUNTED_BACKWARD_OVER
        here = threading.get_ident() == (sample.mode.thread if counted else sample.timing_thread)
        self._from_engine(sample, event if here else OFF_THREAD[event])

    # -- the dispatcher --------------------------------------------------------------------------------
    def _fire(self, sample: Sample, event: Event, call: Call = NO_CALL) -> None:
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
                sample.release(self._to_leave)
            raise
        follow = follow or transition.then
        if follow is not None and sample.state.live:
            self._fire(sample, follow, call)

    # -- actions (one per Action) ----------------------------------------------------------------------
    def _nothing(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        return None

    def _start_counting(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        assert sample.collector is not None  # a new sample's
        sample.collector.attach()
        sample.collector.enter_running_root(call.args, call.kwargs)
        self._add_forward_hook(sample)
        sample.base_sequence_nr = _get_sequence_nr()
        sample.mode.on_backward = functools.partial(self._from_engine, sample, Event.BACKWARD_SEEN)
        sample.mode.enter()
        return None

    def _follow_backward(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        if sample.collector is not None:
            sample.collector.close()  # its module hooks: the backward needs only the mode

        def reached(_grad_outputs: Any) -> None:
            self._fire(sample, Event.COUNTED_BACKWARD_STARTED)

        for node in {t.grad_fn for t in call.grads if t.grad_fn is not None}:
            sample.handles.append(node.register_prehook(reached))
        # The timing hooks go on now, so that the root's own hooks run in the next forward.
        sample.arm_timer(self._watched)
        return None

    def _watch_backward(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        # A backward has started; if it ends before reaching the model, it was another graph's.
        torch.autograd.Variable._execution_engine.queue_callback(  # type: ignore[attr-defined]
            functools.partial(self._from_engine, sample, Event.BACKWARD_OVER)
        )
        return None

    def _counts_in(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        self._end_counting(sample, transition, call)
        sample.arm_timer(self._watched)
        return None

    def _queue_end(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        torch.autograd.Variable._execution_engine.queue_callback(  # type: ignore[attr-defined]
            functools.partial(self._backward_over, sample, Event.COUNTED_BACKWARD_OVER)
        )
        return None

    def _end_counting(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        self._to_leave.leave(sample.mode)  # from an engine callback it waits for the next forward or flush
        sample.read_counts(backward=self.backward)
        return None

    def _meet_forward(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        self._to_leave.leave(sample.mode)
        if step_kind(self._watched, call.args, call.kwargs) == sample.kind:
            return Event.SAME_KIND
        sample.waited += 1
        return Event.WAITED_TOO_LONG if sample.waited > self.every else Event.OTHER_KIND

    def _start_timing(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        sample.timer.flush()  # nothing should have been recorded since the counted forward; drop it if so
        sample.timer.discard()
        sample.timing_thread = threading.get_ident()
        if self._gather is not None:
            self._gather.timing_started()
        self._add_forward_hook(sample)
        sample.base_sequence_nr = _get_sequence_nr()
        return None

    def _let_through(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        # Another kind of step (validation, a last smaller batch): let it through without hooks.
        sample.timer.close()
        self._add_forward_hook(sample)
        return None

    def _rearm(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        remove_all(sample.handles)
        sample.arm_timer(self._watched, fresh=True)
        return None

    def _leave_mode(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        self._to_leave.leave(sample.mode)
        return None

    def _time_backward(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        sample.stop_timing_forward()
        if sample.node_rows is None or not any(r.phase == "backward" for r in sample.rows or ()):
            return Event.NOTHING_TO_TIME
        on_done = functools.partial(self._backward_over, sample, Event.TIMED_BACKWARD_OVER)
        sample.backward_timer = BackwardTimer(sample.node_rows, device=sample.device, on_done=on_done)
        if sample.backward_timer.attach(call.grads, sample.base_sequence_nr) == 0:
            return Event.NOTHING_TO_TIME  # the log says why
        return None

    def _tell_gather(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        if self._gather is not None:
            self._gather.backward_over()
        return None

    def _tell_gather_and_emit(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        self._tell_gather(sample, transition, call)
        return self._emit(sample, transition, call)

    def _emit(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        """The timing step is over: build the report, release the sample, hand the report on."""
        sample.stop_timing_forward()
        try:
            report = sample_report(sample, self._watched, self.targets)
        finally:
            sample.release(self._to_leave)
        if self._gather is not None:
            gathered = self._gather.finish(report, sample.step)  # on every rank: it gathers
            if gathered is None:
                return None  # the gather dropped the sample (it logs why)
            report = gathered
        report = dataclasses.replace(report, step=sample.step)
        self.samples += 1
        self.last_report = report
        if self._gather is None or self._gather.feeds_sink:
            self._sink(report, sample.step)
        return None

    def _drop(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        why = transition.why.format(every=self.every)
        bug = " (a layerprof bug)" if transition.action is Action.REFUSE else ""
        warn = transition.action in (Action.ABANDON, Action.REFUSE)  # a failed step, a bug: unexpected
        logger.log(
            logging.WARNING if warn else logging.INFO,
            "layerprof: sample of step %d dropped: %s%s",
            sample.step,
            why,
            bug,
        )
        try:
            if self._gather is not None:
                self._gather.dropped()
        finally:
            sample.release(self._to_leave)
        return None

    def _drop_interrupted(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        # The counted forward never returned and a new forward starts: the collector's hooks must
        # stay on until it returns (layerprof.api.leftovers says why); the rest comes off now.
        collector, sample.collector = sample.collector, None
        if collector is not None:
            self._leftovers.keep(collector, self._watched)
        return self._drop(sample, transition, call)

    def _release_action(self, sample: Sample, transition: Transition, call: Call) -> Event | None:
        sample.release(self._to_leave)
        return None


_ACTIONS: Mapping[Action, _Handler] = {
    Action.NOTHING: Watcher._nothing,
    Action.START_COUNTING: Watcher._start_counting,
    Action.FOLLOW_BACKWARD: Watcher._follow_backward,
    Action.WATCH_BACKWARD: Watcher._watch_backward,
    Action.COUNTS_IN: Watcher._counts_in,
    Action.QUEUE_END: Watcher._queue_end,
    Action.END_COUNTING: Watcher._end_counting,
    Action.MEET_FORWARD: Watcher._meet_forward,
    Action.START_TIMING: Watcher._start_timing,
    Action.LET_THROUGH: Watcher._let_through,
    Action.REARM: Watcher._rearm,
    Action.LEAVE_MODE: Watcher._leave_mode,
    Action.TIME_BACKWARD: Watcher._time_backward,
    Action.TELL_GATHER: Watcher._tell_gather,
    Action.TELL_GATHER_AND_EMIT: Watcher._tell_gather_and_emit,
    Action.EMIT: Watcher._emit,
    Action.DROP: Watcher._drop,
    Action.ABANDON: Watcher._drop,
    Action.DROP_INTERRUPTED: Watcher._drop_interrupted,
    Action.REFUSE: Watcher._drop,
    Action.RELEASE: Watcher._release_action,
}
