"""Putting a report together: verdicts on every row and the totals, coverage, the timed-on targets.

Shared by the profiler (analyze, profile, Profiler) and by watch().
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from types import MappingProxyType

import torch
from torch import nn

from layerprof.core.records import LayerRow
from layerprof.core.totals import total_row
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.table import match_device_name
from layerprof.report.facade import Report
from layerprof.report.memory import memory_reports
from layerprof.roofline.verdicts import judge
from layerprof.walk.inputs import InputSpec
from layerprof.walk.memory_run import FootprintRun
from layerprof.walk.params import parameter_counts


def build_report(
    model: nn.Module,
    rows: Sequence[LayerRow],
    unsupported: Mapping[str, int],
    targets: Sequence[DeviceSpec],
    spec: InputSpec | None,
    kinds: Mapping[str, str],
    *,
    total_time_ms: float | None = None,
    kernel_time_ms: Mapping[str, float] | None = None,
    timed_on: frozenset[str] = frozenset(),
    memory: FootprintRun | None = None,
) -> Report:
    judged = [judge(row, targets, timed_on=timed_on) for row in rows]
    total = total_row(judged, kind=type(model).__name__, time_ms=total_time_ms)
    total = judge(total, targets, rows=judged, timed_on=timed_on)
    timed = [r.time_ms for r in judged if r.time_ms is not None]
    coverage = sum(timed) / total_time_ms if timed and total_time_ms else None
    first, by_target = memory_reports(memory, targets) if memory is not None else (None, {})
    return Report(
        layers=tuple(judged),
        total=total,
        unsupported=MappingProxyType(dict(unsupported)),
        targets=tuple(targets),
        coverage=coverage,
        model_name=type(model).__name__,
        inputs=spec,
        module_kinds=MappingProxyType(dict(kinds)),
        kernel_time_ms=None if kernel_time_ms is None else MappingProxyType(dict(kernel_time_ms)),
        timed_on=timed_on,
        memory=first,
        memory_by_target=MappingProxyType(by_target),
        parameters=parameter_counts(model, judged),
        _model=weakref.ref(model),
    )


def local_targets(targets: Sequence[DeviceSpec], device: torch.device) -> frozenset[str]:
    """The targets a time measured on ``device`` can be judged against: measured specs of this
    machine, and the table entry of the CUDA device itself (profiling on an H100 against h100-sxm)."""
    names = {t.name for t in targets if t.measured}
    if device.type == "cuda" and torch.cuda.is_available():
        entry = match_device_name(torch.cuda.get_device_name(device))
        if entry is not None:
            names |= {t.name for t in targets if t.name == entry.name}
    return frozenset(names)
