"""layerprof: layer-by-layer FLOPs, memory traffic, timing and roofline verdicts for PyTorch CNNs.

Conventions: one FLOP is one multiply or one add (a multiply-accumulate is 2 FLOPs); bytes are what
each aten op reads and writes at each tensor's own dtype; operational intensity is FLOPs per byte.

The public names load on first use (PEP 562), so that ``import layerprof`` -- and the pytest plugin,
which pytest loads in every session where layerprof is installed -- costs nothing until one is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from layerprof.version import __version__

#: Public names that are modules themselves: ``layerprof.sinks.TensorBoard(writer)``.
_MODULE = "(module)"
_PUBLIC_MODULES: dict[str, str] = {"sinks": "layerprof.api.sinks"}

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "sinks": _MODULE,
    "analyze": "layerprof.api.analyzing",
    "profile": "layerprof.api.profiling",
    "Profiler": "layerprof.api.profiler",
    "watch": "layerprof.api.watch",
    "nvtx": "layerprof.api.nvtx",
    "Watcher": "layerprof.api.watcher",
    "Report": "layerprof.report.facade",
    "RankTimes": "layerprof.report.facade",
    "AllreduceTime": "layerprof.report.facade",
    "ParameterCounts": "layerprof.walk.params",
    "RankGather": "layerprof.distributed.gather",
    "GatherError": "layerprof.distributed.gather",
    "LayerRow": "layerprof.core.records",
    "Verdict": "layerprof.core.records",
    "DeviceSpec": "layerprof.hardware.specs",
    "get_device": "layerprof.hardware.table",
    "list_devices": "layerprof.hardware.table",
    "load_devices": "layerprof.hardware.files",
    "LinkSpec": "layerprof.hardware.links",
    "get_link": "layerprof.hardware.table",
    "list_links": "layerprof.hardware.table",
    "predict_scaling": "layerprof.analysis.scaling",
    "ScalingPrediction": "layerprof.analysis.scaling",
    "predict_scaling_global": "layerprof.analysis.scaling_global",
    "measure_device": "layerprof.hardware.measure",
    "conv_cost": "layerprof.analysis.whatif",
    "ConvCost": "layerprof.analysis.whatif",
    "sweep": "layerprof.analysis.sweep",
    "Sweep": "layerprof.analysis.sweep",
    "SweepPoint": "layerprof.analysis.sweep",
    "Crosscheck": "layerprof.report.crosscheck",
    "Disagreement": "layerprof.report.crosscheck",
    "DemoNet": "layerprof.models.demonet",
    "demo_model": "layerprof.models.demonet",
    "Budgets": "layerprof.analysis.budgets",
    "BudgetResult": "layerprof.analysis.budgets",
    "assert_within": "layerprof.analysis.budgets",
    "max_batch": "layerprof.analysis.max_batch",
    "compare_devices": "layerprof.analysis.cards",
    "CardsResult": "layerprof.analysis.cards",
    "CardRow": "layerprof.analysis.cards",
    "MemoryReport": "layerprof.report.memory",
    "MemorySnapshot": "layerprof.report.memory",
    "LayerprofError": "layerprof.errors",
    "InvalidArgumentError": "layerprof.errors",
    "InvalidModelError": "layerprof.errors",
    "DeviceMismatchError": "layerprof.errors",
    "UnknownDeviceError": "layerprof.errors",
    "InvalidDeviceSpecError": "layerprof.errors",
    "ForwardError": "layerprof.errors",
    "FormulaError": "layerprof.errors",
    "ModelLoadError": "layerprof.errors",
}

__all__ = [
    "AllreduceTime",
    "BudgetResult",
    "Budgets",
    "CardRow",
    "CardsResult",
    "ConvCost",
    "Crosscheck",
    "DemoNet",
    "DeviceMismatchError",
    "DeviceSpec",
    "Disagreement",
    "FormulaError",
    "ForwardError",
    "GatherError",
    "InvalidArgumentError",
    "InvalidDeviceSpecError",
    "InvalidModelError",
    "LayerRow",
    "LayerprofError",
    "LinkSpec",
    "MemoryReport",
    "MemorySnapshot",
    "ModelLoadError",
    "ParameterCounts",
    "Profiler",
    "RankGather",
    "RankTimes",
    "Report",
    "ScalingPrediction",
    "Sweep",
    "SweepPoint",
    "UnknownDeviceError",
    "Verdict",
    "Watcher",
    "__version__",
    "analyze",
    "assert_within",
    "compare_devices",
    "conv_cost",
    "demo_model",
    "get_device",
    "get_link",
    "list_devices",
    "list_links",
    "load_devices",
    "max_batch",
    "measure_device",
    "nvtx",
    "predict_scaling",
    "predict_scaling_global",
    "profile",
    "sinks",
    "sweep",
    "watch",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'layerprof' has no attribute {name!r}")
    if module == _MODULE:
        return importlib.import_module(_PUBLIC_MODULES[name])
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from layerprof.analysis.budgets import BudgetResult, Budgets, assert_within
    from layerprof.analysis.cards import CardRow, CardsResult, compare_devices
    from layerprof.analysis.max_batch import max_batch
    from layerprof.analysis.scaling import ScalingPrediction, predict_scaling
    from layerprof.analysis.scaling_global import predict_scaling_global
    from layerprof.analysis.sweep import Sweep, SweepPoint, sweep
    from layerprof.analysis.whatif import ConvCost, conv_cost
    from layerprof.api import sinks
    from layerprof.api.analyzing import analyze
    from layerprof.api.nvtx import nvtx
    from layerprof.api.profiler import Profiler
    from layerprof.api.profiling import profile
    from layerprof.api.watch import watch
    from layerprof.api.watcher import Watcher
    from layerprof.core.records import LayerRow, Verdict
    from layerprof.distributed.gather import GatherError, RankGather
    from layerprof.errors import (
        DeviceMismatchError,
        FormulaError,
        ForwardError,
        InvalidArgumentError,
        InvalidDeviceSpecError,
        InvalidModelError,
        LayerprofError,
        ModelLoadError,
        UnknownDeviceError,
    )
    from layerprof.hardware.files import load_devices
    from layerprof.hardware.links import LinkSpec
    from layerprof.hardware.measure import measure_device
    from layerprof.hardware.specs import DeviceSpec
    from layerprof.hardware.table import get_device, get_link, list_devices, list_links
    from layerprof.models.demonet import DemoNet, demo_model
    from layerprof.report.crosscheck import Crosscheck, Disagreement
    from layerprof.report.facade import AllreduceTime, RankTimes, Report
    from layerprof.report.memory import MemoryReport, MemorySnapshot
    from layerprof.walk.params import ParameterCounts
