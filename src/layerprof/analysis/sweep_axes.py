"""The axes of a convolution sweep: values checked and normalised, one point's parameters, labels.

A ``list`` or ``range`` is an axis of values; anything else is one value. Sizes are ints >= 1 (the
padding >= 0) or pairs of them for (height, width); dtypes are names or torch dtypes. An impossible
convolution (channels not divisible by the groups, a kernel larger than the padded input, "same"
padding with a stride) is refused with the values that make it so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from layerprof.core.dtypes import canonical_name, parse_dtype
from layerprof.core.validate import as_int
from layerprof.errors import InvalidArgumentError

__all__ = ["AXIS_ORDER", "HALF", "ConvParams", "axis_values", "check_conv", "label_of"]

#: Axes in product order: the last varies fastest, so a series over kernel sizes is one run.
AXIS_ORDER = (
    "dtype", "batch", "input_size", "channels", "in_channels", "out_channels", "groups", "stride",
    "padding", "dilation", "bias", "kernel_size",
)  # fmt: skip
#: Padding that follows the kernel, ``dilation * (kernel - 1) // 2`` per side (a model's "same" layer).
HALF = "half"

_PAIRS = ("kernel_size", "stride", "dilation", "input_size")
_COUNTS = ("channels", "in_channels", "out_channels", "groups", "batch")


@dataclass(frozen=True, slots=True)
class ConvParams:
    """One convolution of a sweep (a Conv2d and its input)."""

    dtype: str
    batch: int
    input_size: tuple[int, int]
    in_channels: int
    out_channels: int
    groups: int
    stride: tuple[int, int]
    padding: str | tuple[int, int]
    dilation: tuple[int, int]
    bias: bool
    kernel_size: tuple[int, int]

    def half_padding(self) -> tuple[int, int]:
        d, k = self.dilation, self.kernel_size
        return (d[0] * (k[0] - 1) // 2, d[1] * (k[1] - 1) // 2)

    @property
    def padding_shown(self) -> str:
        if self.padding == "same":
            return "same"
        pads = self.half_padding() if self.padding == HALF else self.padding
        return str(pads[0]) if pads[0] == pads[1] else f"{pads[0]}x{pads[1]}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kernel_size": list(self.kernel_size),
            "in_channels": self.in_channels,
            "out_channels": self.out_channels,
            "input_size": list(self.input_size),
            "groups": self.groups,
            "stride": list(self.stride),
            "padding": "same"
            if self.padding == "same"
            else list(self.half_padding() if self.padding == HALF else self.padding),
            "dilation": list(self.dilation),
            "batch": self.batch,
            "dtype": self.dtype,
            "bias": self.bias,
        }


def _pair(name: str, value: object, minimum: int) -> tuple[int, int]:
    single = as_int(value)
    if single is not None and single >= minimum:
        return (single, single)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        a, b = as_int(value[0]), as_int(value[1])
        if a is not None and b is not None and a >= minimum and b >= minimum:
            return (a, b)
    raise InvalidArgumentError(f"{name}={value!r} must be an int >= {minimum} or a pair of them")


def _one(name: str, value: object) -> object:
    if name in _PAIRS:
        return _pair(name, value, 1)
    if name in _COUNTS:
        count = as_int(value)
        if count is None or count < 1:
            raise InvalidArgumentError(f"{name}={value!r} must be an int >= 1")
        return count
    if name == "padding":
        if value in ("same", HALF):
            return value
        return _pair("padding", value, 0)
    if name == "dtype":
        if not isinstance(value, (str, torch.dtype)):
            raise InvalidArgumentError(f"dtype={value!r} must be a torch dtype or a name (float16, bf16)")
        if not parse_dtype(value).is_floating_point:
            raise InvalidArgumentError(f"dtype={value!r}: sweep prices floating-point convolutions")
        return canonical_name(value)
    if name == "bias":
        if not isinstance(value, bool):
            raise InvalidArgumentError(f"bias={value!r} must be True or False")
        return value
    raise InvalidArgumentError(f"unknown sweep parameter {name!r}")


def axis_values(name: str, value: object) -> tuple[object, ...]:
    """The checked values of one parameter: several for a list or range, else one."""
    if isinstance(value, (list, range)):
        if len(value) == 0:
            raise InvalidArgumentError(f"{name} is an empty list: give at least one value")
        values = tuple(_one(name, v) for v in value)
        if len(set(values)) != len(values):
            raise InvalidArgumentError(f"{name}={list(value)!r} names a value twice")
        return values
    return (_one(name, value),)


def check_conv(p: ConvParams) -> None:
    """Refuse a convolution torch could not run, naming the values that make it impossible."""
    for side in ("in_channels", "out_channels"):
        if getattr(p, side) % p.groups:
            raise InvalidArgumentError(
                f"groups={p.groups} does not divide {side}={getattr(p, side)}: a grouped convolution "
                "splits both channel counts into equal groups"
            )
    if p.padding == "same":
        if p.stride != (1, 1):
            raise InvalidArgumentError(
                f"padding='same' needs stride 1 (torch's rule), got stride={p.stride}; give an int padding"
            )
        return
    pads = p.half_padding() if p.padding == HALF else p.padding
    assert isinstance(pads, tuple)
    for dim, (size, pad, k, d) in enumerate(zip(p.input_size, pads, p.kernel_size, p.dilation, strict=True)):
        span = d * (k - 1) + 1
        if span > size + 2 * pad:
            what = "height" if dim == 0 else "width"
            raise InvalidArgumentError(
                f"kernel_size={p.kernel_size} (dilation {p.dilation}: spans {span}) is larger than the "
                f"padded input {what} {size} + 2 * {pad} = {size + 2 * pad}"
            )


def label_of(axis: str, value: object) -> str:
    """A short label for one value of an axis: ``k=3``, ``C=64``, ``g=2``, ``N=8``, ``float16``."""
    if isinstance(value, tuple) and axis in _PAIRS:
        shown = str(value[0]) if value[0] == value[1] else f"{value[0]}x{value[1]}"
        if axis == "input_size":
            return f"{value[0]}x{value[1]}"
        return {"kernel_size": "k=", "stride": "s=", "dilation": "d="}[axis] + shown
    if axis == "padding":
        return f"p={value if isinstance(value, str) else 'x'.join(map(str, value))}"  # type: ignore[call-overload]
    if axis == "bias":
        return "bias" if value else "no bias"
    if axis == "dtype":
        return str(value)
    prefix = {"channels": "C", "in_channels": "Cin", "out_channels": "Cout", "groups": "g", "batch": "N"}
    return f"{prefix[axis]}={value}"
