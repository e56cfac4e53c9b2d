"""The dispatch-mode counter: every aten op that runs while it is active is run, then charged.

It runs the op itself (a cheaper meta kernel for shape-preserving ops on meta, see
:mod:`layerprof.walk.fast_meta`) and hands the call and its result to whatever charges it (a
:class:`~layerprof.walk.collect.Collector`). An exception the op raises is the model's; one raised
while charging it is layerprof's, and comes out as a :class:`~layerprof.errors.FormulaError` naming
the op and its formula, so that it is never reported as the user's layer failing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from torch._ops import OpOverload
from torch.utils._python_dispatch import TorchDispatchMode

from layerprof.errors import LayerprofError
from layerprof.formulas import FORMULAS
from layerprof.walk.fast_meta import fast_meta_kernel
from layerprof.walk.pricing import counting_error


class Charger(Protocol):
    """What the counter hands each op to."""

    def charge(
        self, func: OpOverload, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any
    ) -> None: ...


class Allocations(Protocol):
    """What the counter tells of each op's outputs (a :class:`~layerprof.walk.memory.MemoryTracker`)."""

    def allocated(self, func: OpOverload, out: Any) -> None: ...


class OpCounter(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Prices every op that runs while it is active and charges it to the collector's current row."""

    def __init__(
        self, collector: Charger, *, fast_meta: bool = True, memory: Allocations | None = None
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.collector = collector
        self.fast_meta = fast_meta
        self.memory = memory  # the storage tracker (walk.memory), told of every op's outputs

    def __torch_dispatch__(
        self,
        func: OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        kernel = fast_meta_kernel(func, args) if self.fast_meta else None
        out = kernel(args, kwargs) if kernel is not None else func(*args, **kwargs)
        try:
            self.collector.charge(func, args, kwargs, out)
        except LayerprofError:
            raise  # a FormulaError from pricing, already naming the op and the formula
        except Exception as error:
            raise counting_error(str(func), FORMULAS.get(func), "charging the call", error) from error
        if self.memory is not None:
            self.memory.allocated(func, out)
        return out
