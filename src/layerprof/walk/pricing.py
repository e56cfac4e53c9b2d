"""Pricing one aten op: its FLOPs from the formula registry, its bytes from the tensors it touches.

Bytes follow DESIGN.md: each distinct tensor an op reads plus each tensor it writes, at the tensor's
own element size. Formulas give FLOPs for real operands; a call on complex tensors has them scaled to
real FLOPs here, in one place (:mod:`layerprof.formulas.complex`). An op without a formula that has a
decomposition (a composite under ``inference_mode``) gets the FLOPs of the ops it decomposes into and
its own bytes (:mod:`layerprof.walk.decomposed`). Ops with neither, and complex calls without a rule,
keep their bytes and are named in ``OpCost.unsupported`` (the collector lists them). A formula or
byte count that raises is a bug in layerprof, not in the model: it comes
out as a :class:`~layerprof.errors.FormulaError` naming the op and the formula, never as the user's
layer failing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
from torch._ops import OpOverload

from layerprof.errors import FormulaError
from layerprof.formulas import WRITE_ONLY_DESTINATION, Formula, formula_of, is_free
from layerprof.formulas.complex import complex_flops, computes_on_complex
from layerprof.formulas.quantized import packed_tensors
from layerprof.walk.decomposed import Decomposition, decomposed_flops, decomposition


@dataclass(frozen=True, slots=True)
class OpInfo:
    """What pricing needs of an op overload, read once per overload from its schema and the registry."""

    free: bool
    formula: Formula | None
    name: str
    packet: str
    out_args: frozenset[str]
    write_only_destination: int | None  # the position of an argument written but not read
    op: str  # the overload's full name (aten.convolution.default), for error messages
    decomposition: Decomposition | None = None  # for an op without a formula: what it decomposes into


class OpCost(NamedTuple):
    """The price of one call of an op."""

    flops: int
    matrix_flops: int
    kernel_size: tuple[int, ...] | None
    bytes_read: int
    bytes_written: int
    unsupported: str | None = None  # the name report.unsupported lists the op under, when its FLOPs are 0


def describe(func: OpOverload) -> OpInfo:
    schema = func._schema
    free, formula = is_free(func), formula_of(func)
    return OpInfo(
        free=free,
        formula=formula,
        name=func.overloadpacket.__name__.rstrip("_") or func.overloadpacket.__name__,
        packet=str(func.overloadpacket),
        out_args=frozenset(a.name for a in schema.arguments if a.is_out),
        write_only_destination=WRITE_ONLY_DESTINATION.get(func),
        op=str(func),
        decomposition=decomposition(func) if formula is None and not free else None,
    )


def formula_name(formula: Formula | None) -> str:
    """``layerprof.formulas.conv.convolution``; ``none`` for an op priced by its bytes only."""
    if formula is None:
        return "none"
    module = getattr(formula, "__module__", None)
    qualname = getattr(formula, "__qualname__", None) or repr(formula)
    return f"{module}.{qualname}" if module else qualname


def counting_error(op: str, formula: Formula | None, stage: str, error: BaseException) -> FormulaError:
    """The FormulaError for ``error``, raised while ``stage`` ran on ``op`` (raise it ``from`` error)."""
    name = formula_name(formula)
    return FormulaError(
        f"layerprof failed while {stage} of aten op {op} (formula {name}): {type(error).__name__}: "
        f"{error}. This is a bug in layerprof, not in the model",
        op,
        name,
    )


def price(info: OpInfo, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpCost:
    """FLOPs (0 without a formula) and bytes read and written of one call of ``info``'s op."""
    written_outputs = None
    written_args: tuple[int, ...] = ()
    unsupported = None
    if info.formula is None:
        flops = matrix = 0
        kernel_size = None
        unsupported = info.packet
        if info.decomposition is not None:
            try:
                inner = decomposed_flops(info.op, info.decomposition, args, kwargs)
            except Exception as error:
                raise counting_error(info.op, None, "counting the decomposition", error) from error
            if inner is not None:
                flops, matrix, kernel_size = inner.matrix + inner.vector, inner.matrix, inner.kernel_size
                missing = ", ".join(sorted(inner.missing))
                unsupported = f"{info.packet} (via {missing})" if missing else None
    else:
        try:
            cost = info.formula(args, kwargs, out)
        except Exception as error:
            raise counting_error(info.op, info.formula, "running the formula", error) from error
        if cost.total and computes_on_complex(args, out):
            real = complex_flops(info.name, cost)
            if real is None:
                unsupported = f"{info.packet} (complex)"
            cost = real or replace(cost, matrix=0, vector=0)
        flops, matrix, kernel_size = cost.total, cost.matrix, cost.kernel_size
        written_outputs = cost.written_outputs
        written_args = cost.written_args
    try:
        read, written = _bytes(info, args, kwargs, out, written_outputs, written_args)
    except Exception as error:
        raise counting_error(info.op, info.formula, "counting the bytes", error) from error
    return OpCost(flops, matrix, kernel_size, read, written, unsupported)


