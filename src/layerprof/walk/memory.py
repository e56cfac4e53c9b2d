"""The storage tracker: how much memory a run holds at each moment, counted on meta, nothing allocated.

Every tensor an op returns is looked up by its untyped storage (views share their base's storage, so
a view costs nothing); a storage seen for the first time is charged its ``nbytes()`` and gets a weak
reference whose callback gives the bytes back when the last tensor using it dies. This is how
torch's own ``torch.distributed._tools.mem_tracker.MemTracker`` counts, and it works the same on meta
and real tensors. Each storage has a category (:class:`Category`): parameters, buffers and inputs are
registered up front, what the forward makes is an activation, what the backward makes is temporary
until autograd accumulates it into a parameter's ``.grad`` (a post-accumulate-grad hook on the
twin's parameters makes it a gradient), and what an optimizer keeps in its ``state`` is optimizer
state. The peak is taken after each op, with its outputs alive and its inputs not yet freed; memory an
op allocates and frees inside its own kernel (workspaces) is not seen.

Two allocator rules are tallied side by side (:data:`RULES`): ``"exact"`` (each storage its bytes,
as a CPU allocator sees it) and ``"cuda"``, PyTorch's CUDA caching allocator, which rounds every
request up to a multiple of 512 bytes (``kMinBlockSize``; a 1-byte tensor takes 512 bytes, an empty
one none). The segments it reserves around those blocks (2 MiB / 20 MiB) are ``memory_reserved``, not
``memory_allocated``, and are not counted.

Per row, :meth:`MemoryTracker.held_by_row` gives the bytes of the storages a row's own ops created
during a call that are still alive when that call returns (summed over calls): what a layer leaves
behind, its output and what autograd saved.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Literal

import torch
from torch import nn
from torch._ops import OpOverload
from torch.utils.hooks import RemovableHandle

from layerprof.walk.hooks import remove_all
from layerprof.walk.ledger import RowKey, row_key
from layerprof.walk.pricing import describe
from layerprof.walk.stack import ModuleStack
from layerprof.walk.tensors import iter_tensors

__all__ = ["CUDA_BLOCK_BYTES", "PHASES", "RULES", "Category", "MemoryTracker", "PhasePeak", "cuda_block"]

Rule = Literal["exact", "cuda"]
RULES: tuple[Rule, ...] = ("exact", "cuda")
MemoryPhase = Literal["forward", "backward", "optimizer_step"]
PHASES: tuple[MemoryPhase, ...] = ("forward", "backward", "optimizer_step")
#: The CUDA caching allocator's block granularity (c10/cuda/CUDACachingAllocator.cpp, kMinBlockSize).
CUDA_BLOCK_BYTES = 512


class Category(IntEnum):
    """What a storage holds; the names are :class:`~layerprof.report.memory.MemoryReport`'s fields."""

    PARAMETERS = 0
    BUFFERS = 1
    INPUTS = 2
    ACTIVATIONS = 3
    GRADIENTS = 4
    OPTIMIZER_STATE = 5
    TEMPORARY = 6


