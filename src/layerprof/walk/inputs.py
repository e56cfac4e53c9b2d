"""Model inputs: a tensor, a tuple of them or a dict of keyword inputs, or sizes to make them from."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from layerprof.core.validate import as_int
from layerprof.errors import DeviceMismatchError, InvalidArgumentError

Inputs = torch.Tensor | Sequence[Any] | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """What is needed to make a tensor like an input again, without keeping the input alive."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    device: str


@dataclass(frozen=True, slots=True)
class InputSpec:
    positional: tuple[TensorSpec | None, ...]
    keyword: tuple[tuple[str, TensorSpec | None], ...] = ()

    def make(self, device: torch.device | str | None = None) -> tuple[tuple[Any, ...], dict[str, Any]]:
        def build(spec: TensorSpec | None) -> Any:
            if spec is None:
                return None
            where = device if device is not None else spec.device
            if spec.dtype.is_floating_point:
                if str(where) == "meta":
                    return torch.empty(spec.shape, dtype=spec.dtype, device=where)
                return torch.randn(spec.shape, dtype=spec.dtype, device=where)
            return torch.zeros(spec.shape, dtype=spec.dtype, device=where)

        return tuple(build(s) for s in self.positional), {k: build(s) for k, s in self.keyword}


def split_inputs(inputs: Inputs) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(args, kwargs) for ``model(*args, **kwargs)``."""
    if isinstance(inputs, torch.Tensor):
        return (inputs,), {}
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), {}
    raise InvalidArgumentError(
        f"inputs must be a tensor, a tuple/list of inputs or a dict of keyword inputs, "
        f"got {type(inputs).__name__}"
    )


def describe(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> InputSpec:
    def spec(value: Any) -> TensorSpec | None:
        if isinstance(value, torch.Tensor):
            return TensorSpec(tuple(int(s) for s in value.shape), value.dtype, str(value.device))
        return None

    return InputSpec(tuple(spec(a) for a in args), tuple((k, spec(v)) for k, v in kwargs.items()))


#: A tensor's byte size must fit torch's int64 sizes and strides.
_LARGEST_TENSOR_BYTES = 2**63 - 1


def sizes_to_spec(
    input_size: Sequence[int] | Sequence[Sequence[int]], dtype: torch.dtype, device: str = "meta"
) -> InputSpec:
    """One input for a flat size, several for a sequence of sizes; every size is validated."""
    if not isinstance(input_size, (tuple, list, torch.Size)) or len(input_size) == 0:
        raise InvalidArgumentError(f"input_size must be a non-empty tuple of ints, got {input_size!r}")
    several = all(isinstance(s, (tuple, list, torch.Size)) for s in input_size)
    sizes = [tuple(s) for s in input_size] if several else [tuple(input_size)]  # type: ignore[arg-type]
    specs = []
    for size in sizes:
        dims = [as_int(d) for d in size]
        if not size or not all(d is not None and d > 0 for d in dims):
            raise InvalidArgumentError(f"input_size {size!r} must hold positive ints (batch first)")
        shape = tuple(d for d in dims if d is not None)
        if math.prod(shape) * dtype.itemsize > _LARGEST_TENSOR_BYTES:
            raise InvalidArgumentError(
                f"input_size {size!r} at {dtype} is {math.prod(shape) * dtype.itemsize:.3g} bytes, "
                "past what a tensor can address (int64 sizes)"
            )
        specs.append(TensorSpec(shape, dtype, device))
    return InputSpec(tuple(specs))


def model_device(model: nn.Module) -> torch.device | None:
    for tensor in model.parameters():
        return tensor.device
    for buffer in model.buffers():
        return buffer.device
    return None


def check_devices(model: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    where = model_device(model)
    if where is None or where.type == "meta":
        return
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.device != where:
            raise DeviceMismatchError(
                f"input on {value.device} but the model is on {where}; move one to the other first"
            )


def to_meta(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    def convert(value: Any) -> Any:
        return value.to("meta") if isinstance(value, torch.Tensor) else value

    return tuple(convert(a) for a in args), {k: convert(v) for k, v in kwargs.items()}


def check_rank(model: nn.Module, spec: InputSpec, failure: Exception) -> None:
    """After a forward at ``spec`` failed: raise a clear error if the first input does not fit the
    model's first convolution (in registration order, a guess, so it is only used to explain a
    failure, never to refuse a size up front)."""
    first_input = spec.positional[0] if spec.positional else None
    if first_input is None:
        return
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            expected = len(module.kernel_size) + 2
            shape = first_input.shape
            if len(shape) != expected:
                raise InvalidArgumentError(
                    f"input_size {shape} has rank {len(shape)}, but the first layer {name} "
                    f"({type(module).__name__}) expects rank {expected} (batch, channels, "
                    f"{len(module.kernel_size)} spatial)"
                ) from failure
            if shape[1] != module.in_channels:
                raise InvalidArgumentError(
                    f"input_size {shape} has {shape[1]} channels, but the first layer {name} "
                    f"({type(module).__name__}) takes {module.in_channels}"
                ) from failure
            return
        if isinstance(module, nn.Linear):
            return
