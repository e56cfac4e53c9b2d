"""Dtype names, as users type them (``fp16``, ``bfloat16``, ``torch.float32``), in one table.

:data:`ALIASES` is that table: every spelling layerprof accepts, case and a ``torch.`` prefix aside.
The API, the CLI's ``--dtype`` choices, the device table and measure_device all read it through the
functions here. :func:`parse_dtype` gives the torch dtype of a name, :func:`canonical_name` its torch
name, :func:`peak_key` the key under which the device table keeps a dtype's peaks (every fp8 flavour
shares ``"float8"``, 8-bit integers ``"int8"``, and ``"tf32"`` names the tensor cores' float32 mode,
which is no torch dtype).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch

from layerprof.errors import InvalidArgumentError

#: Every dtype spelling layerprof accepts (lower case, without ``torch.``) -> the torch dtype.
ALIASES: Mapping[str, torch.dtype] = MappingProxyType({
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32, "f32": torch.float32,
    "single": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16, "f16": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp64": torch.float64, "float64": torch.float64, "double": torch.float64, "f64": torch.float64,
    "int8": torch.int8, "i8": torch.int8, "uint8": torch.uint8, "qint8": torch.qint8,
    "quint8": torch.quint8, "int16": torch.int16, "int32": torch.int32, "int64": torch.int64,
    "long": torch.int64, "bool": torch.bool,
    "complex64": torch.complex64, "cfloat": torch.complex64, "complex128": torch.complex128,
    "cdouble": torch.complex128,
    "fp8": torch.float8_e4m3fn, "float8": torch.float8_e4m3fn, "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e4m3fnuz": torch.float8_e4m3fnuz, "float8_e5m2": torch.float8_e5m2,
    "float8_e5m2fnuz": torch.float8_e5m2fnuz, "float8_e8m0fnu": torch.float8_e8m0fnu,
})  # fmt: skip

_TF32 = ("tf32", "tensorfloat32")

_PEAK_KEYS: dict[torch.dtype, str] = {
    torch.float32: "float32",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.float64: "float64",
    torch.int8: "int8",
    torch.uint8: "int8",
    torch.qint8: "int8",
    torch.quint8: "int8",
    torch.float8_e4m3fn: "float8",
    torch.float8_e4m3fnuz: "float8",
    torch.float8_e5m2: "float8",
    torch.float8_e5m2fnuz: "float8",
    torch.float8_e8m0fnu: "float8",
}

#: The keys the device table may give peaks for.
PEAK_KEYS: tuple[str, ...] = ("float32", "tf32", "float16", "bfloat16", "int8", "float8", "float64")


def _key(value: str) -> str:
    return value.strip().lower().removeprefix("torch.")


def parse_dtype(value: torch.dtype | str) -> torch.dtype:
    """A torch dtype from a dtype or a common name; the error names the bad value."""
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and _key(value) in ALIASES:
        return ALIASES[_key(value)]
    raise InvalidArgumentError(f"unknown dtype {value!r}; use one of {', '.join(sorted(ALIASES))}")


def peak_key(value: torch.dtype | str) -> str:
    """The device table's key for a dtype or a dtype name (``torch.half`` -> ``"float16"``)."""
    if isinstance(value, str) and _key(value) in _TF32:
        return "tf32"
    if not isinstance(value, (str, torch.dtype)):
        raise InvalidArgumentError(f"dtype must be a torch.dtype or a name, got {value!r}")
    dtype = parse_dtype(value)
    if dtype not in _PEAK_KEYS:
        raise InvalidArgumentError(
            f"dtype {value!r} has no peaks in the device table; known: {', '.join(PEAK_KEYS)}"
        )
    return _PEAK_KEYS[dtype]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float16`` -> ``"float16"``."""
    return str(dtype).removeprefix("torch.")


def canonical_name(value: torch.dtype | str) -> str:
    """The torch name of a dtype or any spelling of it: ``"fp16"``, ``"half"`` -> ``"float16"``."""
    return dtype_name(parse_dtype(value))