def _bytes(
    info: OpInfo,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    out: Any,
    written_outputs: int | None,
    written_args: tuple[int, ...],
) -> tuple[int, int]:
    """(bytes read, bytes written): the distinct tensors read, then the outputs and arguments written."""
    seen: set[int] = set()
    skip = info.write_only_destination
    read = add_bytes(args if skip is None else args[:skip] + args[skip + 1 :], seen)
    if kwargs:
        read += add_bytes([v for k, v in kwargs.items() if k not in info.out_args], seen)
    if written_outputs is None and not written_args and isinstance(out, torch.Tensor):
        written = out.numel() * out.element_size()  # the common case: one fresh, dense output
    else:
        written_outputs_of = out[:written_outputs] if written_outputs is not None else (out,)
        seen = set()
        written = add_bytes(written_outputs_of, seen)
        if written_args:
            written += add_bytes([args[i] for i in written_args if i < len(args)], seen)
    return read, written


def footprint_elements(tensor: torch.Tensor) -> int:
    """Elements of memory a tensor spans: its numel, or less for a broadcast view (stride 0), whose
    repeated elements are one element in memory (a class token expanded over the batch)."""
    if tensor.is_contiguous():
        return tensor.numel()
    count = tensor.numel()
    if count == 0:
        return 0
    span = 1 + sum(
        (size - 1) * abs(stride) for size, stride in zip(tensor.shape, tensor.stride(), strict=True)
    )
    return min(count, span)


def tensor_bytes(tensor: torch.Tensor) -> int:
    """Bytes of memory a tensor spans (:func:`footprint_elements` at its element size)."""
    # is_contiguous first: the common case needs no stride walk (this runs for every tensor of every op)
    elements = tensor.numel() if tensor.is_contiguous() else footprint_elements(tensor)
    return elements * tensor.element_size()


def add_bytes(values: Iterable[Any], seen: set[int]) -> int:
    """Bytes of the tensors in ``values`` (and in lists among them) not in ``seen``; adds them to it."""
    total = 0
    for value in values:
        if isinstance(value, torch.Tensor):
            if id(value) not in seen:
                seen.add(id(value))
                total += tensor_bytes(value)
        elif isinstance(value, (list, tuple)):
            total += add_bytes(value, seen)
        elif isinstance(value, torch.ScriptObject) and id(value) not in seen:
            seen.add(id(value))
            total += packed_bytes(value)
    return total


def packed_bytes(value: torch.ScriptObject) -> int:
    """Bytes of a packed quantized weight (a quantized conv's or linear's weight and bias): the op
    reads them though no tensor argument holds them; 0 for other script objects."""
    return sum(t.numel() * t.element_size() for t in packed_tensors(value))
