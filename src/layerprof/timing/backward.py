"""Timing the backward pass row by row: a pre-hook and a hook on each autograd node of one graph.

**Which row a node belongs to.** Autograd numbers the nodes it creates on a thread in creation order
(``node._sequence_nr()``; ``torch.autograd._get_sequence_nr()`` is the next number). Two forwards of
the same model, in the same mode, on inputs of the same shapes, run the same code and so create the
same nodes in the same order: a node's number minus the one the counter had when the root's forward
began (its *offset*) names the same op of the same module in both. The counting step of
:func:`layerprof.watch` knows the row of each of its nodes (its :class:`~layerprof.walk.collect.Collector`
maps them while the forward runs, under the dispatch-mode counter); :class:`NodeRows` keeps that as
plain data, offset -> (node name, row name), holding no node and no tensor. The timing step walks its
own graph from the model's outputs through ``next_functions``, looks each node's offset up, and hooks
the node. Each node's name must agree with the counted one: a forward whose control flow depends on
its data makes other nodes, and then the backward is not timed at all rather than timed wrongly.
``AccumulateGrad`` nodes carry no number; they belong to their parameter's owner, found by the
parameter. Nodes made before the root's forward (an input's history) are neither hooked nor walked.

This needs no hook inside the timed forward (nothing pollutes the forward times) and no module
backward hooks, so in-place activations (``ReLU(inplace=True)``), which break those, are no problem.

**Clocks.** A node's pre-hook stamps the start, its hook the end (:mod:`layerprof.timing.clocks`:
``time.perf_counter_ns`` on the CPU, CUDA events recorded on the current stream on a GPU, where the
engine makes the node's stream current), read after one synchronize when the step is over. A row's
backward time is the sum over its nodes. The engine's own work between nodes is in no row. The first
pre-hook to run queues an engine callback (``queue_callback``) that runs once the whole backward is
over, which ends the step.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from layerprof.timing.clocks import Stamp, clock_for
from layerprof.walk.hooks import remove_all

__all__ = ["ACCUMULATE_GRAD", "BackwardTimer", "BackwardTimes", "NodeRows"]

logger = logging.getLogger(__name__)

#: ``node.name()`` of the node that accumulates a leaf tensor's gradient.
ACCUMULATE_GRAD = "torch::autograd::AccumulateGrad"


@dataclass(frozen=True, slots=True)
class NodeRows:
    """Where a step's autograd nodes go, as plain data (see the module docstring).

    ``by_offset`` maps a node's creation offset in the root's forward to (its ``name()``, its row);
    ``by_parameter`` maps ``id(parameter)`` to the row its ``AccumulateGrad`` node is charged to.
    """

    by_offset: Mapping[int, tuple[str, str]]
    by_parameter: Mapping[int, str]

    @staticmethod
    def of(nodes: Mapping[Any, str], base_sequence_nr: int, by_parameter: Mapping[int, str]) -> NodeRows:
        """From the counted step's ``nodes`` (node -> row) and the sequence number its root's forward
        began at; ``by_parameter`` is kept as it is."""
        by_offset = {
            node._sequence_nr() - base_sequence_nr: (node.name(), row)
            for node, row in nodes.items()
            if node.name() != ACCUMULATE_GRAD
        }
        return NodeRows(by_offset=by_offset, by_parameter=dict(by_parameter))


@dataclass(frozen=True, slots=True)
class BackwardTimes:
    """One backward's times: row name -> the summed time of its nodes; the span from the first hooked
    node's start to the last one's end (the model's part of the backward); how many nodes ran."""

    rows_ms: Mapping[str, float]
    span_ms: float | None
    nodes: int


class BackwardTimer:
    """Hooks on the nodes of one backward; :meth:`attach` after the forward, read once :attr:`done`.

    ``on_done`` is called from the engine callback that ends the backward, on whichever thread the
    engine runs it (the thread that called ``backward()`` for a CPU graph, possibly a device thread
    for a CUDA one). :meth:`close` removes every hook; call it in a ``finally``.
    """

    def __init__(
        self, rows: NodeRows, *, device: torch.device, on_done: Callable[[], None] | None = None
    ) -> None:
        self.rows = rows
        self.device = device
        self.on_done = on_done
        self.clock = clock_for(device)
        self._row_of: list[str] = []  # per hooked node
        # A node's stamps; None until its pre-hook (its hook) ran.
        self._starts: list[Stamp | None] = []
        self._ends: list[Stamp | None] = []
        self._first: int | None = None  # the node whose pre-hook ran first
        self._last: int | None = None  # the node whose hook ran last
        self._handles: list[RemovableHandle] = []
        self._queued = False
        self._lock = threading.Lock()
        self.done = False
        self.mismatch: str | None = None  # why the graph was not hooked, when it was not

    # -- hooks ---------------------------------------------------------------------------------------
    def attach(self, outputs: Iterable[torch.Tensor], base_sequence_nr: int) -> int:
        """Hook the nodes made since ``base_sequence_nr`` that ``outputs`` depend on; returns how many.

        Returns 0, hooking nothing, when a node's name disagrees with the counted one (see
        :attr:`mismatch`) or no node is known.
        """
        planned: list[tuple[Any, str]] = []
        seen: set[Any] = set()  # holds the node objects while walking, so that identity is stable
        stack: list[Any] = [t.grad_fn for t in outputs if t.grad_fn is not None]
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            name = node.name()
            if name == ACCUMULATE_GRAD:
                row = self.rows.by_parameter.get(id(getattr(node, "variable", None)))
                if row is not None:
                    planned.append((node, row))
                continue
            offset = node._sequence_nr() - base_sequence_nr
            if offset < 0:
                continue  # made before this forward: not the model's
            counted = self.rows.by_offset.get(offset)
            if counted is not None:
                if counted[0] != name:
                    self.mismatch = (
                        f"node {offset} of the forward is {name}, but the counted step made {counted[0]} "
                        "there: the forward depends on its data, so its backward is not timed"
                    )
                    logger.info("%s", self.mismatch)
                    return 0
                planned.append((node, counted[1]))
            stack.extend(next_node for next_node, _ in node.next_functions)
        if not planned:
            self.mismatch = "no node of the forward is known from the counted step"
            return 0
        self.clock.reserve(2 * len(planned))
        try:
            for index, (node, row) in enumerate(planned):
                self._add_slot(row)
                pre, post = self._hooks(index)
                self._handles.append(node.register_prehook(pre))
                self._handles.append(node.register_hook(post))
        except BaseException:
            self.close()
            raise
        return len(planned)

    def close(self) -> None:
        remove_all(self._handles)

    def _add_slot(self, row: str) -> None:
        self._row_of.append(row)
        self._starts.append(None)
        self._ends.append(None)

    def _queue_end(self) -> None:
        with self._lock:
            if self._queued:
                return
            self._queued = True
        torch.autograd.Variable._execution_engine.queue_callback(self._finish)  # type: ignore[attr-defined]

    def _finish(self) -> None:
        self.done = True
        if self.on_done is not None:
            self.on_done()

    def _hooks(self, index: int) -> tuple[Callable[..., None], Callable[..., None]]:
        starts, ends = self._starts, self._ends
        stamp = self.clock.stamp

        def pre(_grad_outputs: Any) -> None:
            if not self._queued:
                self._queue_end()
            if self._first is None:
                self._first = index
            starts[index] = stamp()  # last, so that the bookkeeping is not in the node's time

        def post(_grad_inputs: Any, _grad_outputs: Any) -> None:
            ends[index] = stamp()  # first, for the same reason
            self._last = index

        return pre, post

    # -- results -------------------------------------------------------------------------------------
    def read(self) -> BackwardTimes:
        """The times of the nodes that ran (on CUDA after one synchronize); call it once :attr:`done`."""
        clock = self.clock
        stamps = list(zip(self._starts, self._ends, strict=True))
        if any(start is not None and end is not None for start, end in stamps):
            clock.synchronize()
        rows: dict[str, float] = {}
        nodes = 0
        for row, (start, end) in zip(self._row_of, stamps, strict=True):
            if start is not None and end is not None:
                rows[row] = rows.get(row, 0.0) + clock.elapsed_ms(start, end)
                nodes += 1
        span_ms: float | None = None
        if self._first is not None and self._last is not None:
            first, last = self._starts[self._first], self._ends[self._last]
            if first is not None and last is not None:
                span_ms = clock.elapsed_ms(first, last)
        return BackwardTimes(rows_ms=MappingProxyType(rows), span_ms=span_ms, nodes=nodes)

    @property
    def hooked(self) -> int:
        return len(self._row_of)
