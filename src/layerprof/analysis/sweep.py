"""What-ifs over one convolution: kernel sizes, channels, groups, dtypes and batch sizes, on targets.

Every point is the counter's own answer: the convolution is built on the meta device (nothing is
computed or allocated) and priced by :func:`layerprof.analyze`, so a point's FLOPs, bytes, bytes per
memory level, bound and roofline time are the very figures a model holding that convolution would
report for it, through the same formulas, the same cache model and the same verdict code.

Each list-valued parameter (a ``list`` or ``range``) is an axis and the points are the product of the
axes; a tuple is one value (``input_size=(56, 56)``, ``kernel_size=(1, 7)``). ``model=`` and
``layer=`` take a model's convolution and the input it sees (one analyze of the model) and sweep it.
The layer is priced alone, as if it ran over and over: its FLOPs and bytes are its row's in the
model, and so are its DRAM-only verdicts (``cache_model=False``); where its bytes come from in the
cache model depends on its neighbours in the model, so the cache-aware split may differ from the
model's row.
"""

from __future__ import annotations

import difflib
import itertools
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from layerprof.analysis.sweep_axes import (
    AXIS_ORDER,
    HALF,
    ConvParams,
    axis_values,
    check_conv,
    label_of,
)
from layerprof.core.dtypes import parse_dtype
from layerprof.core.records import Verdict, intensity_of
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.targets import TargetArg, resolve_targets

__all__ = ["Sweep", "SweepPoint", "sweep"]

DEFAULT_TARGETS = ("gtx1080", "t4")


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One convolution of a sweep and what the counter says about it on each target."""

    params: ConvParams
    output_size: tuple[int, int]
    flops: int
    matrix_flops: int
    params_count: int
    bytes_read: int
    bytes_written: int
    #: target name -> the verdict :func:`layerprof.analyze` gives this convolution on it
    verdicts: Mapping[str, Verdict] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def macs(self) -> int:
        return self.matrix_flops // 2

    @property
    def bytes_moved(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        return intensity_of(self.flops, self.bytes_read, self.bytes_written)

    def value(self, axis: str) -> object:
        """This point's value of one axis (``channels``: both sides, the input's)."""
        return getattr(self.params, "in_channels" if axis == "channels" else axis)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.params.to_dict(),
            "output_size": list(self.output_size),
            "flops": self.flops,
            "matrix_flops": self.matrix_flops,
            "macs": self.macs,
            "params": self.params_count,
            "bytes_read": self.bytes_read,
            "bytes_written": self.bytes_written,
            "intensity": self.intensity,
            "targets": {
                name: {
                    "bound": v.bound,
                    "roofline_time_ms": v.roofline_time_ms,
                    "ridge_point": v.ridge_point,
                    "attainable_flops_per_s": attainable(self.flops, v),
                    "bytes_by_level": dict(v.bytes_by_level),
                    "kernels": v.kernels,
                }
                for name, v in self.verdicts.items()
            },
        }


def attainable(flops: int, verdict: Verdict) -> float:
    """FLOP/s the point reaches at its roofline time (0 for a point of no time)."""
    return flops / (verdict.roofline_time_ms / 1e3) if verdict.roofline_time_ms > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Sweep:
    """The points of a sweep, in product order (the last axis of :data:`AXIS_ORDER` varies fastest)."""

    points: tuple[SweepPoint, ...]
    targets: tuple[DeviceSpec, ...]
    #: axis name -> its values, for the parameters given as lists (in :data:`AXIS_ORDER`)
    axes: Mapping[str, tuple[object, ...]]
    cache_model: bool = True
    #: the model layer swept (``model=``/``layer=``), and its kernel size in the model
    layer: str | None = None
    layer_kernel_size: tuple[int, int] | None = None

    @property
    def series_axis(self) -> str | None:
        """The axis a series runs along: kernel size when it is swept, else the last swept axis."""
        varying = [a for a, values in self.axes.items() if len(values) > 1]
        if "kernel_size" in varying:
            return "kernel_size"
        return varying[-1] if varying else None

    def series(self) -> list[tuple[str, list[SweepPoint]]]:
        """The points grouped by every axis but :attr:`series_axis`, each run in sweep order."""
        along = self.series_axis
        others = [a for a in self.axes if a != along and len(self.axes[a]) > 1]
        groups: dict[tuple[object, ...], list[SweepPoint]] = {}
        for point in self.points:
            groups.setdefault(tuple(point.value(a) for a in others), []).append(point)
        return [
            (" ".join(label_of(a, v) for a, v in zip(others, key, strict=True)) or "sweep", run)
            for key, run in groups.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "cache_model": self.cache_model,
            "targets": [t.name for t in self.targets],
            "axes": {a: [_jsonable(v) for v in values] for a, values in self.axes.items()},
            "points": [p.to_dict() for p in self.points],
        }

    def table(self, format: str = "table") -> str:
        """The points as ``"table"``, ``"markdown"``, ``"csv"`` or ``"json"`` text."""
        from layerprof.analysis.sweep_text import render

        return render(self, format)

    def summary(self) -> str:
        """One paragraph in plain words, built from the points (what the sweep shows)."""
        from layerprof.analysis.sweep_text import summary

        return summary(self)

    def plot(self, path: str | Path) -> Path:
        """Each target's roofline with the points on it, joined per series (.png or .svg)."""
        from layerprof.analysis.sweep_plot import plot_sweep

        return plot_sweep(self, path)


