"""Sorting and selection: sort, argsort, topk, unique, nonzero, as comparisons (1 FLOP each).

- sort (and argsort, msort): ``n * ceil(log2 n)`` compares per slice of ``n`` elements along the
  sorted dimension (a comparison sort).
- topk: ``n * ceil(log2(k + 1))`` compares per slice (a heap of ``k``; ``k = 1`` is a plain max, ``n``).
- unique (sorted): ``n * ceil(log2 n) + n`` (a sort, then each element against its neighbour).
- nonzero: ``n``, one compare with zero per element.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from layerprof.formulas.registry import OpFlops, register

aten = torch.ops.aten


def _slices(x: torch.Tensor, dim: int) -> tuple[int, int]:
    if x.dim() == 0:
        return 1, 1
    n = int(x.shape[dim])
    return (int(x.numel()) // n if n else 0), n


def _log2(n: int) -> int:
    return max(1, math.ceil(math.log2(n))) if n > 1 else 0


def _dim(args: tuple[Any, ...], kwargs: Mapping[str, Any], position: int) -> int:
    if "dim" in kwargs:
        return int(kwargs["dim"])
    return int(args[position]) if len(args) > position and isinstance(args[position], int) else -1


@register(aten.sort)
def sort(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # sort(self, dim=-1, descending=False); sort.stable(self, *, stable, dim=-1, descending=False)
    slices, n = _slices(args[0], _dim(args, kwargs, 1))
    return OpFlops(vector=slices * n * _log2(n))


@register(aten.topk)
def topk(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # topk(self, k, dim=-1, largest=True, sorted=True)
    k = int(args[1])
    slices, n = _slices(args[0], _dim(args, kwargs, 2))
    return OpFlops(vector=slices * n * max(1, math.ceil(math.log2(k + 1))))


@register(aten.nonzero, aten.argwhere)
def nonzero(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    """One compare with zero per input element (the indices written are data movement)."""
    return OpFlops(vector=int(args[0].numel()))


@register(aten._unique2, aten.unique_dim, aten.unique_consecutive, aten._unique)
def unique(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    """A sort (``n * ceil(log2 n)`` compares) and one compare per element with its neighbour."""
    n = int(args[0].numel())
    return OpFlops(vector=n * _log2(n) + n)
