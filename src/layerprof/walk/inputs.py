"""Model inputs: a tensor, a tuple of them or a dict of keyword inputs, or sizes and dtypes to make them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from layerprof.core import rownames
from layerprof.core.dtypes import parse_dtype
from layerprof.core.validate import as_int
from layerprof.errors import DeviceMismatchError, ForwardError, InvalidArgumentError

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
            if str(where) == "meta":  # shapes only, of any dtype: float, complex, index or mask
                return torch.empty(spec.shape, dtype=spec.dtype, device=where)
            if spec.dtype.is_floating_point or spec.dtype.is_complex:
                return torch.randn(spec.shape, dtype=spec.dtype, device=where)
            return torch.zeros(spec.shape, dtype=spec.dtype, device=where)  # index 0 is always valid

        return tuple(build(s) for s in self.positional), {k: build(s) for k, s in self.keyword}


def split_inputs(
    inputs: Inputs | None, kwargs: Mapping[str, Any] | None = None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """(args, kwargs) for ``model(*args, **kwargs)``.

    ``inputs`` is a tensor (one positional input), a tuple or list (positional inputs, in order) or a
    dict (keyword inputs: ``model(**inputs)``); ``kwargs`` adds keyword inputs next to positional ones.
    A name given by both a dict ``inputs`` and ``kwargs`` is refused.
    """
    if kwargs is not None and (
        not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs)
    ):
        raise InvalidArgumentError(
            f"kwargs must be a dict of keyword inputs (names to values), got {type(kwargs).__name__}"
        )
    extra = dict(kwargs or {})
    if inputs is None:
        return (), extra
    if isinstance(inputs, torch.Tensor):
        return (inputs,), extra
    if isinstance(inputs, Mapping):
        if not all(isinstance(k, str) for k in inputs):
            raise InvalidArgumentError("inputs as a dict are keyword inputs: its keys must be names (str)")
        both = sorted(set(inputs) & set(extra))
        if both:
            raise InvalidArgumentError(f"keyword inputs {both} given both in the inputs dict and in kwargs")
        return (), {**inputs, **extra}
    if isinstance(inputs, (tuple, list)):
        return tuple(inputs), extra
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

_SEQUENCES = (tuple, list, torch.Size)
#: Besides floating and complex dtypes, an input made from a size may hold indices or a mask.
_INDEX_DTYPES = frozenset({torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64})

#: One input's size, batch first, at the ``dtype`` given to analyze; or ``(size, dtype)`` for an input of
#: its own dtype (``((8, 128), torch.long)``: token ids).
SizeEntry = Sequence[int] | tuple[Sequence[int], torch.dtype | str]
#: ``input_size``: one entry (one input), a sequence of entries (positional inputs) or a dict of
#: entries (keyword inputs).
InputSize = SizeEntry | Sequence[SizeEntry] | Mapping[str, SizeEntry]


def _is_typed(entry: object) -> bool:
    """Whether ``entry`` is a ``(size, dtype)`` pair rather than a size or a sequence of sizes."""
    return (
        isinstance(entry, (tuple, list))
        and len(entry) == 2
        and isinstance(entry[0], _SEQUENCES)
        and isinstance(entry[1], (torch.dtype, str))
    )


def input_dtype(value: torch.dtype | str, where: str) -> torch.dtype:
    """The dtype of an input made from a size: floating, complex, integer or bool (never quantized)."""
    dtype = parse_dtype(value)
    if not (dtype.is_floating_point or dtype.is_complex or dtype in _INDEX_DTYPES):
        raise InvalidArgumentError(
            f"{where} {dtype} cannot make an input tensor; use a floating or complex dtype, or an "
            "integer or bool one for indices and masks"
        )
    return dtype


def _tensor_spec(entry: object, dtype: torch.dtype, device: str, where: str) -> TensorSpec:
    size: object = entry
    if _is_typed(entry):
        size, dtype = entry[0], input_dtype(entry[1], f"{where}'s dtype")  # type: ignore[index]
    if not isinstance(size, _SEQUENCES):
        raise InvalidArgumentError(
            f"{where} must be a size (a tuple of positive ints) or a (size, dtype) pair, got {entry!r:.80}"
        )
    dims = [as_int(d) for d in size]
    if not size or not all(d is not None and d > 0 for d in dims):
        raise InvalidArgumentError(f"{where} {tuple(size)!r} must hold positive ints (batch first)")
    shape = tuple(d for d in dims if d is not None)
    if math.prod(shape) * dtype.itemsize > _LARGEST_TENSOR_BYTES:
        raise InvalidArgumentError(
            f"{where} {tuple(size)!r} at {dtype} is {math.prod(shape) * dtype.itemsize:.3g} bytes, "
            "past what a tensor can address (int64 sizes)"
        )
    return TensorSpec(shape, dtype, device)


def sizes_to_spec(input_size: InputSize, dtype: torch.dtype, device: str = "meta") -> InputSpec:
    """Inputs to make from ``input_size``, every size and dtype validated.

    A size is a tuple of positive ints, batch first, for an input of ``dtype``; a ``(size, dtype)``
    pair gives one input its own dtype. ``input_size`` is one entry (one input), a sequence of them
    (positional inputs, in order) or a dict name -> entry (keyword inputs).
    """
    if isinstance(input_size, Mapping):
        if not input_size or not all(isinstance(k, str) for k in input_size):
            raise InvalidArgumentError(
                f"input_size as a dict must map input names (str) to sizes, got {input_size!r:.80}"
            )
        keyword = tuple(
            (name, _tensor_spec(entry, dtype, device, f"input_size[{name!r}]"))
            for name, entry in input_size.items()
        )
        return InputSpec((), keyword)
    if not isinstance(input_size, _SEQUENCES) or len(input_size) == 0:
        raise InvalidArgumentError(
            f"input_size must be a non-empty tuple of ints, a (size, dtype) pair, a sequence of those "
            f"or a dict of them, got {input_size!r:.80}"
        )
    if _is_typed(input_size) or not all(isinstance(e, _SEQUENCES) for e in input_size):
        return InputSpec((_tensor_spec(input_size, dtype, device, "input_size"),))
    return InputSpec(
        tuple(_tensor_spec(e, dtype, device, f"input_size[{i}]") for i, e in enumerate(input_size))
    )


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


def explain_failure(model: nn.Module, spec: InputSpec, failure: ForwardError) -> None:
    """After a forward on inputs made from ``spec`` failed: raise a clearer error when the sizes are
    the likely cause, keeping the failure's own words (torch's message). Float inputs reaching an
    embedding are; so is a first input that does not fit the model's first convolution (in
    registration order: a guess, so it is never used to refuse a size up front), unless a layer
    registered before that convolution failed (an embedding: the convolution never saw the input).
    Otherwise return, and the failure stands as it is."""
    names = [name for name, _ in model.named_modules()]
    failed_name = "" if failure.layer == rownames.ROOT else failure.layer
    failed = dict(model.named_modules()).get(failed_name)
    inputs = [s for s in (*spec.positional, *(s for _, s in spec.keyword)) if s is not None]
    if isinstance(failed, (nn.Embedding, nn.EmbeddingBag)):
        floats = sorted({str(s.dtype) for s in inputs if s.dtype.is_floating_point or s.dtype.is_complex})
        if floats:
            raise InvalidArgumentError(
                f"input_size made {' and '.join(floats)} inputs, but layer {failure.layer} "
                f"({type(failed).__name__}) takes integer indices: give them an integer dtype "
                f"(dtype=torch.long, or a (size, torch.long) pair per input). {failure}"
            ) from failure
    first_conv = _first_convolution(model)
    if not inputs or first_conv is None:
        return
    if failed_name and failed_name in names and names.index(failed_name) < names.index(first_conv[0]):
        return
    _check_fits(inputs[0], *first_conv, failure)


def _first_convolution(model: nn.Module) -> tuple[str, nn.modules.conv._ConvNd] | None:
    """The model's first convolution in registration order, unless a linear layer comes first."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return name, module
        if isinstance(module, nn.Linear):
            return None
    return None


def _check_fits(first: TensorSpec, name: str, conv: nn.modules.conv._ConvNd, failure: Exception) -> None:
    shape, layer = first.shape, f"the first layer {name} ({type(conv).__name__})"
    expected = len(conv.kernel_size) + 2
    if len(shape) != expected:
        raise InvalidArgumentError(
            f"input_size {shape} has rank {len(shape)}, but {layer} expects rank {expected} (batch, "
            f"channels, {len(conv.kernel_size)} spatial). {failure}"
        ) from failure
    if shape[1] != conv.in_channels:
        raise InvalidArgumentError(
            f"input_size {shape} has {shape[1]} channels, but {layer} takes {conv.in_channels}. {failure}"
        ) from failure
    if not (first.dtype.is_floating_point or first.dtype.is_complex) and conv.weight.is_floating_point():
        raise InvalidArgumentError(
            f"input_size made {first.dtype} inputs, but {layer} computes in floating point: integer "
            f"and bool dtypes are for index and mask inputs. {failure}"
        ) from failure
