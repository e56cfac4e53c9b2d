"""analyze / profile / Profiler: run a model under the counter (and the timer) and build a Report."""

from __future__ import annotations

import contextlib
import logging
import statistics
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from layerprof.core import rownames
from layerprof.core.dtypes import dtype_name, parse_dtype
from layerprof.core.records import LayerRow
from layerprof.distributed.gather import default_gather
from layerprof.errors import ForwardError, InvalidArgumentError, InvalidModelError, LayerprofError
from layerprof.hardware.targets import TargetArg, resolve_targets
from layerprof.report.assemble import build_report, local_targets
from layerprof.report.facade import Report
from layerprof.timing.kernels import kernel_times
from layerprof.timing.layers import LayerTimer, check_counts, measure
from layerprof.timing.rows import median_iqr, timed_rows
from layerprof.walk.collect import ROOT_NAME, Collector, OpCounter
from layerprof.walk.hooks import remove_all
from layerprof.walk.inputs import (
    Inputs,
    InputSpec,
    check_devices,
    check_rank,
    describe,
    model_device,
    sizes_to_spec,
    split_inputs,
    to_meta,
)
from layerprof.walk.twin import make_twin

logger = logging.getLogger(__name__)

# int8 inference is counted in a 1-byte float on meta: same shapes, same bytes, and meta kernels exist.
INT8_STAND_IN = torch.float8_e4m3fn


def check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise InvalidModelError(f"model must be a torch.nn.Module, got {type(model).__name__}: {model!r:.80}")
    return model


def count(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    to_meta_device: bool,
    dtype: torch.dtype | None = None,
    backward: bool = False,
) -> tuple[list[LayerRow], dict[str, int], dict[str, str]]:
    """Run one forward of a twin of ``model`` under the counter; the user's model is never touched.

    With ``backward`` (meta only, so no gradient reaches the user's parameters) the forward runs
    with autograd on and is followed by the backward of the sum of its floating outputs: the rows
    of a training step, backward rows charged to the layers whose forward made them.
    """
    if backward and not to_meta_device:
        raise InvalidArgumentError("backward counting runs on the meta device only")
    twin = make_twin(model, to_meta=to_meta_device, dtype=dtype)
    collector = Collector(twin, track_backward=backward)
    collector.attach()
    try:
        with torch.set_grad_enabled(backward), OpCounter(collector, fast_meta=to_meta_device):
            output = twin(*args, **kwargs)
            if backward:
                _training_loss(output).backward()  # type: ignore[no-untyped-call]
    except LayerprofError:
        raise  # a bad argument found on the way (no output needs a gradient): not a failed forward
    except Exception as error:
        layer = collector.running_layer or "(before the first layer)"
        raise ForwardError(
            f"the forward of {type(model).__name__} failed in layer {layer}: {type(error).__name__}: {error}",
            layer,
        ) from error
    finally:
        collector.close()
        collector.release_graph()
    return collector.rows(), dict(collector.unsupported), collector.module_kinds()


def _training_loss(output: Any) -> torch.Tensor:
    """A scalar standing in for the loss: the sum of every floating output that needs a gradient."""
    tensors = [t for t in _flat_tensors(output) if t.is_floating_point() and t.requires_grad]
    if not tensors:
        raise InvalidArgumentError(
            "backward=True needs an output that requires grad; no parameter of the model requires grad"
        )
    total = tensors[0].float().sum()
    for tensor in tensors[1:]:
        total = total + tensor.float().sum()
    return total


def _flat_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _flat_tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat_tensors(v)]
    return []


def warn_unsupported(unsupported: Mapping[str, int]) -> None:
    if unsupported:
        listed = ", ".join(f"{op} x{n}" for op, n in sorted(unsupported.items()))
        warnings.warn(
            f"layerprof has no FLOP formula for {listed}: their bytes are counted, their FLOPs are 0 "
            "(see report.unsupported)",
            stacklevel=3,
        )


