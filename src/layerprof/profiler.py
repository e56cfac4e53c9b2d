"""analyze / profile / Profiler: run a model under the counter (and the timer) and build a Report."""

from __future__ import annotations

import logging
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from layerprof.collect import Collector, OpCounter
from layerprof.devices import DeviceSpec
from layerprof.dtypes import parse_dtype
from layerprof.errors import ForwardError, InvalidArgumentError, InvalidModelError
from layerprof.inputs import (
    InputSpec,
    Inputs,
    check_devices,
    check_rank,
    describe,
    model_device,
    sizes_to_spec,
    split_inputs,
    to_meta,
)
from layerprof.records import LayerRow
from layerprof.report import Report
from layerprof.targets import TargetArg, resolve_targets
from layerprof.totals import total_row
from layerprof.verdicts import judge
from layerprof.twin import make_twin

logger = logging.getLogger(__name__)


def check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise InvalidModelError(f"model must be a torch.nn.Module, got {type(model).__name__}: {model!r:.80}")
    return model


def count(
    model: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any], *, to_meta_device: bool,
    dtype: torch.dtype | None = None,
) -> tuple[list[LayerRow], dict[str, int], dict[str, str]]:
    """Run one forward of a twin of ``model`` under the counter; the user's model is never touched."""
    twin = make_twin(model, to_meta=to_meta_device, dtype=dtype)
    collector = Collector(twin)
    collector.attach()
    try:
        with torch.no_grad(), OpCounter(collector):
            twin(*args, **kwargs)
    except Exception as error:
        layer = collector.running_layer or "(before the first layer)"
        raise ForwardError(
            f"the forward of {type(model).__name__} failed in layer {layer}: {type(error).__name__}: {error}",
            layer,
        ) from error
    finally:
        collector.close()
    return collector.rows(), dict(collector.unsupported), collector.module_kinds()


def warn_unsupported(unsupported: Mapping[str, int]) -> None:
    if unsupported:
        listed = ", ".join(f"{op} x{n}" for op, n in sorted(unsupported.items()))
        warnings.warn(
            f"layerprof has no FLOP formula for {listed}: their bytes are counted, their FLOPs are 0 "
            "(see report.unsupported)",
            stacklevel=3,
        )


def build_report(
    model: nn.Module,
    rows: Sequence[LayerRow],
    unsupported: Mapping[str, int],
    targets: Sequence[DeviceSpec],
    spec: InputSpec | None,
    kinds: Mapping[str, str],
    *,
    total_time_ms: float | None = None,
) -> Report:
    judged = [judge(row, targets) for row in rows]
    total = total_row(judged, kind=type(model).__name__, time_ms=total_time_ms)
    total = judge(total, targets, rows=judged)
    timed = [r.time_ms for r in judged if r.time_ms is not None]
    coverage = sum(timed) / total_time_ms if timed and total_time_ms else None
    return Report(
        layers=tuple(judged),
        total=total,
        unsupported=MappingProxyType(dict(unsupported)),
        targets=tuple(targets),
        coverage=coverage,
        model_name=type(model).__name__,
        inputs=spec,
        module_kinds=MappingProxyType(dict(kinds)),
        _model=weakref.ref(model),
    )


def analyze(
    model: nn.Module,
    inputs: Inputs | None = None,
    *,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    dtype: torch.dtype | str | None = None,
    target: TargetArg = None,
) -> Report:
    """Count FLOPs and bytes per layer; nothing is timed.

    With ``input_size`` (batch first; a sequence of sizes for several inputs) the model runs on the
    meta device at ``dtype`` (default float32): shapes only, no compute, no memory. With ``inputs``
    (a tensor, a tuple or a dict) it runs once on them, under ``torch.no_grad()``. Either way a twin
    of the model runs, so the model itself keeps its hooks, buffers, flags and device.
    """
    model = check_model(model)
    targets = resolve_targets(target)
    if (inputs is None) == (input_size is None):
        raise InvalidArgumentError("give exactly one of inputs or input_size")
    if input_size is not None:
        run_dtype = parse_dtype(dtype) if dtype is not None else torch.float32
        if not run_dtype.is_floating_point:
            raise InvalidArgumentError(f"dtype {run_dtype} is not a floating dtype; analyze runs the model in it")
        spec = sizes_to_spec(input_size, run_dtype)
        check_rank(model, spec)
        args, kwargs = spec.make("meta")
        rows, unsupported, kinds = count(model, args, kwargs, to_meta_device=True, dtype=run_dtype)
    else:
        if dtype is not None:
            raise InvalidArgumentError(
                f"dtype={dtype!r} applies to input_size only; with real inputs, cast the model and inputs"
            )
        args, kwargs = split_inputs(inputs)  # type: ignore[arg-type]
        spec = describe(args, kwargs)
        where = model_device(model)
        on_meta = where is not None and where.type == "meta"
        if on_meta:
            args, kwargs = to_meta(args, kwargs)
        else:
            check_devices(model, args, kwargs)
        rows, unsupported, kinds = count(model, args, kwargs, to_meta_device=on_meta)
    warn_unsupported(unsupported)
    return build_report(model, rows, unsupported, targets, spec, kinds)


def with_time(row: LayerRow, time_ms: float | None, iqr_ms: float | None) -> LayerRow:
    return replace(row, time_ms=time_ms, time_iqr_ms=iqr_ms)