def cuda_block(nbytes: int) -> int:
    """Bytes the CUDA caching allocator hands out for a request of ``nbytes``: a multiple of 512."""
    return -(-nbytes // CUDA_BLOCK_BYTES) * CUDA_BLOCK_BYTES


@dataclass(frozen=True, slots=True)
class PhasePeak:
    """The highest memory of one phase under one allocator rule, and what it held at that moment."""

    phase: MemoryPhase
    peak_bytes: int
    by_category: tuple[int, ...]  # indexed by Category

    def bytes_of(self, category: Category) -> int:
        return self.by_category[category]


class _Storage:
    __slots__ = ("alive", "category", "exact", "key", "ref", "rounded")

    def __init__(self, exact: int, category: Category, key: RowKey | None) -> None:
        self.exact = exact
        self.rounded = -(-exact // CUDA_BLOCK_BYTES) * CUDA_BLOCK_BYTES  # cuda_block, inlined: hot
        self.category = category
        self.key = key
        self.alive = True
        self.ref: weakref.ref[Any] | None = None


class MemoryTracker:
    """Live storages, their categories and the peaks per phase; fed by the counter after every op.

    ``track_devices``: the device types whose tensors are the device's memory (``{"meta"}`` for a meta
    run, where an optimizer's CPU step counters are not device memory); None tracks every tensor.
    """

    def __init__(self, *, track_devices: frozenset[str] | None = None) -> None:
        self.track_devices = track_devices
        self.phase: MemoryPhase | None = "forward"  # None: allocations tracked, no peak recorded
        self.recording: frozenset[Rule] = frozenset(RULES)
        self._live: dict[int, _Storage] = {}
        self._totals: dict[Rule, list[int]] = {rule: [0] * len(Category) for rule in RULES}
        self._sums: dict[Rule, int] = dict.fromkeys(RULES, 0)
        self._meta_only = track_devices == frozenset({"meta"})
        self._peaks: dict[Rule, dict[MemoryPhase, PhasePeak]] = {rule: {} for rule in RULES}
        self._pending: dict[int, list[_Storage]] = {}  # id(module) -> storages its ops made this call
        self._held: dict[RowKey, int] = {}
        self._names: dict[OpOverload, str] = {}
        self._stack: ModuleStack | None = None
        self._handles: list[RemovableHandle] = []

    # -- wiring --------------------------------------------------------------------------------------
    def watch(self, stack: ModuleStack) -> None:
        """Charge allocations to the running module's rows; learn from ``stack`` when a call returns."""
        self._stack = stack
        stack.leave_listeners.append(self.module_left)

    def track_model(self, model: nn.Module, *, gradients: bool) -> None:
        """Register ``model``'s parameters and buffers; with ``gradients``, mark each parameter's
        ``.grad`` a gradient when autograd accumulates it (hooks on the twin's parameters only)."""
        for param in model.parameters():
            self.track((param,), Category.PARAMETERS)
            if gradients and param.requires_grad:
                handle = param.register_post_accumulate_grad_hook(self._accumulated)  # type: ignore[no-untyped-call]
                self._handles.append(handle)
        for buffer in model.buffers():
            self.track((buffer,), Category.BUFFERS)

    def close(self) -> None:
        remove_all(self._handles)

    def _accumulated(self, param: torch.Tensor) -> None:
        if param.grad is not None:
            self.recategorize((param.grad,), Category.GRADIENTS)

    # -- storages ------------------------------------------------------------------------------------
    def track(self, values: Iterable[Any], category: Category, key: RowKey | None = None) -> list[_Storage]:
        """Register the storages of the tensors in ``values`` not seen yet; returns the new ones.

        Parameters, buffers and inputs are registered this way before the run; they outlive it."""
        new: list[_Storage] = []
        devices = self.track_devices
        for tensor in iter_tensors(values):
            if devices is not None and tensor.device.type not in devices:
                continue
            storage = _storage_of(tensor)
            if storage is not None and id(storage) not in self._live:
                new.append(self._add(storage, category, key, weak=category > Category.INPUTS))
        return new

    def _add(self, storage: Any, category: Category, key: RowKey | None, *, weak: bool = True) -> _Storage:
        ident = id(storage)
        entry = _Storage(storage.nbytes(), category, key)
        self._live[ident] = entry
        if weak:  # parameters, buffers and inputs outlive the run: no weak reference to watch them die
            entry.ref = weakref.ref(storage, self._freer(ident))
        self._totals["exact"][category] += entry.exact
        self._totals["cuda"][category] += entry.rounded
        self._sums["exact"] += entry.exact
        self._sums["cuda"] += entry.rounded
        return entry

    def _freer(self, ident: int) -> Callable[[Any], None]:
        def freed(_: Any) -> None:
            entry = self._live.pop(ident, None)
            if entry is not None:
                entry.alive = False
                self._totals["exact"][entry.category] -= entry.exact
                self._totals["cuda"][entry.category] -= entry.rounded
                self._sums["exact"] -= entry.exact
                self._sums["cuda"] -= entry.rounded

        return freed

    def recategorize(self, values: Iterable[Any], category: Category) -> None:
        """The storages of ``values`` now hold ``category`` (a gradient, optimizer state)."""
        for tensor in iter_tensors(values):
            storage = _storage_of(tensor)
            entry = self._live.get(id(storage)) if storage is not None else None
            if entry is None:
                self.track((tensor,), category)
            elif entry.category != category:
                for rule, size in (("exact", entry.exact), ("cuda", entry.rounded)):
                    totals = self._totals[rule]  # type: ignore[index]
                    totals[entry.category] -= size
                    totals[category] += size
                entry.category = category

    # -- ops -----------------------------------------------------------------------------------------
    def allocated(self, func: OpOverload, out: Any) -> None:
        """An op has run and returned ``out``: charge its new storages, then note a new peak.

        The hot path of counting: most ops return one tensor, and views and in-place ops return
        storages already known, which cost one lookup and nothing else."""
        tensors = (out,) if isinstance(out, torch.Tensor) else out if isinstance(out, (tuple, list)) else ()
        live, devices = self._live, self.track_devices
        fresh: list[Any] | None = None
        for tensor in tensors:
            if not isinstance(tensor, torch.Tensor):
                continue
            if devices is not None and not (
                tensor.is_meta if self._meta_only else tensor.device.type in devices
            ):
                continue
            storage = _storage_of(tensor)
            if storage is not None and id(storage) not in live:
                if fresh is None:
                    fresh = []
                fresh.append(storage)
        if fresh is None:
            return
        phase = self.phase
        module = self._stack.current if self._stack is not None and phase == "forward" else None
        # Backward and optimizer-step allocations are temporary (the optimizer's state exists by the
        # recorded step, see memory_optim); forward ones (and a warm-up step's) activations.
        category = Category.TEMPORARY if phase in ("backward", "optimizer_step") else Category.ACTIVATIONS
        key = row_key(module, self._name(func)) if module is not None else None
        made = [self._add(st, category, key) for st in fresh if id(st) not in live]
        if module is not None:
            self._pending.setdefault(id(module), []).extend(made)
        if phase is not None:
            self._note_peak(phase)

    def start_phase(self, phase: MemoryPhase | None) -> None:
        """Later allocations belong to ``phase``; what is alive now is already a peak of it."""
        self.phase = phase
        if phase is not None:
            self._note_peak(phase)

    def _name(self, func: OpOverload) -> str:
        name = self._names.get(func)
        if name is None:
            name = self._names[func] = describe(func).name
        return name

    def _note_peak(self, phase: MemoryPhase) -> None:
        for rule in self.recording:
            total = self._sums[rule]
            known = self._peaks[rule].get(phase)
            if known is None or total > known.peak_bytes:
                self._peaks[rule][phase] = PhasePeak(phase, total, tuple(self._totals[rule]))

    def module_left(self, module: nn.Module) -> None:
        """A module's call returned: what its own ops made and still holds stays charged to its rows."""
        made = self._pending.pop(id(module), None)
        if made:
            held = self._held
            for entry in made:
                if entry.alive and entry.key is not None:
                    held[entry.key] = held.get(entry.key, 0) + entry.exact

    # -- results -------------------------------------------------------------------------------------
    def held_by_row(self) -> Mapping[RowKey, int]:
        """Row key -> bytes its calls left alive when they returned (exact bytes, target-free)."""
        return self._held

    def peaks(self, rule: Rule) -> dict[MemoryPhase, PhasePeak]:
        """Each phase that ran -> its peak under ``rule``."""
        return dict(self._peaks[rule])

    def current_bytes(self, rule: Rule = "exact") -> int:
        return self._sums[rule]


def _storage_of(tensor: torch.Tensor) -> Any:
    """The tensor's untyped storage; None for one without (sparse, nested, some subclasses)."""
    try:
        return tensor.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None
