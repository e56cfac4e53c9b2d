"""FLOPs of an op without a formula, counted through its decomposition.

Under ``torch.inference_mode()`` (and for any new composite torch adds) ops such as ``aten.conv2d``,
``aten.linear`` and ``aten.batch_norm`` reach the dispatcher whole: autograd, which would have split
them into ``aten.convolution``, ``aten.addmm`` and ``aten._native_batch_norm_legit_no_training``,
is off. An op like that is counted through the ops it decomposes into: its CompositeImplicitAutograd
kernel (``func.decompose``), or else torch's own table (``torch._decomp.decomposition_table``).

The decomposition runs on meta stand-ins of the op's arguments (same shapes, strides and dtypes;
float32 for a quantized tensor, which meta cannot hold),
under a small dispatch mode that prices each inner op's FLOPs with the registry's formulas (and
decomposes further an inner op that has none). Only FLOPs come from the inner ops: the op's bytes
are those of the op itself, which the counter prices as for any op, so no byte is counted twice.
The user's op runs as it would (its own kernel, on its own tensors): the decomposition is priced
beside it, never in its place. Results are cached by the call's shapes, dtypes and other arguments.
Every mode on the stack is set aside while it runs, so that no other mode (a memory tracker, a
user's FLOP counter) sees the stand-ins.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch._ops import OpOverload
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes

from layerprof.formulas import OpFlops, formula_of, is_free
from layerprof.formulas.complex import complex_flops, computes_on_complex

__all__ = ["DecomposedCost", "decomposed_flops", "decomposition"]

Decomposition = Callable[..., Any]


class DecomposedCost:
    """FLOPs of a decomposition, and the inner ops that had neither a formula nor a decomposition."""

    __slots__ = ("kernel_size", "matrix", "missing", "vector")

    def __init__(self) -> None:
        self.matrix = 0
        self.vector = 0
        self.kernel_size: tuple[int, ...] | None = None
        self.missing: set[str] = set()

    def add(self, cost: OpFlops) -> None:
        self.matrix += cost.matrix
        self.vector += cost.vector
        if self.kernel_size is None and cost.kernel_size is not None:
            self.kernel_size = cost.kernel_size

    def flops(self) -> OpFlops:
        return OpFlops(matrix=self.matrix, vector=self.vector, kernel_size=self.kernel_size)


_HAS_CIA: dict[OpOverload, Decomposition | None] = {}


def decomposition(func: OpOverload) -> Decomposition | None:
    """How ``func`` decomposes: its CompositeImplicitAutograd kernel, torch's decomposition table, or
    None when it has neither."""
    if func in _HAS_CIA:
        return _HAS_CIA[func]
    found: Decomposition | None = None
    if torch._C._dispatch_has_kernel_for_dispatch_key(func._name, "CompositeImplicitAutograd"):
        found = func.decompose
    else:
        from torch._decomp import decomposition_table

        found = decomposition_table.get(func)
    _HAS_CIA[func] = found
    return found


class _FlopsOnly(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Runs the inner ops of a decomposition on meta and adds up their FLOPs (bytes are not its job)."""

    def __init__(self, cost: DecomposedCost) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.cost = cost

    def __torch_dispatch__(
        self,
        func: OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        formula = formula_of(func)
        if formula is None and not is_free(func):
            inner = decomposition(func)
            if inner is not None:
                with self:  # the inner op's own decomposition, counted by this same mode
                    out = inner(*args, **kwargs)
                if out is not NotImplemented:
                    return out
            self.cost.missing.add(str(func.overloadpacket))
        out = func(*args, **kwargs)
        if formula is not None:
            flops = formula(args, kwargs, out)
            if flops.total and computes_on_complex(args, out):
                real = complex_flops(func.overloadpacket.__name__.rstrip("_"), flops)
                if real is None:
                    self.cost.missing.add(f"{func.overloadpacket} (complex)")
                flops = real or OpFlops()
            self.cost.add(flops)
        return out


def _stand_in(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        # meta has no quantized tensors: a float32 stand-in has the same shape (only FLOPs are read)
        dtype = torch.float32 if value.is_quantized else value.dtype
        return torch.empty_strided(value.shape, value.stride(), dtype=dtype, device="meta")
    if isinstance(value, (list, tuple)):
        return type(value)(_stand_in(v) for v in value)
    return value


def _key_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return ("T", tuple(value.shape), tuple(value.stride()), value.dtype)
    if isinstance(value, (list, tuple)):
        return tuple(_key_of(v) for v in value)
    if value is None or isinstance(value, _PLAIN):
        return (type(value), value)
    # anything else (an object the cache would keep alive): no cache for this call
    raise TypeError(f"not a cache key: {type(value).__name__}")


_PLAIN = (bool, int, float, complex, str, torch.dtype, torch.device, torch.layout, torch.memory_format)


_CACHE: dict[Any, DecomposedCost | None] = {}
_CACHE_LIMIT = 4096


def decomposed_flops(
    op: str, run: Decomposition, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> DecomposedCost | None:
    """The FLOPs of ``run(*args, **kwargs)``, the decomposition of the op named ``op``, counted on
    meta stand-ins;
    None when the decomposition cannot run on them (it reads data) or declines (``NotImplemented``)."""
    try:
        key: Any = (op, _key_of(args), _key_of(tuple(sorted(kwargs.items()))))
    except TypeError:
        key = None
    if key is not None and key in _CACHE:
        return _CACHE[key]
    cost: DecomposedCost | None = DecomposedCost()
    try:
        with _disable_current_modes(), torch.no_grad():
            meta_args, meta_kwargs = _stand_in(args), {k: _stand_in(v) for k, v in kwargs.items()}
            with _FlopsOnly(cost):  # type: ignore[arg-type]
                if run(*meta_args, **meta_kwargs) is NotImplemented:
                    cost = None
    except Exception:  # data-dependent (.item() on meta), or no meta kernel: not countable this way
        cost = None
    if key is not None and len(_CACHE) < _CACHE_LIMIT:
        _CACHE[key] = cost
    return cost