def _jsonable(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


def sweep(
    *,
    kernel_size: object = None,
    channels: object = None,
    in_channels: object = None,
    out_channels: object = None,
    input_size: object = None,
    groups: object = None,
    stride: object = None,
    padding: object = None,
    dilation: object = None,
    batch: object = None,
    dtype: object = None,
    bias: bool | None = None,
    targets: TargetArg = DEFAULT_TARGETS,
    cache_model: bool = True,
    model: nn.Module | None = None,
    layer: str | None = None,
) -> Sweep:
    """Price a convolution at every point of the product of the list-valued parameters.

    Without a model: a Conv2d of ``channels`` (both sides; or ``in_channels``/``out_channels``) on an
    ``input_size`` map (an int or ``(H, W)``), defaults kernel_size=[1, 3, 5, 7], channels=64,
    input_size=(56, 56), groups=1, stride=1, padding="same", dilation=1, batch=1, float32, no bias.
    ``padding`` is ``"same"`` (torch's; stride 1 only) or an int or pair.

    With ``model`` and ``layer`` (a Conv2d's qualified name): ``input_size`` is the model's input
    (batch first) and every parameter not given is the layer's own: its channels, groups, stride,
    dilation, bias, dtype and the input it sees. Its padding follows the kernel when the layer pads
    by half its (dilated) kernel, as "same" convolutions do (``d * (k - 1) // 2``), and stays as it is
    otherwise. Each point is :func:`layerprof.analyze` of that one convolution on ``targets``.
    """
    resolved = resolve_targets(targets)
    if not resolved:
        raise InvalidArgumentError("sweep needs at least one target, got targets=None")
    given: dict[str, object] = {
        "kernel_size": kernel_size, "in_channels": in_channels, "out_channels": out_channels,
        "groups": groups, "stride": stride, "padding": padding, "dilation": dilation, "batch": batch,
        "dtype": dtype, "bias": bias,
    }  # fmt: skip
    if channels is not None:
        if in_channels is not None or out_channels is not None:
            raise InvalidArgumentError("give channels= (both sides) or in_channels=/out_channels=, not both")
        given["channels"] = channels
        del given["in_channels"], given["out_channels"]
    layer_kernel: tuple[int, int] | None = None
    if model is not None or layer is not None:
        defaults, layer_kernel = _layer_defaults(model, layer, input_size, dtype)
    else:
        defaults = {
            "kernel_size": [1, 3, 5, 7], "in_channels": 64, "out_channels": 64, "input_size": (56, 56),
            "groups": 1, "stride": 1, "padding": "same", "dilation": 1, "batch": 1,
            "dtype": torch.float32, "bias": False,
        }  # fmt: skip
        given["input_size"] = input_size
    if "channels" in given:
        defaults.pop("in_channels")
        defaults.pop("out_channels")
    axes = {
        name: axis_values(name, given[name] if given.get(name) is not None else defaults[name])
        for name in AXIS_ORDER
        if name in given or name in defaults
    }
    every = []
    for combo in itertools.product(*axes.values()):
        values = dict(zip(axes, combo, strict=True))
        if "channels" in values:
            values["in_channels"] = values["out_channels"] = values.pop("channels")
        params = ConvParams(**values)  # type: ignore[arg-type]
        check_conv(params)  # every point is checked before any is priced
        every.append(params)
    points = [_price(params, resolved, cache_model) for params in every]
    swept = {
        name: values
        for name, values in axes.items()
        if isinstance(_raw(name, given, defaults), (list, range))
    }
    return Sweep(tuple(points), resolved, MappingProxyType(swept), cache_model, layer, layer_kernel)


def _raw(name: str, given: Mapping[str, object], defaults: Mapping[str, object]) -> object:
    value = given.get(name)
    return value if value is not None else defaults.get(name)


def _price(params: ConvParams, targets: Sequence[DeviceSpec], cache_model: bool) -> SweepPoint:
    """The counter's figures for one convolution: analyze of it, built on meta."""
    from layerprof.api.analyzing import analyze

    padding: str | tuple[int, int] = params.padding
    if padding == HALF:
        padding = params.half_padding()
    with torch.device("meta"):
        conv = nn.Conv2d(
            params.in_channels, params.out_channels, params.kernel_size, stride=params.stride,
            padding=padding, dilation=params.dilation, groups=params.groups, bias=params.bias,
        )  # fmt: skip
    with warnings.catch_warnings():
        # torch's note that "same" with an even kernel pads a copy: the counter prices that copy.
        warnings.filterwarnings("ignore", message="Using padding='same' with even kernel")
        report = analyze(
            conv,
            input_size=(params.batch, params.in_channels, *params.input_size),
            dtype=parse_dtype(params.dtype),
            target=list(targets),
            cache_model=cache_model,
        )
    row = report.total
    (output,) = report.layers[0].output_shapes
    return SweepPoint(
        params=params,
        output_size=(output[2], output[3]),
        flops=row.flops,
        matrix_flops=row.matrix_flops,
        params_count=row.params,
        bytes_read=row.bytes_read,
        bytes_written=row.bytes_written,
        verdicts=row.roofline,
    )


def _layer_defaults(
    model: nn.Module | None, layer: str | None, input_size: object, dtype: object
) -> tuple[dict[str, object], tuple[int, int]]:
    """The swept layer's own parameters and the input it sees in ``model`` (one analyze)."""
    from layerprof.api.analyzing import analyze

    if model is None or layer is None:
        raise InvalidArgumentError("sweep a model's layer with both model= and layer=, got only one")
    if not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if input_size is None:
        raise InvalidArgumentError("sweep(model=..., layer=...) needs the model's input_size, batch first")
    modules = dict(model.named_modules())
    if layer not in modules:
        convs = [name for name, m in modules.items() if isinstance(m, nn.Conv2d)]
        close = difflib.get_close_matches(str(layer), convs, n=3, cutoff=0.5)
        hint = (
            f"the closest: {', '.join(close)}" if close else f"its Conv2d layers start {', '.join(convs[:6])}"
        )
        raise InvalidArgumentError(f"model has no layer {layer!r}; {hint}")
    conv = modules[layer]
    if type(conv) is not nn.Conv2d:
        raise InvalidArgumentError(
            f"layer {layer!r} is a {type(conv).__name__}, not a Conv2d: sweep prices a Conv2d"
        )
    first_dtype = dtype[0] if isinstance(dtype, list) and dtype else dtype
    report = analyze(model, input_size=input_size, dtype=first_dtype, target=None, cache_model=False)  # type: ignore[arg-type]
    row = report.row(layer)
    batch, _, height, width = row.input_shapes[0]
    kernel = (int(conv.kernel_size[0]), int(conv.kernel_size[1]))
    dilation = (int(conv.dilation[0]), int(conv.dilation[1]))
    if conv.padding == "same":
        padding: object = "same"
    elif tuple(conv.padding) == tuple(d * (k - 1) // 2 for d, k in zip(dilation, kernel, strict=True)):
        padding = HALF
    else:
        padding = tuple(int(p) for p in conv.padding)
    defaults: dict[str, object] = {
        "kernel_size": kernel, "in_channels": conv.in_channels, "out_channels": conv.out_channels,
        "input_size": (height, width), "groups": conv.groups, "stride": tuple(conv.stride),
        "padding": padding, "dilation": dilation, "batch": batch,
        "dtype": row.dtype or "float32", "bias": conv.bias is not None,
    }  # fmt: skip
    return defaults, kernel
