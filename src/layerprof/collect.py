"""Walking a model: module hooks keep a stack of running modules, a dispatch mode prices every aten op.

Each op that reaches the dispatcher is charged to the innermost module running when it ran: a leaf
module's row, or a glue row ``container/op`` for ops in a container's own ``forward``. A container
none of whose submodules ran (``nn.MultiheadAttention`` calling its projections functionally) is one
row of its own. Every op lands in exactly one row, so row sums are the totals.

Bytes follow DESIGN.md: each distinct tensor an op reads plus each tensor it writes, at the tensor's
own element size. Formulas give FLOPs; ops without one keep their bytes and are listed as unsupported.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch._ops import OpOverload
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.hooks import RemovableHandle

from layerprof.fast_meta import fast_meta_kernel
from layerprof.formulas import FORMULAS, WRITE_ONLY_DESTINATION, Formula, is_free
from layerprof.records import LayerRow, Phase, intensity_of

ROOT_NAME = "(root)"

Shapes = tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class _OpInfo:
    free: bool
    formula: Formula | None
    name: str
    out_args: frozenset[str]
    write_only_destination: bool


class _Acc:
    """Running totals of one row while the forward runs (internal, mutable, never returned)."""

    __slots__ = (
        "bytes_read",
        "bytes_written",
        "calls",
        "dtype",
        "flops",
        "input_shapes",
        "kernel_size",
        "matrix_flops",
        "order",
        "output_shapes",
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
        self.input_shapes: Shapes = ()
        self.output_shapes: Shapes = ()


class _ModuleState:
    __slots__ = ("calls", "had_child", "input_shapes", "name", "order", "output_shapes")

    def __init__(self, name: str, order: int) -> None:
        self.name = name
        self.order = order
        self.calls = 0
        self.had_child = False
        self.input_shapes: Shapes = ()
        self.output_shapes: Shapes = ()


def _tensors(values: Iterable[Any]) -> Iterable[torch.Tensor]:
    for value in values:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (v for v in value if isinstance(v, torch.Tensor))
        elif isinstance(value, dict):
            yield from _tensors(value.values())


def shapes_of(values: Iterable[Any]) -> Shapes:
    return tuple(tuple(int(s) for s in t.shape) for t in _tensors(values))


def _floating_dtype(args: tuple[Any, ...]) -> str | None:
    """The dtype a row computes in: its first floating input's (int64 counters do not count)."""
    for tensor in _tensors(args):
        if tensor.is_floating_point():
            return str(tensor.dtype).removeprefix("torch.")
    return None


def _add_bytes(values: Iterable[Any], seen: set[int]) -> int:
    """Bytes of the tensors in ``values`` (and in lists among them) not in ``seen``; adds them to it."""
    total = 0
    for value in values:
        if isinstance(value, torch.Tensor):
            if id(value) not in seen:
                seen.add(id(value))
                total += value.numel() * value.element_size()
        elif isinstance(value, (list, tuple)):
            total += _add_bytes(value, seen)
    return total


def _describe(func: OpOverload) -> _OpInfo:
    schema = func._schema
    return _OpInfo(
        free=is_free(func),
        formula=FORMULAS.get(func),
        name=func.overloadpacket.__name__.rstrip("_") or func.overloadpacket.__name__,
        out_args=frozenset(a.name for a in schema.arguments if a.is_out),
        write_only_destination=func in WRITE_ONLY_DESTINATION,
    )


