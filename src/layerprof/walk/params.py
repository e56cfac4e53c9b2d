"""Crediting parameters to rows, so that every parameter of the model is counted once in the report.

A module's row counts all its parameters. A container's glue rows count its direct parameters (a ViT's
class token), once, on its first glue row, plus the parameters of submodules that never ran but whose
weights its own code used (swin_v2's attention runs ``F.linear`` on ``qkv.weight``); a submodule
that ran has its own row for them. In the backward, a parameter's gradient accumulation is charged
to the module that owns it.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

from torch import nn

from layerprof.core import rownames
from layerprof.core.records import LayerRow
from layerprof.core.units import si
from layerprof.formulas.quantized import packed_tensors
from layerprof.walk.tensors import iter_tensors


def parameter_owners(modules: Iterable[nn.Module]) -> dict[int, nn.Module]:
    """``id(parameter)`` -> the first of ``modules`` that holds it directly (a shared one: its first)."""
    owners: dict[int, nn.Module] = {}
    for module in modules:
        for param in module.parameters(recurse=False):
            owners.setdefault(id(param), module)
    return owners


def module_params(module: nn.Module) -> int:
    """The parameters a module's own row counts: all of its tree's, each shared one once, and the
    weights packed inside quantized modules (:func:`packed_params`)."""
    return sum(p.numel() for p in module.parameters()) + packed_params(module)


def packed_params(module: nn.Module) -> int:
    """Elements of the weights and biases packed in the quantized modules of ``module``'s tree (a
    quantized conv's or linear's ``_packed_params``, which are no ``nn.Parameter``)."""
    return sum(
        t.numel() for sub in module.modules() for t in packed_tensors(getattr(sub, "_packed_params", None))
    )


class ContainerReads:
    """The tensors each container's own code read, to credit it the weights of submodules it used
    without calling them."""

    def __init__(self) -> None:
        self._touched: dict[int, set[int]] = {}

    def note(self, module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
        """An op run directly by the container ``module`` read ``args`` and ``kwargs`` (views included:
        their bases count as read too)."""
        touched = self._touched.setdefault(id(module), set())
        for tensor in iter_tensors((*args, *kwargs.values())):
            touched.add(id(tensor))
            if tensor._base is not None:
                touched.add(id(tensor._base))

    def glue_params(self, owner: nn.Module, ran: Container[int]) -> int:
        """A container's direct parameters plus those of its submodules not in ``ran`` (by id) that its
        code used."""
        touched = self._touched.get(id(owner), set())
        seen: set[int] = set()
        total = 0
        for sub in owner.modules():
            direct = sub is owner
            if not direct and id(sub) in ran:
                continue  # it ran: its own row counts its parameters
            for param in sub.parameters(recurse=False):
                if id(param) not in seen and (direct or id(param) in touched):
                    seen.add(id(param))
                    total += param.numel()
        return total


def give_direct_params_to_first_glue(rows: Iterable[LayerRow]) -> list[LayerRow]:
    """Each container's glue-row parameters kept on its first glue row only (``rows`` in report order)."""
    result: list[LayerRow] = []
    owners_seen: set[str] = set()
    for row in rows:
        if rownames.is_glue(row.name):
            owner = rownames.module_of(row.name)
            if owner in owners_seen and row.params:
                row = replace(row, params=0)
            owners_seen.add(owner)
        result.append(row)
    return result


@dataclass(frozen=True, slots=True)
class ParameterCounts:
    """A model's parameters as torchinfo shows them, and those its forward never used.

    ``total`` = ``trainable`` + ``frozen``: ``sum(p.numel())`` over the model's parameters (shared
    ones once), split by ``requires_grad``, plus the weights packed in quantized modules, which are
    frozen (no ``nn.Parameter`` holds them). ``unused`` maps the modules whose parameters no row
    counts (GoogLeNet's aux heads in eval mode: they never ran) to their parameter counts;
    ``unused_total`` is ``total`` minus the parameters the forward rows count.
    """

    total: int
    trainable: int
    frozen: int
    unused: Mapping[str, int]
    unused_total: int

    def summary(self) -> str:
        """The table's footer line: ``params: 6.62M (6.62M trainable, 0 frozen); not run: aux1 1.08M``."""
        line = f"params: {si(self.total)} ({si(self.trainable)} trainable, {si(self.frozen)} frozen)"
        if self.unused_total:
            named = ", ".join(f"{name} {si(count)}" for name, count in self.unused.items())
            line += f"; {si(self.unused_total)} in modules that did not run" + (
                f" ({named})" if named else ""
            )
        return line


def parameter_counts(model: nn.Module, rows: Sequence[LayerRow]) -> ParameterCounts:
    """``model``'s :class:`ParameterCounts`; ``rows`` are the report's rows (forward ones count)."""
    trainable = frozen = 0
    for param in model.parameters():
        if param.requires_grad:
            trainable += param.numel()
        else:
            frozen += param.numel()
    frozen += packed_params(model)
    total = trainable + frozen
    forward = [r for r in rows if r.phase == "forward"]
    unused_total = max(0, total - sum(r.params for r in forward))
    ran = _ran(forward)
    unused: dict[str, int] = {}
    if unused_total:
        candidates = [
            (name, params)
            for name, module in model.named_modules()
            if name and name not in ran and _parent(name) in ran and (params := module_params(module))
        ]
        # A container's own code may use a submodule's weights without calling it (swin_v2's
        # attention): those are counted on its glue row. Name only what the numbers leave unused.
        glue_owners = {_path(rownames.module_of(r.name)) for r in forward if rownames.is_glue(r.name)}
        plain = [(n, p) for n, p in candidates if _parent(n) not in glue_owners]
        chosen = candidates if sum(p for _, p in candidates) == unused_total else plain
        unused = dict(chosen)
    return ParameterCounts(total, trainable, frozen, MappingProxyType(unused), unused_total)


def _parent(name: str) -> str:
    return name.rpartition(".")[0]


def _path(module_name: str) -> str:
    """A row's module part as a ``named_modules`` path ("" for the root)."""
    return "" if module_name == rownames.ROOT else module_name


def _ran(rows: Sequence[LayerRow]) -> set[str]:
    """Module paths that ran: each row's module and all its ancestors ("" is the root)."""
    ran = {""}
    for row in rows:
        path = _path(rownames.module_of(row.name))
        if not path:
            continue
        parts = path.split(".")
        ran.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return ran
