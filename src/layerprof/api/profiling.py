"""``layerprof.profile``: count untimed on a twin, then time every layer over warmup and repeat rounds."""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from layerprof.api.counting import check_flag, check_model, warn_unsupported
from layerprof.api.footprint import footprint_run, with_measured_memory
from layerprof.api.real_inputs import count_with_fallback
from layerprof.api.rng import keeps_rng
from layerprof.core import rownames
from layerprof.core.records import LayerRow
from layerprof.distributed.gather import default_gather
from layerprof.errors import ForwardError, InvalidArgumentError
from layerprof.hardware.targets import TargetArg, resolve_targets
from layerprof.report.assemble import build_report, local_targets
from layerprof.report.facade import Report
from layerprof.timing.kernels import kernel_times
from layerprof.timing.layers import LayerTimer, check_counts, measure
from layerprof.timing.memory_cuda import measure_cuda_peaks
from layerprof.timing.rows import timed_rows
from layerprof.walk.collect import ROOT_NAME
from layerprof.walk.inputs import (
    Inputs,
    InputSize,
    check_devices,
    describe,
    model_device,
    sizes_to_spec,
    split_inputs,
    to_meta,
)
from layerprof.walk.twin import make_twin

__all__ = ["ReportGather", "profile"]


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

    def finish(self, report: Report, step: int) -> Report | None: ...


def _inputs(
    model: nn.Module, inputs: Inputs | None, kwargs: Mapping[str, Any] | None, input_size: InputSize | None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's (args, kwargs): the inputs given, or random ones made from ``input_size``."""
    given = inputs is not None or kwargs is not None
    if given == (input_size is not None):
        raise InvalidArgumentError(
            "profile needs example inputs (and kwargs) or input_size=(batch, ...), one of them: got "
            + ("both" if given else "neither")
        )
    if input_size is None:
        return split_inputs(inputs, kwargs)
    where = model_device(model) or torch.device("cpu")
    if where.type == "meta":
        raise InvalidArgumentError(
            "profile times real forwards, but the model is on the meta device; use analyze"
        )
    floating = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return sizes_to_spec(input_size, floating, str(where)).make()


@keeps_rng  # its twins' forwards draw dropout masks: the user's next draw must not move
def profile(
    model: nn.Module,
    inputs: Inputs | None = None,
    *,
    kwargs: Mapping[str, Any] | None = None,
    input_size: InputSize | None = None,
    target: TargetArg = "auto",
    warmup: int = 5,
    repeat: int = 20,
    kernel_time: bool = False,
    gather: ReportGather | bool | None = None,
    cache_model: bool = True,
) -> Report:
    """Count FLOPs and bytes per layer, then time every layer on this machine (the model's device).

    * The inputs: ``inputs`` is a tensor (the one positional input), a tuple or list (positional
      inputs in order) or a dict (keyword inputs: the model is called as ``model(**inputs)``);
      ``kwargs=`` gives keyword inputs next to positional ones (``profile(model, x, kwargs={"mask":
      m})`` times ``model(x, mask=m)``). Or ``input_size`` makes them, in the forms analyze takes (a
      size, a ``(size, dtype)`` pair, a sequence of those, a dict of them for keyword inputs), on the
      model's device: a size alone is an input of the model's floating dtype (float32 for a model
      without floating parameters); floating and complex inputs are ``torch.randn``, integer and
      bool ones zeros (index 0 is always valid, a mask all False). The random inputs are drawn from
      a fork of the RNG: the caller's next draw is the one it would have been.
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
    * ``cache_model=False``: the DRAM-only verdicts, as :func:`layerprof.analyze` gives them.
    """
    model = check_model(model, timed=True)
    check_flag("cache_model", cache_model)
    warmup, repeat = check_counts(warmup, repeat)
    gatherer: ReportGather | None = default_gather(gather)
    if gatherer is not None and not callable(getattr(gatherer, "finish", None)):
        raise InvalidArgumentError(f"gather must be a layerprof.RankGather, got {gather!r:.80}")
    if not isinstance(kernel_time, bool):
        raise InvalidArgumentError(f"kernel_time must be True or False, got {kernel_time!r}")
    args, kwargs = _inputs(model, inputs, kwargs, input_size)
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
    memory = footprint_run(model, targets, optimizer=None, backward=False, on_meta=True)
    rows, unsupported, kinds = count_with_fallback(
        model, to_meta(args, kwargs), lambda: (args, kwargs), memory, cache_model=cache_model
    )

    hooked = make_twin(model, to_meta=False)
    plain = make_twin(model, to_meta=False)
    timer = LayerTimer(hooked, device=where, root_name=ROOT_NAME)
    timer.reserve(2 * (len(timer.names) + _module_calls(rows)))
    kernels: dict[str, float] | None = None
    measured: tuple[int, dict[str, int]] | None = None
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
            if where.type == "cuda":  # the measured peak, next to the predicted one
                measured = measure_cuda_peaks(make_twin(model, to_meta=False), args, kwargs, where)
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
        memory=memory,
    )
    if measured is not None:
        report = with_measured_memory(report, *measured)
    gathered = None if gatherer is None else gatherer.finish(report, 0)
    return report if gathered is None else gathered
