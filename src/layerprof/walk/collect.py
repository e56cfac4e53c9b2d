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
from torch.utils.weak import WeakIdKeyDictionary

from layerprof.core import rownames
from layerprof.core.records import LayerRow, Phase
from layerprof.formulas import FORMULAS, WRITE_ONLY_DESTINATION, Formula, is_free
from layerprof.walk.fast_meta import fast_meta_kernel
from layerprof.walk.hooks import remove_all

ROOT_NAME = rownames.ROOT

Shapes = tuple[tuple[int, ...], ...]
RowKey = tuple[int, str | None]  # (id of the module running, None for its own row or a glue op name)


@dataclass(frozen=True, slots=True)
class _OpInfo:
    free: bool
    formula: Formula | None
    name: str
    packet: str
    out_args: frozenset[str]
    write_only_destination: int | None  # the position of an argument written but not read


class _Acc:
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


def _footprint_elements(tensor: torch.Tensor) -> int:
    """Elements of memory a tensor spans: its numel, or less for a broadcast view (stride 0), whose
    repeated elements are one element in memory (a class token expanded over the batch)."""
    if tensor.is_contiguous():
        return tensor.numel()
    count = tensor.numel()
    if count == 0:
        return 0
    span = 1 + sum(
        (size - 1) * abs(stride) for size, stride in zip(tensor.shape, tensor.stride(), strict=True)
    )
    return min(count, span)


def _add_bytes(values: Iterable[Any], seen: set[int]) -> int:
    """Bytes of the tensors in ``values`` (and in lists among them) not in ``seen``; adds them to it."""
    total = 0
    for value in values:
        if isinstance(value, torch.Tensor):
            if id(value) not in seen:
                seen.add(id(value))
                # is_contiguous first: the common case needs no stride walk (this runs for every op)
                elements = value.numel() if value.is_contiguous() else _footprint_elements(value)
                total += elements * value.element_size()
        elif isinstance(value, (list, tuple)):
            total += _add_bytes(value, seen)
    return total


def _describe(func: OpOverload) -> _OpInfo:
    schema = func._schema
    return _OpInfo(
        free=is_free(func),
        formula=FORMULAS.get(func),
        name=func.overloadpacket.__name__.rstrip("_") or func.overloadpacket.__name__,
        packet=str(func.overloadpacket),
        out_args=frozenset(a.name for a in schema.arguments if a.is_out),
        write_only_destination=WRITE_ONLY_DESTINATION.get(func),
    )


