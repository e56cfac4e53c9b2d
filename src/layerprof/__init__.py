"""layerprof: layer-by-layer FLOPs, memory traffic, timing and roofline verdicts for PyTorch CNNs.

Conventions: one FLOP is one multiply or one add (a multiply-accumulate is 2 FLOPs); bytes are what
each aten op reads and writes at each tensor's own dtype; operational intensity is FLOPs per byte.
"""

from __future__ import annotations

from layerprof.budgets import BudgetResult, Budgets, assert_within
from layerprof.crosscheck import Crosscheck, Disagreement
from layerprof.demo_model import DemoNet, demo_model
from layerprof.devices import DeviceSpec, get_device, list_devices, load_devices
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
from layerprof.profiler import Profiler, analyze, profile
from layerprof.records import LayerRow, Verdict
from layerprof.report import Report
from layerprof.whatif import ConvCost, conv_cost

__version__ = "0.1.0"


def measure_device(*args: object, **kwargs: object) -> DeviceSpec:
    """This machine's measured ceilings (see :func:`layerprof.measure.measure_device`)."""
    from layerprof.measure import measure_device as measure

    return measure(*args, **kwargs)  # type: ignore[arg-type]


__all__ = [
    "BudgetResult",
    "Budgets",
    "ConvCost",
    "Crosscheck",
    "DemoNet",
    "DeviceMismatchError",
    "DeviceSpec",
    "Disagreement",
    "ForwardError",
    "InvalidArgumentError",
    "InvalidDeviceSpecError",
    "InvalidModelError",
    "LayerRow",
    "LayerprofError",
    "ModelLoadError",
    "Profiler",
    "Report",
    "UnknownDeviceError",
    "Verdict",
    "__version__",
    "analyze",
    "assert_within",
    "conv_cost",
    "demo_model",
    "get_device",
    "list_devices",
    "load_devices",
    "measure_device",
    "profile",
]
