"""The memory side of ``analyze``: which allocator rules its targets need, and the optimizer to step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from torch import nn

from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec
from layerprof.report.facade import Report
from layerprof.report.memory import rule_of
from layerprof.walk.memory_optim import optimizer_spec
from layerprof.walk.memory_run import FootprintRun

__all__ = ["footprint_run", "with_measured_memory"]


def footprint_run(
    model: nn.Module, targets: Sequence[DeviceSpec], *, optimizer: object, backward: bool, on_meta: bool
) -> FootprintRun:
    """A tracker for one counted run; ``optimizer`` (an instance or a name) needs ``backward=True``."""
    spec = optimizer_spec(optimizer, model)
    if spec is not None and not backward:
        raise InvalidArgumentError(
            f"optimizer={optimizer!r:.60} counts the optimizer step of a training step: "
            "pass backward=True too"
        )
    rules = {rule_of(t) for t in targets} or {rule_of(None)}
    return FootprintRun(optimizer=spec, rules=rules, on_meta=on_meta)


def with_measured_memory(report: Report, run_peak: int, rows: Mapping[str, int]) -> Report:
    """``report`` with the peaks measured on its CUDA device next to every predicted one."""
    measured = MappingProxyType(dict(rows))

    def add(memory: Any) -> Any:
        return replace(memory, measured_peak_bytes=run_peak, measured_row_peak_bytes=measured)

    return replace(
        report,
        memory=None if report.memory is None else add(report.memory),
        memory_by_target=MappingProxyType({name: add(m) for name, m in report.memory_by_target.items()}),
    )
