"""The formula registry: aten op -> pure cost function.

A formula takes the op's ``args``, ``kwargs`` and ``out`` exactly as the dispatcher saw them, reads
shapes only (never data, never a device, never allocates) and returns an :class:`OpFlops`. Bytes are
not a formula's business: the counter prices every tensor an op reads or writes at its own element
size, the same way for every op. A formula only says when some outputs are not real writes
(``written_outputs``): batch norm in inference returns saved statistics whose size differs between
backends (empty on CPU, one per channel on meta) and which no kernel writes. It also names the
arguments an op updates in place without returning them (``written_args``): batch norm's running
statistics in training, which its legacy schema does not mark as written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from torch._ops import OpOverload, OpOverloadPacket


@dataclass(frozen=True, slots=True)
class OpFlops:
    """FLOPs of one op call, split by the unit that runs them."""

    matrix: int = 0
    vector: int = 0
    kernel_size: tuple[int, ...] | None = None
    written_outputs: int | None = None
    written_args: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        return self.matrix + self.vector


Formula = Callable[[tuple[Any, ...], Mapping[str, Any], Any], OpFlops]
OpLike = OpOverload | OpOverloadPacket

ZERO = OpFlops()


class Registry:
    """Collects formulas while the formula modules import; refuses a second formula for an op."""

    def __init__(self) -> None:
        self._formulas: dict[OpOverload, Formula] = {}
        self._frozen = False

    def register(self, *ops: OpLike) -> Callable[[Formula], Formula]:
        def decorate(formula: Formula) -> Formula:
            for op in ops:
                for overload in _overloads(op):
                    self._add(overload, formula)
            return formula

        return decorate

    def add_all(self, ops: Iterable[OpLike], formula: Formula) -> None:
        for op in ops:
            for overload in _overloads(op):
                self._add(overload, formula)

    def _add(self, overload: OpOverload, formula: Formula) -> None:
        if self._frozen:
            raise RuntimeError("the formula registry is frozen once layerprof.formulas has imported")
        if overload in self._formulas:
            raise ValueError(f"{overload} already has a formula ({self._formulas[overload].__qualname__})")
        self._formulas[overload] = formula

    def freeze(self) -> Mapping[OpOverload, Formula]:
        self._frozen = True
        return MappingProxyType(self._formulas)


def _overloads(op: OpLike) -> list[OpOverload]:
    if isinstance(op, OpOverload):
        return [op]
    # A packet also holds TorchScript overloads on Python scalars, lists and strings (aten.add.int,
    # aten.eq.str, aten.copy.Dict_int): they return no tensor, never reach a kernel, and a formula
    # reading tensor shapes cannot price them. Only tensor-returning overloads get the formula.
    overloads = (getattr(op, name) for name in overload_names(op))
    return [overload for overload in overloads if _returns_tensor(overload)]


_TENSOR_TYPES = frozenset({"Tensor", "Optional[Tensor]", "List[Tensor]", "List[Optional[Tensor]]"})


def overload_names(packet: OpOverloadPacket) -> list[str]:
    """The overload names of an op packet (torch leaves ``overloads`` untyped)."""
    return list(packet.overloads())  # type: ignore[no-untyped-call]


def _returns_tensor(op: OpOverload) -> bool:
    return any(str(ret.type) in _TENSOR_TYPES for ret in op._schema.returns)


REGISTRY = Registry()
register = REGISTRY.register


def numel(shape: Iterable[int]) -> int:
    count = 1
    for size in shape:
        count *= int(size)
    return count


def first_output(out: Any) -> Any:
    """The op's first output: ``out`` itself, or its first element when the op returns several."""
    return out[0] if isinstance(out, (tuple, list)) else out


def first_output_numel(out: Any) -> int:
    """Elements of the op's first output (the one a per-element cost is charged on)."""
    return int(first_output(out).numel())
