"""One counted run's memory footprint: the tracker wired to a collector, a twin, its inputs and phases.

:func:`layerprof.api.counting.count` calls :meth:`FootprintRun.begin` before the forward,
:meth:`~FootprintRun.backward_starts` before the backward, :meth:`~FootprintRun.after_backward`
(which steps the optimizer, see :mod:`~layerprof.walk.memory_optim`) after it, and
:meth:`~FootprintRun.end` in its ``finally``; :meth:`~FootprintRun.with_activation_bytes` fills
``LayerRow.activation_bytes`` of the forward rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from torch import nn

from layerprof.core.records import LayerRow
from layerprof.walk.memory import RULES, Category, MemoryPhase, MemoryTracker, PhasePeak, Rule
from layerprof.walk.memory_optim import OptimizerSpec, run_optimizer
from layerprof.walk.rows import row_name
from layerprof.walk.stack import ModuleStack

__all__ = ["FootprintRun"]


class FootprintRun:
    """The memory side of one counted run. ``rules``: the allocator rules the targets need (the
    optimizer step runs once per rule's implementation); ``on_meta``: only meta tensors are device
    memory (an optimizer's step counters stay on the CPU)."""

    def __init__(
        self,
        *,
        optimizer: OptimizerSpec | None = None,
        rules: Iterable[Rule] = RULES,
        on_meta: bool = True,
    ) -> None:
        self.optimizer = optimizer
        self.rules = frozenset(rules)
        self.restart(on_meta=on_meta)

    def restart(self, *, on_meta: bool) -> None:
        """Forget everything tracked (a count that failed on meta, run again on real tensors)."""
        self.tracker = MemoryTracker(track_devices=frozenset({"meta"}) if on_meta else None)
        self._stack: ModuleStack | None = None

    def begin(
        self,
        stack: ModuleStack,
        twin: nn.Module,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        *,
        backward: bool,
    ) -> None:
        self._stack = stack
        self.tracker.watch(stack)
        self.tracker.track_model(twin, gradients=backward)
        self.tracker.track((*args, *kwargs.values()), Category.INPUTS)
        self.tracker.start_phase("forward")

    def backward_starts(self) -> None:
        self.tracker.start_phase("backward")

    def after_backward(self, twin: nn.Module) -> None:
        self.tracker.phase = None
        if self.optimizer is not None:
            run_optimizer(self.optimizer, twin, self.tracker, self.rules)

    def end(self) -> None:
        self.tracker.close()

    def with_activation_bytes(self, rows: list[LayerRow]) -> list[LayerRow]:
        """The rows with ``activation_bytes`` of each forward row (the bytes its calls left alive)."""
        if self._stack is None:
            return rows
        held: dict[str, int] = {}
        for key, size in self.tracker.held_by_row().items():
            name = row_name(key, self._stack)
            held[name] = held.get(name, 0) + size
        return [
            replace(row, activation_bytes=held[row.name])
            if row.phase == "forward" and row.name in held
            else row
            for row in rows
        ]

    def peaks(self, rule: Rule) -> dict[MemoryPhase, PhasePeak]:
        return self.tracker.peaks(rule)
