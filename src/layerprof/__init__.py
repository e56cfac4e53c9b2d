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

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "analyze": "layerprof.profiler",
    "profile": "layerprof.profiler",
    "Profiler": "layerprof.profiler",
    "watch": "layerprof.training",
    "Watcher": "layerprof.training",
    "Report": "layerprof.report",
    "RankTimes": "layerprof.report",
    "AllreduceTime": "layerprof.report",
    "RankGather": "layerprof.distributed",
    "GatherError": "layerprof.distributed",
    "LayerRow": "layerprof.records",
    "Verdict": "layerprof.records",
    "DeviceSpec": "layerprof.devices",
    "get_device": "layerprof.devices",
    "list_devices": "layerprof.devices",
    "load_devices": "layerprof.devices",
    "LinkSpec": "layerprof.devices",
    "get_link": "layerprof.devices",
    "list_links": "layerprof.devices",
    "predict_scaling": "layerprof.scaling",
    "ScalingPrediction": "layerprof.scaling",
    "measure_device": "layerprof.measure",
    "conv_cost": "layerprof.whatif",
    "ConvCost": "layerprof.whatif",
    "Crosscheck": "layerprof.crosscheck",
    "Disagreement": "layerprof.crosscheck",
    "DemoNet": "layerprof.demonet",
    "demo_model": "layerprof.demonet",
    "Budgets": "layerprof.budgets",
    "BudgetResult": "layerprof.budgets",
    "assert_within": "layerprof.budgets",
    "LayerprofError": "layerprof.errors",
    "InvalidArgumentError": "layerprof.errors",
    "InvalidModelError": "layerprof.errors",
    "DeviceMismatchError": "layerprof.errors",
    "UnknownDeviceError": "layerprof.errors",
    "InvalidDeviceSpecError": "layerprof.errors",
    "ForwardError": "layerprof.errors",
    "ModelLoadError": "layerprof.errors",
}

__all__ = [
    "AllreduceTime",
    "BudgetResult",
    "Budgets",
    "ConvCost",
    "Crosscheck",
    "DemoNet",
    "DeviceMismatchError",
    "DeviceSpec",
    "Disagreement",
    "ForwardError",
    "GatherError",
    "InvalidArgumentError",
    "InvalidDeviceSpecError",
    "InvalidModelError",
    "LayerRow",
    "LayerprofError",
    "LinkSpec",
    "ModelLoadError",
    "Profiler",
    "RankGather",
    "RankTimes",
    "Report",
    "ScalingPrediction",
    "UnknownDeviceError",
    "Verdict",
    "Watcher",
    "__version__",
    "analyze",
    "assert_within",
    "conv_cost",
    "demo_model",
    "get_device",
    "get_link",
    "list_devices",
    "list_links",
    "load_devices",
    "measure_device",
    "predict_scaling",
    "profile",
    "watch",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'layerprof' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from layerprof.budgets import BudgetResult, Budgets, assert_within
    from layerprof.crosscheck import Crosscheck, Disagreement
    from layerprof.demonet import DemoNet, demo_model
    from layerprof.devices import (
        DeviceSpec,
        LinkSpec,
        get_device,
        get_link,
        list_devices,
        list_links,
        load_devices,
    )
    from layerprof.distributed import GatherError, RankGather
    from layerprof.errors import (
        DeviceMismatchError,
        ForwardError,
        InvalidArgumentError,
        InvalidDeviceSpecError,
        InvalidModelError,
        LayerprofError,
        ModelLoadError,
        UnknownDeviceError,
    )
    from layerprof.measure import measure_device
    from layerprof.profiler import Profiler, analyze, profile
    from layerprof.records import LayerRow, Verdict
    from layerprof.report import AllreduceTime, RankTimes, Report
    from layerprof.scaling import ScalingPrediction, predict_scaling
    from layerprof.training import Watcher, watch
    from layerprof.whatif import ConvCost, conv_cost