class OpCounter(TorchDispatchMode):
    """Prices every op that runs while it is active and charges it to the collector's current row."""

    def __init__(self, collector: Collector, *, fast_meta: bool = True) -> None:
        super().__init__()
        self.collector = collector
        self.fast_meta = fast_meta

    def __torch_dispatch__(
        self, func: OpOverload, types: Any, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        kernel = fast_meta_kernel(func, args) if self.fast_meta else None
        out = kernel(args, kwargs) if kernel is not None else func(*args, **kwargs)
        self.collector.charge(func, args, kwargs, out)
        return out


class Collector:
    """Counts one model's ops per row. ``attach`` hooks a module tree; ``close`` removes every hook."""

    def __init__(self, root: nn.Module, *, phase: Phase = "forward") -> None:
        self.root = root
        self.phase: Phase = phase
        self._names = {id(m): (name or ROOT_NAME) for name, m in root.named_modules()}
        self._modules: dict[int, nn.Module] = {id(m): m for _, m in root.named_modules()}
        self._stack: list[nn.Module] = []
        self._states: dict[int, _ModuleState] = {}
        self._rows: dict[tuple[int, str | None], _Acc] = {}
        self._ops: dict[OpOverload, _OpInfo] = {}
        self._seq = itertools.count()
        self._handles: list[RemovableHandle] = []
        self.unsupported: Counter[str] = Counter()

    # -- hooks ---------------------------------------------------------------------------------------
    def attach(self) -> None:
        for module in self._modules.values():
            self._handles.append(module.register_forward_pre_hook(self._enter, with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._leave))

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _enter(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self._stack:
            parent = self._states.get(id(self._stack[-1]))
            if parent is not None:
                parent.had_child = True
        state = self._states.get(id(module))
        if state is None:
            state = _ModuleState(self._names.get(id(module), type(module).__name__), next(self._seq))
            state.input_shapes = shapes_of((*args, *kwargs.values()))
            self._states[id(module)] = state
        state.calls += 1
        self._stack.append(module)

    def _leave(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        if self._stack and self._stack[-1] is module:
            self._stack.pop()
        state = self._states[id(module)]
        if state.calls == 1 and not state.output_shapes:
            state.output_shapes = shapes_of((output,))

    def module_kinds(self) -> dict[str, str]:
        """Every module's row name -> class name, for rolling rows up into their containers."""
        return {self._names[key]: type(module).__name__ for key, module in self._modules.items()}

    @property
    def running_layer(self) -> str | None:
        """The innermost module running now (after a failed forward: the one that raised)."""
        return self._names.get(id(self._stack[-1])) if self._stack else None

    # -- ops -----------------------------------------------------------------------------------------
    def charge(self, func: OpOverload, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> None:
        info = self._ops.get(func)
        if info is None:
            info = self._ops[func] = _describe(func)
        if info.free:
            return
        written_outputs = None
        if info.formula is None:
            self.unsupported[str(func.overloadpacket)] += 1
            flops = matrix = 0
            kernel_size = None
        else:
            cost = info.formula(args, kwargs, out)
            flops, matrix, kernel_size = cost.total, cost.matrix, cost.kernel_size
            written_outputs = cost.written_outputs

        seen: set[int] = set()
        read = _add_bytes(args[1:] if info.write_only_destination else args, seen)
        if kwargs:
            read += _add_bytes([v for k, v in kwargs.items() if k not in info.out_args], seen)
        written_outputs_of = out[:written_outputs] if written_outputs is not None else (out,)
        written = _add_bytes(written_outputs_of, set())

        module = self._stack[-1] if self._stack else self.root
        is_leaf = not module._modules
        key = (id(module), None if is_leaf else info.name)
        acc = self._rows.get(key)
        if acc is None:
            acc = self._rows[key] = _Acc(next(self._seq))
            acc.input_shapes = shapes_of(args)
            acc.output_shapes = shapes_of((out,))
        if acc.dtype is None:
            acc.dtype = _floating_dtype(args)
        acc.calls += 1
        acc.flops += flops
        acc.matrix_flops += matrix
        acc.bytes_read += read
        acc.bytes_written += written
        if acc.kernel_size is None and kernel_size is not None:
            acc.kernel_size = kernel_size

    # -- results -------------------------------------------------------------------------------------
    def rows(self) -> list[LayerRow]:
        """One row per called leaf module (or childless-at-runtime container) and per glue op group."""
        merged: dict[int, list[_Acc]] = {}
        glue: list[tuple[int, str, _Acc]] = []
        for (module_id, op_name), acc in self._rows.items():
            state = self._states.get(module_id)
            if op_name is None or (state is not None and not state.had_child):
                merged.setdefault(module_id, []).append(acc)
            else:
                glue.append((module_id, op_name, acc))

        ordered: list[tuple[int, LayerRow]] = []
        for module_id, state in self._states.items():
            module = self._modules.get(module_id)
            if module is None or (module._modules and state.had_child):
                continue
            accs = merged.get(module_id, [])
            ordered.append((state.order, self._module_row(module, state, accs)))
        for module_id, op_name, acc in glue:
            state = self._states.get(module_id)
            owner = self._modules[module_id]
            container = state.name if state is not None else self._names[module_id]
            ordered.append((acc.order, self._glue_row(owner, container, op_name, acc)))
        ordered.sort(key=lambda item: item[0])
        return _give_direct_params_to_first_glue(row for _, row in ordered)

    def _module_row(self, module: nn.Module, state: _ModuleState, accs: list[_Acc]) -> LayerRow:
        accs = sorted(accs, key=lambda a: a.order)
        flops = sum(a.flops for a in accs)
        matrix = sum(a.matrix_flops for a in accs)
        read = sum(a.bytes_read for a in accs)
        written = sum(a.bytes_written for a in accs)
        kernel = next((a.kernel_size for a in accs if a.kernel_size is not None), None)
        dtype = next((a.dtype for a in accs if a.dtype is not None), None)
        return LayerRow(
            name=state.name,
            kind=type(module).__name__,
            phase=self.phase,
            depth=_depth(state.name),
            calls=state.calls,
            kernel_size=kernel,
            input_shapes=state.input_shapes,
            output_shapes=state.output_shapes,
            dtype=dtype,
            params=sum(p.numel() for p in module.parameters()),
            flops=flops,
            matrix_flops=matrix,
            macs=matrix // 2,
            bytes_read=read,
            bytes_written=written,
            intensity=intensity_of(flops, read, written),
        )

    def _glue_row(self, owner: nn.Module, container: str, op_name: str, acc: _Acc) -> LayerRow:
        return LayerRow(
            name=f"{container}/{op_name}",
            kind=op_name,
            phase=self.phase,
            depth=_depth(container) + 1,
            calls=acc.calls,
            kernel_size=acc.kernel_size,
            input_shapes=acc.input_shapes,
            output_shapes=acc.output_shapes,
            dtype=acc.dtype,
            params=sum(p.numel() for p in owner.parameters(recurse=False)),
            flops=acc.flops,
            matrix_flops=acc.matrix_flops,
            macs=acc.matrix_flops // 2,
            bytes_read=acc.bytes_read,
            bytes_written=acc.bytes_written,
            intensity=intensity_of(acc.flops, acc.bytes_read, acc.bytes_written),
        )


def _depth(name: str) -> int:
    return 0 if name == ROOT_NAME else name.count(".") + 1


def _give_direct_params_to_first_glue(rows: Iterable[LayerRow]) -> list[LayerRow]:
    # A container's own parameters (a ViT's class token) are counted once, on its first glue row.
    result: list[LayerRow] = []
    owners_seen: set[str] = set()
    for row in rows:
        if "/" in row.name:
            owner = row.name.rsplit("/", 1)[0]
            if owner in owners_seen and row.params:
                row = replace(row, params=0)
            owners_seen.add(owner)
        result.append(row)
    return result
