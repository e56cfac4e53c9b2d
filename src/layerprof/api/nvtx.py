"""NVTX ranges per layer, so that Nsight Systems shows layer names on the kernels of a training step.

``with layerprof.nvtx(model): ...`` (or ``watch(model, nvtx=True)``) pushes a range named after each
module's row (``layer1.0.conv1``, ``(root)``: :mod:`layerprof.core.rownames`) around its forward,
nested as the modules are, and a range per layer around its part of the backward.

**Forward.** A forward pre-hook pushes, an ``always_call`` forward hook pops: a forward that raises
still leaves the ranges balanced.

**Backward.** The same node attribution the backward rows use (:mod:`layerprof.timing.backward`):
autograd numbers the nodes it makes in creation order, so the nodes whose number falls while a
module is the innermost one running are that module's (a container's own ops: the container's);
an ``AccumulateGrad`` node belongs to its parameter's owner. When the root's forward returns, the
graph of its outputs is walked and each node of the model gets a pre-hook: when a node of another
layer than the open range starts, that range is popped and the layer's pushed; the engine callback
queued by the first pre-hook pops the last one. So the backward gets one range per run of a layer's
nodes, in backward order, never nested, always balanced (a backward that raises never runs its
callback: its range is popped at the next forward or when the ranges are removed).

``push`` and ``pop`` default to ``torch.cuda.nvtx.range_push`` / ``range_pop`` (no-ops without a GPU
build's NVTX); pass others to record the sequence. Leaving the ``with`` block removes every hook.
Checking the ranges under ``nsys`` needs a machine with a GPU.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch._C._autograd import _get_sequence_nr
from torch.utils._pytree import tree_leaves
from torch.utils.hooks import RemovableHandle

from layerprof.core import rownames
from layerprof.errors import InvalidModelError
from layerprof.timing.backward import ACCUMULATE_GRAD
from layerprof.walk.hooks import remove_all

__all__ = ["NvtxRanges", "nvtx"]

Push = Callable[[str], object]
Pop = Callable[[], object]


def _default_push(name: str) -> object:
    return torch.cuda.nvtx.range_push(name)  # type: ignore[no-untyped-call]


def _default_pop() -> object:
    return torch.cuda.nvtx.range_pop()  # type: ignore[no-untyped-call]


class NvtxRanges:
    """The hooks behind :func:`nvtx`: :meth:`attach`, then :meth:`close` (or use it as a context)."""

    def __init__(
        self, model: nn.Module, *, push: Push | None = None, pop: Pop | None = None, backward: bool = True
    ) -> None:
        if not isinstance(model, nn.Module):
            raise InvalidModelError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.push: Push = push or _default_push
        self.pop: Pop = pop or _default_pop
        self.backward = backward
        self._handles: list[RemovableHandle] = []  # module hooks
        self._node_handles: list[RemovableHandle] = []  # the last graph's node pre-hooks
        self._running: list[str] = []  # the modules in their forward, innermost last
        self._marks: list[tuple[int, str]] = []  # (first sequence number, row) of each stretch
        self._open: str | None = None  # the backward range pushed and not popped yet
        self._queued = False
        self._lock = threading.Lock()

    # -- public ----------------------------------------------------------------------------------------
    def attach(self) -> NvtxRanges:
        try:
            for path, module in self.model.named_modules():
                name = rownames.row_name_of_module(path)
                self._handles.append(module.register_forward_pre_hook(self._entered(name)))
                self._handles.append(module.register_forward_hook(self._left(name), always_call=True))
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Every hook off; a backward range still open is popped."""
        try:
            remove_all(self._handles)
            remove_all(self._node_handles)
        finally:
            self._close_backward_range()

    def __enter__(self) -> NvtxRanges:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # -- forward ---------------------------------------------------------------------------------------
    def _entered(self, name: str) -> Callable[..., None]:
        def pre_hook(module: nn.Module, args: Any) -> None:
            if not self._running:  # the root's forward begins: a new graph
                self._close_backward_range()
                remove_all(self._node_handles)
                self._marks = []
            self._mark(name)
            self._running.append(name)
            self.push(name)

        return pre_hook

    def _left(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self.pop()
            if self._running and self._running[-1] == name:
                self._running.pop()
            if self._running:
                self._mark(self._running[-1])  # back in the container: its own ops
            elif self.backward and output is not None and torch.is_grad_enabled():
                self._hook_graph(output)

        return hook

    def _mark(self, row: str) -> None:
        self._marks.append((_get_sequence_nr(), row))

    # -- backward --------------------------------------------------------------------------------------
    def _row_of_number(self, number: int) -> str | None:
        row = None
        for first, name in self._marks:
            if first > number:
                break
            row = name
        return row

    def _owners(self) -> dict[int, str]:
        owners: dict[int, str] = {}
        for path, module in self.model.named_modules():
            for param in module.parameters(recurse=False):
                owners.setdefault(id(param), rownames.row_name_of_module(path))
        return owners

    def _graph(self, output: Any) -> Iterator[tuple[Any, str]]:
        """The model's nodes behind ``output``, with their rows."""
        base = self._marks[0][0] if self._marks else _get_sequence_nr()
        owners = self._owners()
        seen: set[Any] = set()
        stack: list[Any] = [
            t.grad_fn for t in tree_leaves(output) if isinstance(t, torch.Tensor) and t.grad_fn
        ]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            if node.name() == ACCUMULATE_GRAD:
                owner = owners.get(id(getattr(node, "variable", None)))
                if owner is not None:
                    yield node, owner
                continue
            number = node._sequence_nr()
            if number < base:
                continue  # made before the model's forward: an input's history
            row = self._row_of_number(number)
            if row is not None:
                yield node, row
            stack.extend(next_node for next_node, _ in node.next_functions)

    def _hook_graph(self, output: Any) -> None:
        self._queued = False
        for node, row in list(self._graph(output)):
            self._node_handles.append(node.register_prehook(self._node_started(row)))

    def _node_started(self, row: str) -> Callable[..., None]:
        def pre_hook(_grad_outputs: Any) -> None:
            with self._lock:
                first = not self._queued
                self._queued = True
            if first:
                torch.autograd.Variable._execution_engine.queue_callback(  # type: ignore[attr-defined]
                    self._close_backward_range
                )
            if self._open != row:
                self._close_backward_range()
                self.push(row)
                self._open = row

        return pre_hook

    def _close_backward_range(self) -> None:
        if self._open is not None:
            self._open = None
            self.pop()


def nvtx(
    model: nn.Module, *, push: Push | None = None, pop: Pop | None = None, backward: bool = True
) -> NvtxRanges:
    """NVTX ranges named after each layer's row around its forward and its backward, for Nsight Systems
    (see :mod:`layerprof.api.nvtx`); a context manager: ``with layerprof.nvtx(model): train()``.
    ``push``/``pop`` replace ``torch.cuda.nvtx.range_push``/``range_pop``."""
    return NvtxRanges(model, push=push, pop=pop, backward=backward).attach()
