"""One ``layerprof.watch`` sample in flight: what it installed, what it has read, and its report.

The phase and every flag derived from it are in :class:`~layerprof.api.watch_states.SampleState`;
this record holds the data the phases carry (the collector, the timers, the rows read) and knows
how to take all of it off (:meth:`Sample.release`) and how to turn it into a report.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_leaves
from torch.utils.hooks import RemovableHandle

from layerprof.api.counting_mode import CountingMode, ModesToLeave
from layerprof.api.watch_states import SampleState
from layerprof.core.records import LayerRow
from layerprof.hardware.specs import DeviceSpec
from layerprof.report.assemble import build_report, local_targets
from layerprof.report.facade import Report
from layerprof.timing.backward import BackwardTimer, NodeRows
from layerprof.timing.layers import LayerTimer
from layerprof.timing.rows import timed_rows
from layerprof.walk.collect import ROOT_NAME, Collector
from layerprof.walk.hooks import remove_all
from layerprof.walk.inputs import InputSpec, describe, model_device

__all__ = ["NO_CALL", "Call", "Sample", "StepKind", "grad_outputs", "sample_report", "step_kind"]


@dataclass(frozen=True, slots=True)
class Call:
    """What the hook that fired an event saw: a starting forward's inputs, an ending one's outputs."""

    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    grads: tuple[torch.Tensor, ...] = ()  # outputs a followed backward can start from


NO_CALL = Call()


@dataclass(frozen=True, slots=True)
class StepKind:
    """What a timed step must share with the counted one for the counts to describe it."""

    training: bool
    grad_enabled: bool
    autocast: tuple[tuple[str, bool, str], ...]
    inputs: InputSpec


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


def step_kind(model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> StepKind:
    where = model_device(model)
    types = ("cpu",) if where is None or where.type == "cpu" else ("cpu", where.type)
    return StepKind(
        training=model.training,
        grad_enabled=torch.is_grad_enabled(),
        autocast=_autocast_state(types),
        inputs=describe(args, kwargs),
    )


def grad_outputs(output: Any) -> tuple[torch.Tensor, ...]:
    """The outputs a backward can start from: tensors that need a gradient and have a node."""
    return tuple(
        t
        for t in tree_leaves(output)
        if isinstance(t, torch.Tensor) and t.requires_grad and t.grad_fn is not None
    )


class Sample:
    """One sample (internal, mutable, dropped when it is emitted or abandoned)."""

    def __init__(
        self, step: int, kind: StepKind, model: nn.Module, *, backward: bool, cache_model: bool = True
    ) -> None:
        self.step = step  # the index (0-based) of the counted forward: the step sampled
        self.kind = kind
        self.device = model_device(model) or torch.device("cpu")
        self.state = SampleState()
        self.collector: Collector | None = Collector(model, track_backward=backward, cache_model=cache_model)
        self.mode = CountingMode(self.collector, self.state)
        self.base_sequence_nr = 0
        self.handles: list[RemovableHandle] = []  # the root forward hook, counted-output pre-hooks
        # read when the counting step is over
        self.rows: list[LayerRow] | None = None
        self.unsupported: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        self.node_rows: NodeRows | None = None
        # the timing step
        self.timer = LayerTimer(model, device=self.device, root_name=ROOT_NAME)  # attached when armed
        self.waited = 0  # forwards of another kind let through
        self.backward_timer: BackwardTimer | None = None
        self.timing_thread = 0

    def read_counts(self, *, backward: bool) -> None:
        """The counting step is over: rows out of the collector, its hooks off, the graph let go."""
        remove_all(self.handles)
        collector, self.collector = self.collector, None
        if collector is None:
            return
        try:
            collector.close()
            self.rows = collector.rows()
            self.unsupported = dict(collector.unsupported)
            self.kinds = collector.module_kinds()
            if backward:
                self.node_rows = NodeRows.of(
                    collector.backward_row_names(), self.base_sequence_nr, collector.parameter_row_names()
                )
        finally:
            collector.release_graph()

    def arm_timer(self, model: nn.Module, *, fresh: bool = False) -> None:
        """The timer's hooks on, for the next forward (``fresh``: a new timer, after a let-through)."""
        if fresh:
            self.timer.close()
            self.timer = LayerTimer(model, device=self.device, root_name=ROOT_NAME)
        self.timer.attach()

    def stop_timing_forward(self) -> None:
        self.timer.close()
        remove_all(self.handles)

    def release(self, to_leave: ModesToLeave) -> None:
        """Take off every hook the sample installed, and the counting mode off the stack (or into
        ``to_leave`` when it has to wait for the training thread); idempotent, never stops halfway.
        The mode lets go of the collector and the model even while it waits."""
        try:
            remove_all(self.handles)
            collector, self.collector = self.collector, None
            if collector is not None:
                try:
                    collector.close()
                finally:
                    collector.release_graph()
        finally:
            try:
                self.timer.close()
            finally:
                try:
                    if self.backward_timer is not None:
                        self.backward_timer.close()
                        self.backward_timer.on_done = None  # it refers back to the sample
                finally:
                    self.mode.forget()
                    to_leave.leave(self.mode)


def sample_report(sample: Sample, model: nn.Module, targets: tuple[DeviceSpec, ...]) -> Report:
    """The report of a timed sample: forward rows with their times, backward rows with theirs."""
    if sample.rows is None:
        raise RuntimeError(f"layerprof: sample of step {sample.step} is reported before its counts")
    sample.timer.flush()  # CUDA: the one synchronize of the step
    timings = sample.timer.timings()
    rows = timed_rows(sample.rows, timings, targets) if timings.forwards else list(sample.rows)
    root = timings.modules.get(ROOT_NAME)
    total_ms = root.total_ms[-1] if root is not None and root.total_ms else None
    backward_timer = sample.backward_timer
    if backward_timer is not None and backward_timer.done:
        times = backward_timer.read()
        rows = [
            replace(r, time_ms=times.rows_ms[r.name], time_iqr_ms=None)  # one step: no spread
            if r.phase == "backward" and r.name in times.rows_ms
            else r
            for r in rows
        ]
        if total_ms is not None and times.span_ms is not None:
            total_ms += times.span_ms
    return build_report(
        model,
        rows,
        sample.unsupported,
        targets,
        sample.kind.inputs,
        sample.kinds,
        total_time_ms=total_ms,
        timed_on=local_targets(targets, sample.device),
    )