class OpCounter(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Prices every op that runs while it is active and charges it to the collector's current row."""

    def __init__(self, collector: Collector, *, fast_meta: bool = True) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.collector = collector
        self.fast_meta = fast_meta

    def __torch_dispatch__(
        self,
        func: OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        kernel = fast_meta_kernel(func, args) if self.fast_meta else None
        out = kernel(args, kwargs) if kernel is not None else func(*args, **kwargs)
        self.collector.charge(func, args, kwargs, out)
        return out


class Collector:
    """Counts one model's ops per row. ``attach`` hooks a module tree; ``close`` removes every hook.

    With ``track_backward`` it also charges backward ops to the layer whose forward made them: while
    the forward runs, each autograd node is mapped to the row of the op that produced the tensor it
    belongs to (known as soon as that tensor is consumed, or returned by the model); during the
    backward, ``torch._C._current_autograd_node()`` names the node running each op. Parameter-gradient
    accumulation goes to the module owning the parameter. Backward ops of nodes made outside the
    model's forward (the loss) are not rows; they are counted in ``outside_backward_ops``, as forward
    ops run outside the model (between forwards in a profiled block) are in ``outside_forward_ops``.
    """

    def __init__(self, root: nn.Module, *, track_backward: bool = False) -> None:
        self.root = root
        self.track_backward = track_backward
        named = list(root.named_modules())
        self._names = {id(m): rownames.row_name_of_module(name) for name, m in named}
        self._modules: dict[int, nn.Module] = {id(m): m for _, m in named}
        self._stack: list[nn.Module] = []
        self._states: dict[int, _ModuleState] = {}
        self._rows: dict[RowKey, _Acc] = {}
        self._backward_rows: dict[RowKey, _Acc] = {}
        self._ops: dict[OpOverload, _OpInfo] = {}
        self._seq = itertools.count()
        self._handles: list[RemovableHandle] = []
        self._produced: WeakIdKeyDictionary = WeakIdKeyDictionary()
        self._node_rows: dict[Any, RowKey] = {}
        self._param_owner: dict[int, nn.Module] = {}
        self._container_reads: dict[int, set[int]] = {}
        if track_backward:
            for module in self._modules.values():
                for param in module.parameters(recurse=False):
                    self._param_owner.setdefault(id(param), module)
        self.unsupported: Counter[str] = Counter()
        self.outside_forward_ops = 0
        self.outside_backward_ops = 0

    # -- hooks ---------------------------------------------------------------------------------------
    def attach(self) -> None:
        for module in self._modules.values():
            self._handles.append(module.register_forward_pre_hook(self._enter, with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._leave))

    def enter_running_root(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Count the root's forward that is running now: for a collector attached from inside a
        forward pre-hook of the root, whose own hooks on the root do not run for that forward."""
        self._enter(self.root, args, kwargs)

    def close(self) -> None:
        remove_all(self._handles)

    def release_graph(self) -> None:
        """Forget the autograd nodes and tensors seen (call once the backward has run)."""
        self._node_rows.clear()
        self._produced = WeakIdKeyDictionary()

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
        if self.track_backward and module is self.root:
            self._map_nodes(_tensors((output,)))

    def module_kinds(self) -> dict[str, str]:
        """Every module's row name -> class name, for rolling rows up into their containers."""
        return {self._names[key]: type(module).__name__ for key, module in self._modules.items()}

    @property
    def running_layer(self) -> str | None:
        """The innermost module running now (after a failed forward: the one that raised)."""
        return self._names.get(id(self._stack[-1])) if self._stack else None

    # -- ops -----------------------------------------------------------------------------------------
    def _info(self, func: OpOverload) -> _OpInfo:
        info = self._ops.get(func)
        if info is None:
            info = self._ops[func] = _describe(func)
        return info

    def _map_nodes(self, tensors: Iterable[torch.Tensor]) -> None:
        # A tensor's grad_fn is only set once the op that made it has returned: map it when the
        # tensor is next consumed (or returned by the model), to the row that produced it.
        for tensor in tensors:
            node = tensor.grad_fn
            if node is not None and node not in self._node_rows:
                producer = self._produced.get(tensor)  # type: ignore[no-untyped-call]
                if producer is not None:
                    self._node_rows[node] = producer

    def charge(self, func: OpOverload, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> None:
        info = self._ops.get(func) or self._info(func)
        if self.track_backward:
            node = torch._C._current_autograd_node()
            if node is not None:
                self._charge_backward(node, info, args, kwargs, out)
                return
        if not self._stack:  # not inside the model's forward: a loss, an optimizer step
            self.outside_forward_ops += 1
            return
        module = self._stack[-1]
        key: RowKey = (id(module), None if not module._modules else info.name)
        if module._modules:
            self._note_container_reads(module, args, kwargs)
        if self.track_backward:
            self._map_nodes(_tensors(args))
            for tensor in _tensors((out,)):
                self._produced[tensor] = key
        if not info.free:
            self._add(self._rows, key, info, args, kwargs, out)

    def _note_container_reads(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> None:
        # A container's own code may use a submodule's weights without calling it (swin_v2's attention
        # runs F.linear on qkv.weight): remember what it touches, views included, to credit those params.
        touched = self._container_reads.setdefault(id(module), set())
        for tensor in _tensors((*args, *kwargs.values())):
            touched.add(id(tensor))
            if tensor._base is not None:
                touched.add(id(tensor._base))

    def _glue_params(self, owner: nn.Module) -> int:
        """A container's direct parameters plus those of its never-called submodules that its code used."""
        touched = self._container_reads.get(id(owner), set())
        seen: set[int] = set()
        total = 0
        for sub in owner.modules():
            direct = sub is owner
            if not direct and id(sub) in self._states:
                continue  # it ran: its own row counts its parameters
            for param in sub.parameters(recurse=False):
                if id(param) not in seen and (direct or id(param) in touched):
                    seen.add(id(param))
                    total += param.numel()
        return total

    def _charge_backward(
        self, node: Any, info: _OpInfo, args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any
    ) -> None:
        key = self._node_rows.get(node)
        if key is None:
            key = self._accumulation_row(node)
        if key is None:
            self.outside_backward_ops += 1
        elif not info.free:
            self._add(self._backward_rows, key, info, args, kwargs, out)

    def backward_row_names(self) -> dict[Any, str]:
        """Each autograd node mapped so far (see the class docstring) -> the name of the row that its
        backward ops are charged to. Call it before :meth:`release_graph`."""
        return {node: self._row_name(key) for node, key in self._node_rows.items()}

    def parameter_row_names(self) -> dict[int, str]:
        """``id(parameter)`` -> the backward row its gradient accumulation is charged to (its owner's)."""
        names: dict[int, str] = {}
        for param_id, owner in self._param_owner.items():
            names[param_id] = self._row_name((id(owner), None if not owner._modules else "accumulate_grad"))
        return names

    def _row_name(self, key: RowKey) -> str:
        module_id, op_name = self._owner_row(key)
        state = self._states.get(module_id)
        name = state.name if state is not None else self._names[module_id]
        return name if op_name is None else rownames.glue(name, op_name)

    def _accumulation_row(self, node: Any) -> RowKey | None:
        variable = getattr(node, "variable", None)
        owner = self._param_owner.get(id(variable)) if variable is not None else None
        if owner is None:
            return None
        return (id(owner), None if not owner._modules else "accumulate_grad")

    def _add(
        self,
        rows: dict[RowKey, _Acc],
        key: RowKey,
        info: _OpInfo,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        out: Any,
    ) -> None:
        written_outputs = None
        written_args: tuple[int, ...] = ()
        if info.formula is None:
            self.unsupported[info.packet] += 1
            flops = matrix = 0
            kernel_size = None
        else:
            cost = info.formula(args, kwargs, out)
            flops, matrix, kernel_size = cost.total, cost.matrix, cost.kernel_size
            written_outputs = cost.written_outputs
            written_args = cost.written_args

        seen: set[int] = set()
        skip = info.write_only_destination
        read = _add_bytes(args if skip is None else args[:skip] + args[skip + 1 :], seen)
        if kwargs:
            read += _add_bytes([v for k, v in kwargs.items() if k not in info.out_args], seen)
        if written_outputs is None and not written_args and isinstance(out, torch.Tensor):
            written = out.numel() * out.element_size()  # the common case: one fresh, dense output
        else:
            written_outputs_of = out[:written_outputs] if written_outputs is not None else (out,)
            seen = set()
            written = _add_bytes(written_outputs_of, seen)
            if written_args:
                written += _add_bytes([args[i] for i in written_args if i < len(args)], seen)

        acc = rows.get(key)
        if acc is None:
            acc = rows[key] = _Acc(next(self._seq))
            acc.input_shapes = shapes_of(args)
            acc.output_shapes = shapes_of((out,))
        # A row computes in the dtype of its costliest kind of op: under autocast a conv row's first op
        # is the float32 -> bfloat16 copy of its weight, but its convolution runs in bfloat16.
        rank = 3 if matrix else 2 if flops else 1
        if rank > acc.dtype_rank:
            dtype = _floating_dtype(args)
            if dtype is not None:
                acc.dtype, acc.dtype_rank = dtype, rank
        acc.calls += 1
        acc.flops += flops
        acc.matrix_flops += matrix
        acc.bytes_read += read
        acc.bytes_written += written
        if acc.kernel_size is None and kernel_size is not None:
            acc.kernel_size = kernel_size

    # -- results -------------------------------------------------------------------------------------
    def rows(self) -> list[LayerRow]:
        """Forward rows, then backward rows, each in the order they first ran.

        One row per called leaf module (or childless-at-runtime container) and per glue op group.
        """
        forward = self._assemble(self._rows, "forward")
        backward = self._assemble(self._backward_rows, "backward")
        return forward + backward

    def _owner_row(self, key: RowKey) -> tuple[int, str | None]:
        """Where a key's ops are shown: the module's own row, or a container's glue row."""
        module_id, op_name = key
        state = self._states.get(module_id)
        if op_name is not None and state is not None and not state.had_child:
            return module_id, None
        return module_id, op_name

    def _assemble(self, accs: Mapping[RowKey, _Acc], phase: Phase) -> list[LayerRow]:
        grouped: dict[tuple[int, str | None], list[_Acc]] = {}
        for key, acc in accs.items():
            grouped.setdefault(self._owner_row(key), []).append(acc)
        if phase == "forward":
            # Every called leaf (or childless container) gets a row, even one that did no costed op;
            # except private helpers (an exported program's ``_guards_fn``) that did nothing.
            for module_id, called in self._states.items():
                module = self._modules.get(module_id)
                if module is None or (module._modules and called.had_child):
                    continue
                if called.name.rsplit(".", 1)[-1].startswith("_"):
                    continue
                grouped.setdefault((module_id, None), [])

        ordered: list[tuple[int, LayerRow]] = []
        for (module_id, op_name), members in grouped.items():
            members.sort(key=lambda a: a.order)
            module = self._modules[module_id]
            state = self._states.get(module_id)
            if op_name is None:
                order = state.order if phase == "forward" and state is not None else members[0].order
                ordered.append((order, self._module_row(module, state, members, phase)))
            else:
                container = state.name if state is not None else self._names[module_id]
                ordered.append((members[0].order, self._glue_row(module, container, op_name, members, phase)))
        ordered.sort(key=lambda item: item[0])
        return _give_direct_params_to_first_glue(row for _, row in ordered)

    def _module_row(
        self, module: nn.Module, state: _ModuleState | None, accs: list[_Acc], phase: Phase
    ) -> LayerRow:
        name = state.name if state is not None else self._names[id(module)]
        return _row(
            name=name,
            kind=type(module).__name__,
            phase=phase,
            depth=rownames.depth(name),
            calls=state.calls if state is not None else 1,
            input_shapes=state.input_shapes if state is not None and phase == "forward" else None,
            output_shapes=state.output_shapes if state is not None and phase == "forward" else None,
            params=sum(p.numel() for p in module.parameters()) if phase == "forward" else 0,
            accs=accs,
        )

    def _glue_row(
        self, owner: nn.Module, container: str, op_name: str, accs: list[_Acc], phase: Phase
    ) -> LayerRow:
        return _row(
            name=rownames.glue(container, op_name),
            kind=op_name,
            phase=phase,
            depth=rownames.depth(rownames.glue(container, op_name)),
            calls=sum(a.calls for a in accs),
            input_shapes=None,
            output_shapes=None,
            params=self._glue_params(owner) if phase == "forward" else 0,
            accs=accs,
        )


def _row(
    *,
    name: str,
    kind: str,
    phase: Phase,
    depth: int,
    calls: int,
    input_shapes: Shapes | None,
    output_shapes: Shapes | None,
    params: int,
    accs: list[_Acc],
) -> LayerRow:
    """A row from its accumulators; shapes default to those of its first op."""
    flops = sum(a.flops for a in accs)
    read = sum(a.bytes_read for a in accs)
    written = sum(a.bytes_written for a in accs)
    matrix = sum(a.matrix_flops for a in accs)
    return LayerRow(
        name=name,
        kind=kind,
        phase=phase,
        depth=depth,
        calls=calls,
        kernel_size=next((a.kernel_size for a in accs if a.kernel_size is not None), None),
        input_shapes=input_shapes if input_shapes is not None else (accs[0].input_shapes if accs else ()),
        output_shapes=output_shapes if output_shapes is not None else (accs[0].output_shapes if accs else ()),
        dtype=next((a.dtype for a in accs if a.dtype is not None), None),
        params=params,
        flops=flops,
        matrix_flops=matrix,
        bytes_read=read,
        bytes_written=written,
    )


def _give_direct_params_to_first_glue(rows: Iterable[LayerRow]) -> list[LayerRow]:
    # A container's own parameters (a ViT's class token) are counted once, on its first glue row.
    result: list[LayerRow] = []
    owners_seen: set[str] = set()
    for row in rows:
        if rownames.is_glue(row.name):
            owner = rownames.module_of(row.name)
            if owner in owners_seen and row.params:
                row = replace(row, params=0)
            owners_seen.add(owner)
        result.append(row)
    return result
