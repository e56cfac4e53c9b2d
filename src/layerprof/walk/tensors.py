"""Finding the tensors among an op's or a module's arguments, and reading their shapes and dtype.

The module stack, the pricing of ops and backward attribution all look through the same nested
arguments (tensors, lists and tuples of them, dicts of them); one walk keeps them agreeing on what
counts as an input.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

Shapes = tuple[tuple[int, ...], ...]


def iter_tensors(values: Iterable[Any]) -> Iterable[torch.Tensor]:
    """The tensors in ``values``: direct ones, those in lists and tuples (one level), those in dicts."""
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, torch.Tensor))
        elif isinstance(value, dict):
            yield from iter_tensors(value.values())


def shapes_of(values: Iterable[Any]) -> Shapes:
    """The shape of every tensor :func:`iter_tensors` finds, as plain ints, in order."""
    return tuple(tuple(int(s) for s in t.shape) for t in iter_tensors(values))


def floating_dtype(args: tuple[Any, ...]) -> str | None:
    """The dtype a row computes in: its first floating, complex or quantized input's (int64 counters do
    not count); a quantized tensor (quint8, qint8) computes in ``int8``."""
    for tensor in iter_tensors(args):
        if tensor.is_quantized:
            return "int8" if tensor.element_size() == 1 else str(tensor.dtype).removeprefix("torch.")
        if tensor.is_floating_point() or tensor.is_complex():
            return str(tensor.dtype).removeprefix("torch.")
    return None
