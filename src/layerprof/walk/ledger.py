"""Running totals per row while a model runs: priced ops added up under the key of the row they go to.

A row key is ``(id of the module, None)`` for a module's own row and ``(id of a container, op name)``
for a container's glue ops; :mod:`layerprof.walk.rows` turns the totals into rows. The forward and the
backward each keep one ledger; they share one counter with the module stack, so that every row's
place in the report is the moment it first ran.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch import nn

from layerprof.core.records import Traffic
from layerprof.walk.pricing import OpCost
from layerprof.walk.tensors import Shapes, floating_dtype, shapes_of

RowKey = tuple[int, str | None]  # (id of the module running, None for its own row or a glue op name)


def row_key(module: nn.Module, op_name: str) -> RowKey:
    """Where an op run directly by ``module`` goes: a leaf's own row, or the container's glue row."""
    return (id(module), None if not module._modules else op_name)


class Acc:
    """Running totals of one row while the forward runs (internal, mutable, never returned)."""

    __slots__ = (
        "bytes_read",
        "bytes_written",
        "calls",
        "dtype",
        "dtype_rank",
        "flops",
        "input_shapes",
        "kernel_size",
        "matrix_flops",
        "order",
        "output_shapes",
        "reach",
        "shapes_vary",
    )

    def __init__(self, order: int) -> None:
        self.order = order
        self.calls = 0
        self.flops = 0
        self.matrix_flops = 0
        self.bytes_read = 0
        self.bytes_written = 0
        self.kernel_size: tuple[int, ...] | None = None
        self.dtype: str | None = None
        self.dtype_rank = 0  # what set dtype: 1 an op without FLOPs, 2 one with, 3 a matrix op
        self.input_shapes: Shapes = ()
        self.output_shapes: Shapes = ()
        self.shapes_vary = False  # a later op of a glue row had other shapes than its first
        self.reach: list[tuple[int, int]] | None = None  # (reach, bytes) per access, with a trace


class Ledger:
    """The accumulators of one phase, by row key, in the order the keys were first charged."""

    def __init__(self, order: Iterator[int]) -> None:
        self.accs: dict[RowKey, Acc] = {}
        self._order = order

    def add(self, key: RowKey, cost: OpCost, args: tuple[Any, ...], out: Any) -> Acc:
        """Add one priced op to ``key``'s row (whose accumulator it returns); its first op gives the
        row's shapes."""
        acc = self.accs.get(key)
        if acc is None:
            acc = self.accs[key] = Acc(next(self._order))
            acc.input_shapes = shapes_of(args)
            acc.output_shapes = shapes_of((out,))
        elif key[1] is not None and not acc.shapes_vary:
            # Only a glue row shows its ops' shapes; a module's row shows the module's (the stack's).
            acc.shapes_vary = shapes_of(args) != acc.input_shapes or shapes_of((out,)) != acc.output_shapes
        flops, matrix = cost.flops, cost.matrix_flops
        # A row computes in the dtype of its costliest kind of op: under autocast a conv row's first op
        # is the float32 -> bfloat16 copy of its weight, but its convolution runs in bfloat16.
        rank = 3 if matrix else 2 if flops else 1
        if rank > acc.dtype_rank:
            dtype = floating_dtype(args)
            if dtype is not None:
                acc.dtype, acc.dtype_rank = dtype, rank
        acc.calls += 1
        acc.flops += flops
        acc.matrix_flops += matrix
        acc.bytes_read += cost.bytes_read
        acc.bytes_written += cost.bytes_written
        if acc.kernel_size is None and cost.kernel_size is not None:
            acc.kernel_size = cost.kernel_size
        return acc


def traffic_of(accs: list[Acc]) -> Traffic | None:
    """The cache model's view of a row: its accesses' reaches and its kernels (each priced op
    launches one); None when no access trace was kept."""
    if all(a.reach is None for a in accs):
        return None
    return Traffic(tuple(p for a in accs if a.reach for p in a.reach), sum(a.calls for a in accs))
