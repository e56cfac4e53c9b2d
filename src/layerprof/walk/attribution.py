"""Backward attribution: each backward op goes to the row of the layer whose forward made its node.

While the forward runs, every tensor an op returns is remembered with the row of that op. A tensor's
``grad_fn`` is only set once the op that made it has returned, so the node is mapped to the row when
the tensor is next consumed by an op (or returned by the model). During the backward,
``torch._C._current_autograd_node()`` names the node running each op, which gives its row. Gradient
accumulation into a parameter (an ``AccumulateGrad`` node, never made by a forward op) goes to the
module that owns the parameter. Nodes made outside the model's forward (the loss) have no row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

from layerprof.walk.ledger import RowKey, row_key
from layerprof.walk.tensors import iter_tensors

ACCUMULATE_GRAD = "accumulate_grad"  # the glue op name of a container's own parameters' accumulation


class BackwardAttribution:
    """Autograd nodes made during the forward -> row keys. ``param_owners``: ``id(parameter)`` -> the
    module whose row its gradient accumulation is charged to."""

    def __init__(self, param_owners: Mapping[int, nn.Module]) -> None:
        self._param_owners = param_owners
        self._produced: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._node_rows: dict[Any, RowKey] = {}

    def produced(self, out: Any, key: RowKey) -> None:
        """The tensors in ``out`` were made by an op charged to ``key``."""
        for tensor in iter_tensors((out,)):
            self._produced[tensor] = key

    def consumed(self, tensors: Iterable[torch.Tensor]) -> None:
        """``tensors`` are read by an op (or returned by the model): their nodes are set by now."""
        for tensor in tensors:
            node = tensor.grad_fn
            if node is not None and node not in self._node_rows:
                producer = self._produced.get(tensor)  # type: ignore[no-untyped-call]
                if producer is not None:
                    self._node_rows[node] = producer

    def returned(self, output: Any) -> None:
        """The model's forward returned ``output``: map the nodes of the tensors in it."""
        self.consumed(iter_tensors((output,)))

    def row_of(self, node: Any) -> RowKey | None:
        """The row a backward op run by ``node`` goes to; None for a node made outside the model."""
        key = self._node_rows.get(node)
        return key if key is not None else self._accumulation_row(node)

    def _accumulation_row(self, node: Any) -> RowKey | None:
        variable = getattr(node, "variable", None)
        owner = self._param_owners.get(id(variable)) if variable is not None else None
        return row_key(owner, ACCUMULATE_GRAD) if owner is not None else None

    @property
    def node_rows(self) -> Mapping[Any, RowKey]:
        """Every node mapped so far -> its row key."""
        return self._node_rows

    def parameter_rows(self) -> dict[int, RowKey]:
        """``id(parameter)`` -> the row key its gradient accumulation is charged to (its owner's)."""
        return {param_id: row_key(owner, ACCUMULATE_GRAD) for param_id, owner in self._param_owners.items()}

    def release(self) -> None:
        """Forget the nodes and tensors seen (once the backward has run), so the graph can be freed."""
        self._node_rows.clear()
        self._produced = WeakIdKeyDictionary()
