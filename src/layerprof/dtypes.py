"""Dtype names as users type them (``fp16``, ``bfloat16``, ``torch.float32``) and as tables key them."""

from __future__ import annotations

import torch

from layerprof.errors import InvalidArgumentError

_ALIASES: dict[str, torch.dtype] = {
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32, "f32": torch.float32,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16, "f16": torch.float16,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp64": torch.float64, "float64": torch.float64, "double": torch.float64,
    "int8": torch.int8, "uint8": torch.uint8, "int32": torch.int32, "int64": torch.int64,
    "fp8": torch.float8_e4m3fn, "float8": torch.float8_e4m3fn, "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2,
}  # fmt: skip


def parse_dtype(value: torch.dtype | str) -> torch.dtype:
    """A torch dtype from a dtype or a common name; the error names the bad value."""
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str):
        key = value.strip().lower().removeprefix("torch.")
        if key in _ALIASES:
            return _ALIASES[key]
    raise InvalidArgumentError(f"unknown dtype {value!r}; use one of {', '.join(sorted(_ALIASES))}")


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float16`` -> ``"float16"``."""
    return str(dtype).removeprefix("torch.")