def analyze(
    model: nn.Module,
    inputs: Inputs | None = None,
    *,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    dtype: torch.dtype | str | None = None,
    target: TargetArg = None,
    backward: bool = False,
) -> Report:
    """Count FLOPs and bytes per layer; nothing is timed.

    With ``input_size`` (batch first; a sequence of sizes for several inputs) the model runs on the
    meta device at ``dtype`` (default float32): shapes only, no compute, no memory. ``dtype=torch.int8``
    audits int8 inference: the model runs in a 1-byte float on meta (the same bytes as int8) and its
    rows are priced at the targets' int8 peaks. With ``inputs`` (a tensor, a tuple or a dict) it runs
    once on them, under ``torch.no_grad()``. Either way a twin of the model runs, so the model itself
    keeps its hooks, buffers, flags and device. The model is counted in the mode it is in
    (``model.eval()`` for inference counts).

    ``backward=True`` counts a training step instead: forward and backward on the meta device (real
    inputs are replaced by meta tensors of the same shapes), backward rows (``phase="backward"``)
    charged to the layers whose forward made them, as if the loss were the sum of the outputs.
    """
    if not isinstance(backward, bool):
        raise InvalidArgumentError(f"backward must be True or False, got {backward!r}")
    model = check_model(model)
    targets = resolve_targets(target)
    if (inputs is None) == (input_size is None):
        raise InvalidArgumentError("give exactly one of inputs or input_size")
    if input_size is not None:
        run_dtype = parse_dtype(dtype) if dtype is not None else torch.float32
        int8 = run_dtype == torch.int8
        if int8:
            run_dtype = INT8_STAND_IN
        elif not run_dtype.is_floating_point:
            raise InvalidArgumentError(
                f"dtype {run_dtype} is not a floating dtype (nor int8); analyze runs the model in it"
            )
        spec = sizes_to_spec(input_size, run_dtype)
        args, kwargs = spec.make("meta")
        try:
            rows, unsupported, kinds = count(
                model, args, kwargs, to_meta_device=True, dtype=run_dtype, backward=backward
            )
        except ForwardError as error:
            # Most often the size itself: say so when it does not fit the model's first convolution.
            check_rank(model, spec, error)
            raise
        if int8:
            rows = [replace(r, dtype="int8") if r.dtype == dtype_name(INT8_STAND_IN) else r for r in rows]
    else:
        if dtype is not None:
            raise InvalidArgumentError(
                f"dtype={dtype!r} applies to input_size only; with real inputs, cast the model and inputs"
            )
        args, kwargs = split_inputs(inputs)  # type: ignore[arg-type]
        spec = describe(args, kwargs)
        where = model_device(model)
        on_meta = where is not None and where.type == "meta"
        if not on_meta:
            check_devices(model, args, kwargs)
        if on_meta or backward:
            args, kwargs = to_meta(args, kwargs)
        rows, unsupported, kinds = count(
            model, args, kwargs, to_meta_device=on_meta or backward, backward=backward
        )
    warn_unsupported(unsupported)
    return build_report(model, rows, unsupported, targets, spec, kinds)


def with_time(row: LayerRow, time_ms: float | None, iqr_ms: float | None) -> LayerRow:
    return replace(row, time_ms=time_ms, time_iqr_ms=iqr_ms)


# -- profile / Profiler: counting (untimed) plus timing ----------------------------------------------
InputPair = tuple[tuple[Any, ...], dict[str, Any]]


def count_with_fallback(
    model: nn.Module, meta_inputs: InputPair, real_inputs: Callable[[], InputPair]
) -> tuple[list[LayerRow], dict[str, int], dict[str, str]]:
    """Count on a meta twin; when that forward raises (a model that needs values, such as ``.item()``),
    count once more on a real twin with ``real_inputs()``."""
    args, kwargs = meta_inputs
    try:
        return count(model, args, kwargs, to_meta_device=True)
    except ForwardError as error:
        logger.info("counting on the meta device failed (%s); counting on real inputs instead", error)
    args, kwargs = real_inputs()
    return count(model, args, kwargs, to_meta_device=False)


