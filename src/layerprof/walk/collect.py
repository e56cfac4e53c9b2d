"""Walking a model: module hooks keep a stack of running modules, a dispatch mode prices every aten op.

Each op that reaches the dispatcher is charged to the innermost module running when it ran: a leaf
module's row, or a glue row ``container/op`` for ops in a container's own ``forward``. A container
none of whose submodules ran (``nn.MultiheadAttention`` calling its projections functionally) is one
row of its own. Every op lands in exactly one row, so row sums are the totals.

The :class:`Collector` only routes each op; the jobs live alone: the module stack
(:mod:`~layerprof.walk.stack`), pricing an op (:mod:`~layerprof.walk.pricing`), running totals per row
(:mod:`~layerprof.walk.ledger`), backward attribution (:mod:`~layerprof.walk.attribution`), crediting
parameters (:mod:`~layerprof.walk.params`) and row assembly (:mod:`~layerprof.walk.rows`). The
dispatch mode itself is :class:`~layerprof.walk.counter.OpCounter`, importable from here too.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn
from torch._ops import OpOverload

from layerprof.core import rownames
from layerprof.core.records import LayerRow, Traffic
from layerprof.walk.access_trace import AccessTrace
from layerprof.walk.attribution import BackwardAttribution
from layerprof.walk.counter import OpCounter
from layerprof.walk.ledger import Ledger, RowKey, row_key
from layerprof.walk.params import ContainerReads, parameter_owners
from layerprof.walk.pricing import OpInfo, describe, price
from layerprof.walk.rows import assemble, row_name
from layerprof.walk.stack import ModuleStack
from layerprof.walk.tensors import iter_tensors

__all__ = ["ROOT_NAME", "Collector", "OpCounter"]

ROOT_NAME = rownames.ROOT


class Collector:
    """Counts one model's ops per row. ``attach`` hooks a module tree; ``close`` removes every hook.

    With ``track_backward`` it also charges backward ops to the layer whose forward made them (see
    :mod:`~layerprof.walk.attribution`). Parameter-gradient accumulation goes to the module owning
    the parameter. Backward ops of nodes made outside the model's forward (the loss) are not rows;
    they are counted in ``outside_backward_ops``, as forward ops run outside the model (between
    forwards in a profiled block) are in ``outside_forward_ops``.

    With ``cache_model`` (the default) it also keeps the access trace of the rows' ops
    (:mod:`~layerprof.walk.access_trace`), from which each row gets its ``traffic``.
    """

    def __init__(self, root: nn.Module, *, track_backward: bool = False, cache_model: bool = True) -> None:
        self.root = root
        self.track_backward = track_backward
        order = itertools.count()  # shared: rows keep the order they first ran in, across all three
        self._attribution = BackwardAttribution(parameter_owners(root.modules()) if track_backward else {})
        self._stack = ModuleStack(
            root, order, on_root_output=self._attribution.returned if track_backward else None
        )
        self._forward = Ledger(order)
        self._backward = Ledger(order)
        self._reads = ContainerReads()
        self._ops: dict[OpOverload, OpInfo] = {}
        self._trace = AccessTrace() if cache_model else None
        self.unsupported: Counter[str] = Counter()
        self.outside_forward_ops = 0
        self.outside_backward_ops = 0

    # -- hooks ---------------------------------------------------------------------------------------
    def attach(self) -> None:
        self._stack.attach()

    def enter_running_root(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Count the root's forward that is running now: for a collector attached from inside a
        forward pre-hook of the root, whose own hooks on the root do not run for that forward."""
        self._stack.enter(self.root, args, kwargs)

    def close(self) -> None:
        self._stack.close()

    def release_graph(self) -> None:
        """Forget the autograd nodes and tensors seen (call once the backward has run)."""
        self._attribution.release()

    def module_kinds(self) -> dict[str, str]:
        """Every module's row name -> class name, for rolling rows up into their containers."""
        return self._stack.module_kinds()

    @property
    def module_stack(self) -> ModuleStack:
        """The stack of running modules (:mod:`~layerprof.walk.exported` drives it node by node)."""
        return self._stack

    @property
    def running_layer(self) -> str | None:
        """The innermost module running now (after a failed forward: the one that raised)."""
        return self._stack.running_layer

    # -- ops -----------------------------------------------------------------------------------------
    def _info(self, func: OpOverload) -> OpInfo:
        info = self._ops.get(func)
        if info is None:
            info = self._ops[func] = describe(func)
        return info

    def charge(self, func: OpOverload, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> None:
        """Route one op that has run: to its backward row, its forward row, or the outside counts."""
        info = self._ops.get(func) or self._info(func)
        if self.track_backward:
            node = torch._C._current_autograd_node()
            if node is not None:
                key = self._attribution.row_of(node)
                if key is None:
                    self.outside_backward_ops += 1
                elif not info.free:
                    self._add(self._backward, key, info, args, kwargs, out)
                return
        module = self._stack.current
        if module is None:  # not inside the model's forward: a loss, an optimizer step
            self.outside_forward_ops += 1
            return
        key = row_key(module, info.name)
        if module._modules:
            self._reads.note(module, args, kwargs)
        if self.track_backward:
            self._attribution.consumed(iter_tensors(args))
            self._attribution.produced(out, key)
        if not info.free:
            self._add(self._forward, key, info, args, kwargs, out)

    def _add(
        self,
        ledger: Ledger,
        key: RowKey,
        info: OpInfo,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        out: Any,
    ) -> None:
        cost = price(info, args, kwargs, out)
        if cost.unsupported is not None:  # no formula, or none for complex operands
            self.unsupported[cost.unsupported] += 1
        acc = ledger.add(key, cost, args, out)
        if self._trace is not None:
            self._trace.record(acc, info, args, kwargs, out, cost)

    # -- results -------------------------------------------------------------------------------------
    def backward_row_names(self) -> dict[Any, str]:
        """Each autograd node mapped so far (see :mod:`~layerprof.walk.attribution`) -> the name of the
        row that its backward ops are charged to. Call it before :meth:`release_graph`."""
        return {node: row_name(key, self._stack) for node, key in self._attribution.node_rows.items()}

    def parameter_row_names(self) -> dict[int, str]:
        """``id(parameter)`` -> the backward row its gradient accumulation is charged to (its owner's)."""
        return {
            param_id: row_name(key, self._stack)
            for param_id, key in self._attribution.parameter_rows().items()
        }

    def rows(self) -> list[LayerRow]:
        """Forward rows, then backward rows, each in the order they first ran.

        One row per called leaf module (or childless-at-runtime container) and per glue op group.
        """
        if self._trace is not None:
            self._trace.finish()
        forward = assemble(self._forward.accs, "forward", self._stack, self._reads)
        backward = assemble(self._backward.accs, "backward", self._stack, self._reads)
        rows = forward + backward
        if self._trace is None:
            return rows
        # A row that ran no priced op moves nothing and launches nothing, as the cache model sees it.
        return [r if r.traffic is not None else replace(r, traffic=Traffic()) for r in rows]
