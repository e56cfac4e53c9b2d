"""Crediting parameters to rows, so that every parameter of the model is counted once in the report.

A module's row counts all its parameters. A container's glue rows count its direct parameters (a ViT's
class token), once, on its first glue row, plus the parameters of submodules that never ran but whose
weights its own code used (swin_v2's attention runs ``F.linear`` on ``qkv.weight``); a submodule
that ran has its own row for them. In the backward, a parameter's gradient accumulation is charged
to the module that owns it.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from layerprof.core import rownames
from layerprof.core.records import LayerRow
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


def packed_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The weight and bias packed in the quantized modules of ``module``'s tree (a quantized conv's or
    linear's ``_packed_params``, which are no ``nn.Parameter``)."""
    tensors: list[torch.Tensor] = []
    for sub in module.modules():
        packed = getattr(sub, "_packed_params", None)
        if isinstance(packed, torch.ScriptObject) and packed._has_method("unpack"):
            tensors.extend(t for t in packed.unpack() if isinstance(t, torch.Tensor))
    return tensors


def packed_params(module: nn.Module) -> int:
    """Elements of the packed quantized weights and biases in ``module``'s tree."""
    return sum(t.numel() for t in packed_tensors(module))


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