def _run_device(model: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> torch.device:
    where = model_device(model)
    if where is not None:
        return where
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.device
    return torch.device("cpu")


def _on(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    return torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()


def _module_calls(rows: Sequence[LayerRow]) -> int:
    # Extra calls of shared modules, beyond one call per module, from the counting pass.
    return sum(max(0, row.calls - 1) for row in rows if not rownames.is_glue(row.name))


class ReportGather(Protocol):
    """What :func:`profile` asks of a ``gather`` helper (:class:`layerprof.RankGather` is one)."""

    def finish(self, report: Report, step: int) -> Report: ...


def profile(
    model: nn.Module,
    inputs: Inputs,
    *,
    target: TargetArg = "auto",
    warmup: int = 5,
    repeat: int = 20,
    kernel_time: bool = False,
    gather: ReportGather | bool | None = None,
) -> Report:
    """Count FLOPs and bytes per layer, then time every layer on this machine (the model's device).

    * Counting runs untimed, on a meta twin fed inputs of the same shapes and dtypes (on a real twin
      and the real inputs when the model needs values, e.g. ``.item()``).
    * Timing runs ``warmup`` rounds, then ``repeat`` rounds, under ``torch.no_grad()``. A round is one
      forward of a twin without any hook (timed whole: the end-to-end time) and one forward of a twin
      that carries the timing hooks (:mod:`layerprof.timing.layers`: clocks on the CPU, CUDA events on a GPU).
      The twins share the model's parameters and own copies of its buffers, so the model gets no hooks
      and its running statistics do not move.
    * A row's ``time_ms`` is the median over the rounds, ``time_iqr_ms`` its interquartile range. A
      leaf module's row gets its module's time (all calls in one forward summed); a container's glue
      rows share its self time (its time minus its children's), split in proportion to their roofline
      times on the first target (to their bytes without a target) when there are several.
    * ``report.total.time_ms`` is the median end-to-end time and ``report.coverage`` the sum of the
      row times over it: above 1 by the hooks' cost, below 1 by time spent outside every row.
    * ``kernel_time=True`` (model on CUDA only) adds one forward under ``torch.profiler``:
      ``report.kernel_time_ms`` maps each row to the duration of the CUDA kernels it launched.
    * Under ``torch.distributed`` with several ranks every rank profiles its own model, and rank 0
      returns one report of all ranks (row times the medians over the ranks, ``report.ranks`` each
      rank's); the other ranks return their own. Every rank must call it. ``gather=False`` keeps each
      rank's own report; a ``layerprof.RankGather(...)`` configures the gathering.
    """
    model = check_model(model)
    check_counts(warmup, repeat)
    gatherer: ReportGather | None = default_gather(gather)
    if gatherer is not None and not callable(getattr(gatherer, "finish", None)):
        raise InvalidArgumentError(f"gather must be a layerprof.RankGather, got {gather!r:.80}")
    if not isinstance(kernel_time, bool):
        raise InvalidArgumentError(f"kernel_time must be True or False, got {kernel_time!r}")
    args, kwargs = split_inputs(inputs)
    where = _run_device(model, args, kwargs)
    if where.type == "meta":
        raise InvalidArgumentError(
            "profile times real forwards, but the model is on the meta device; use analyze"
        )
    check_devices(model, args, kwargs)
    if kernel_time and where.type != "cuda":
        raise InvalidArgumentError(
            f"kernel_time=True times CUDA kernels, but the model runs on {where}; it needs a model on cuda"
        )
    targets = resolve_targets(target)
    spec = describe(args, kwargs)
    rows, unsupported, kinds = count_with_fallback(model, to_meta(args, kwargs), lambda: (args, kwargs))

    hooked = make_twin(model, to_meta=False)
    plain = make_twin(model, to_meta=False)
    timer = LayerTimer(hooked, device=where, root_name=ROOT_NAME)
    timer.reserve(2 * (len(timer.names) + _module_calls(rows)))
    kernels: dict[str, float] | None = None
    try:
        with torch.no_grad(), _on(where):
            with timer:
                measurement = measure(
                    lambda: hooked(*args, **kwargs),
                    lambda: plain(*args, **kwargs),
                    timer,
                    warmup=warmup,
                    repeat=repeat,
                )
            if kernel_time:
                kernels = kernel_times(
                    lambda: plain(*args, **kwargs), plain, rows, targets, device=where, root_name=ROOT_NAME
                )
    except Exception as error:
        layer = timer.running_layer() or "(outside the layers)"
        raise ForwardError(
            f"the forward of {type(model).__name__} failed while timing, in layer {layer}: "
            f"{type(error).__name__}: {error}",
            layer,
        ) from error
    rows = timed_rows(rows, measurement.timings, targets)
    warn_unsupported(unsupported)
    end_to_end_ms = statistics.median(measurement.end_to_end_ms)
    report = build_report(
        model,
        rows,
        unsupported,
        targets,
        spec,
        kinds,
        total_time_ms=end_to_end_ms,
        kernel_time_ms=kernels,
        timed_on=local_targets(targets, where),
    )
    return report if gatherer is None else gatherer.finish(report, 0)


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
    inputs only (the report is then the same as :func:`analyze`'s).
    """

    def __init__(self, model: nn.Module, *, target: TargetArg = "auto", time: bool = True) -> None:
        self.model = check_model(model)
        if not isinstance(time, bool):
            raise InvalidArgumentError(f"time must be True or False, got {time!r}")
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
            self._handles.append(self.model.register_forward_pre_hook(self._record_inputs, with_kwargs=True))
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
        rows, unsupported, kinds = count_with_fallback(
            self.model, recorded.make("meta"), lambda: recorded.make(None)
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
