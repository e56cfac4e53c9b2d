"""``layerprof.Profiler``: time the forwards a ``with`` block runs on the model itself; count afterwards."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from layerprof.api.compiled import is_compiled
from layerprof.api.counting import check_flag, check_model, warn_unsupported
from layerprof.api.real_inputs import InputPair, count_with_fallback
from layerprof.api.rng import rng_kept
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.targets import TargetArg, resolve_targets
from layerprof.report.assemble import build_report, local_targets
from layerprof.report.facade import Report
from layerprof.timing.layers import LayerTimer
from layerprof.timing.rows import median_iqr, timed_rows
from layerprof.walk.collect import ROOT_NAME
from layerprof.walk.hooks import remove_all
from layerprof.walk.inputs import InputSpec, describe, model_device

__all__ = ["Profiler"]

_KEPT_VALUES = (bool, int, float, complex, str, type(None))


@dataclass(frozen=True, slots=True)
class _RecordedInputs:
    """Shapes and dtypes of a forward's tensor inputs, and its plain scalar inputs; never a tensor."""

    spec: InputSpec
    positional: tuple[Any, ...]  # the non-tensor inputs kept (scalars, strings, None), else None
    keyword: tuple[tuple[str, Any], ...]

    @staticmethod
    def of(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> _RecordedInputs:
        def keep(value: Any) -> Any:
            return value if isinstance(value, _KEPT_VALUES) else None

        return _RecordedInputs(
            describe(args, kwargs),
            tuple(keep(a) for a in args),
            tuple((k, keep(v)) for k, v in kwargs.items()),
        )

    def make(self, device: str | None) -> InputPair:
        args, kwargs = self.spec.make(device)
        made_args = tuple(
            made if spec is not None else value
            for made, spec, value in zip(args, self.spec.positional, self.positional, strict=True)
        )
        values = dict(self.keyword)
        made_kwargs = {
            key: kwargs[key] if spec is not None else values[key] for key, spec in self.spec.keyword
        }
        return made_args, made_kwargs


class Profiler:
    """Time the forwards a ``with`` block runs, on the model itself; count afterwards, untimed::

        with layerprof.Profiler(model, target="a100") as prof:
            model(x)
        report = prof.report()

    Inside the block every module of ``model`` carries two timing hooks, and the root one more that
    records the first forward's input shapes and dtypes (no tensor is kept). Every handle is removed
    when the block ends, also when it raises. :meth:`report` counts on a meta twin built from those
    shapes and gives each row the median of its times over the forwards run in the block, as
    :func:`profile` does; ``report().total.time_ms`` is the median time of the whole forward with the
    hooks on, so the coverage shows only time spent outside the rows. ``time=False`` records the
    inputs only (the report is then the same as :func:`analyze`'s). ``cache_model=False``: the
    DRAM-only verdicts. A ``torch.compile``'d model is counted through the module it wraps and not
    timed: compiled code has no per-layer times (a warning says so).
    """

    def __init__(
        self, model: nn.Module, *, target: TargetArg = "auto", time: bool = True, cache_model: bool = True
    ) -> None:
        self.cache_model = check_flag("cache_model", cache_model)
        if not isinstance(time, bool):
            raise InvalidArgumentError(f"time must be True or False, got {time!r}")
        # A torch.compile wrapper: its own hook (run eagerly) records the inputs; its module is counted.
        # Compiled code has no per-layer times, so nothing is timed.
        self._called: nn.Module | None = model if is_compiled(model) else None
        self.model = check_model(model, timed=time)
        time = time and self._called is None
        where = model_device(self.model) or torch.device("cpu")
        if time and where.type == "meta":
            raise InvalidArgumentError("the model is on the meta device: nothing to time; pass time=False")
        self.targets = resolve_targets(target)
        self._timer = LayerTimer(self.model, device=where, root_name=ROOT_NAME) if time else None
        self._handles: list[RemovableHandle] = []
        self._inputs: _RecordedInputs | None = None
        self._other_shapes = 0

    def __enter__(self) -> Profiler:
        if self._handles:
            raise InvalidArgumentError("this Profiler's block is already open; Profiler blocks do not nest")
        try:
            # Registered before the timing hooks, so that describing the inputs is outside the root's time.
            called = self._called or self.model
            self._handles.append(called.register_forward_pre_hook(self._record_inputs, with_kwargs=True))
            if self._timer is not None:
                self._timer.attach()
        except BaseException:
            self._remove_hooks()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        try:
            remove_all(self._handles)
        finally:
            if self._timer is not None:
                self._timer.close()

    def _record_inputs(self, _module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._inputs is None:
            self._inputs = _RecordedInputs.of(args, kwargs)
        elif describe(args, kwargs) != self._inputs.spec:
            self._other_shapes += 1

    def report(self) -> Report:
        """Counts from the first forward's input shapes, with the times of the forwards run so far."""
        recorded = self._inputs
        if recorded is None:
            raise InvalidArgumentError(
                "Profiler.report() needs a forward of the model inside the `with Profiler(model)` block first"
            )
        with rng_kept(self.model):  # counting on real tensors makes random inputs and draws dropout masks
            rows, unsupported, kinds = count_with_fallback(
                self.model, recorded.make("meta"), lambda: recorded.make(None), cache_model=self.cache_model
            )
        total_time_ms: float | None = None
        if self._timer is not None:
            self._timer.flush()
            timings = self._timer.timings()
            if timings.forwards:
                rows = timed_rows(rows, timings, self.targets)
                total_time_ms = median_iqr(timings.modules[ROOT_NAME].total_ms)[0]
            if self._other_shapes:
                warnings.warn(
                    f"{self._other_shapes} forwards in the Profiler block had other input shapes than the "
                    "first; the counts are for the first's, the times are medians over all forwards",
                    stacklevel=2,
                )
        warn_unsupported(unsupported)
        timed_on = local_targets(self.targets, self._timer.device) if self._timer is not None else frozenset()
        return build_report(
            self.model,
            rows,
            unsupported,
            self.targets,
            recorded.spec,
            kinds,
            total_time_ms=total_time_ms,
            timed_on=timed_on,
        )
