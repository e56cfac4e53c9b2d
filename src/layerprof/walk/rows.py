"""Row assembly: a ledger's accumulators and the module stack's records turned into LayerRows.

One row per called leaf module (or container none of whose submodules ran) and per glue op group of
a container that did run submodules; a container with no running submodule shows its ops as its own
row. Rows come out in the order they first ran (a module row: when the module was first called).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from layerprof.core import rownames
from layerprof.core.records import LayerRow, Phase
from layerprof.walk.ledger import Acc, RowKey, traffic_of
from layerprof.walk.params import ContainerReads, give_direct_params_to_first_glue, module_params
from layerprof.walk.stack import ModuleStack, ModuleState, kind_of
from layerprof.walk.tensors import Shapes


def owner_row(key: RowKey, stack: ModuleStack) -> RowKey:
    """Where a key's ops are shown: the module's own row, or a container's glue row."""
    module_id, op_name = key
    state = stack.states.get(module_id)
    if op_name is not None and state is not None and not state.had_child:
        return module_id, None
    return module_id, op_name


def row_name(key: RowKey, stack: ModuleStack) -> str:
    """The name of the row a key's ops are shown in."""
    module_id, op_name = owner_row(key, stack)
    name = stack.name_of(module_id)
    return name if op_name is None else rownames.glue(name, op_name)


def assemble(
    accs: Mapping[RowKey, Acc], phase: Phase, stack: ModuleStack, reads: ContainerReads
) -> list[LayerRow]:
    """The rows of one phase. Forward rows include every called leaf (or childless container), even
    one that did no costed op; backward rows only those charged something."""
    grouped: dict[RowKey, list[Acc]] = {}
    for key, acc in accs.items():
        grouped.setdefault(owner_row(key, stack), []).append(acc)
    if phase == "forward":
        # Every called leaf (or childless container) gets a row, even one that did no costed op;
        # except private helpers (an exported program's ``_guards_fn``) that did nothing.
        for module_id, called in stack.states.items():
            module = stack.modules.get(module_id)
            if module is None or (module._modules and called.had_child):
                continue
            if called.name.rsplit(".", 1)[-1].startswith("_"):
                continue
            grouped.setdefault((module_id, None), [])

    ordered: list[tuple[int, LayerRow]] = []
    for (module_id, op_name), members in grouped.items():
        members.sort(key=lambda a: a.order)
        module = stack.modules[module_id]
        state = stack.states.get(module_id)
        if op_name is None:
            order = state.order if phase == "forward" and state is not None else members[0].order
            ordered.append((order, _module_row(module, stack.name_of(module_id), state, members, phase)))
        else:
            params = reads.glue_params(module, stack.states) if phase == "forward" else 0
            row = _glue_row(stack.name_of(module_id), op_name, params, members, phase)
            ordered.append((members[0].order, row))
    ordered.sort(key=lambda item: item[0])
    return give_direct_params_to_first_glue(row for _, row in ordered)


def _module_row(
    module: nn.Module, name: str, state: ModuleState | None, accs: list[Acc], phase: Phase
) -> LayerRow:
    forward = phase == "forward"
    return accumulated_row(
        name=name,
        kind=kind_of(module),
        phase=phase,
        calls=state.calls if state is not None else 1,
        input_shapes=state.input_shapes if state is not None and forward else None,
        output_shapes=state.output_shapes if state is not None and forward else None,
        params=module_params(module) if forward else 0,
        accs=accs,
        shapes_vary=state is not None and state.shapes_vary,
    )


def _glue_row(container: str, op_name: str, params: int, accs: list[Acc], phase: Phase) -> LayerRow:
    return accumulated_row(
        name=rownames.glue(container, op_name),
        kind=op_name,
        phase=phase,
        calls=sum(a.calls for a in accs),
        input_shapes=None,
        output_shapes=None,
        params=params,
        accs=accs,
        shapes_vary=any(a.shapes_vary for a in accs),
    )


def accumulated_row(
    *,
    name: str,
    kind: str,
    phase: Phase,
    calls: int,
    input_shapes: Shapes | None,
    output_shapes: Shapes | None,
    params: int,
    accs: list[Acc],
    shapes_vary: bool = False,
) -> LayerRow:
    """A row from its accumulators (in order); shapes default to those of its first op."""
    return LayerRow(
        name=name,
        kind=kind,
        phase=phase,
        depth=rownames.depth(name),
        calls=calls,
        kernel_size=next((a.kernel_size for a in accs if a.kernel_size is not None), None),
        input_shapes=input_shapes if input_shapes is not None else (accs[0].input_shapes if accs else ()),
        output_shapes=output_shapes if output_shapes is not None else (accs[0].output_shapes if accs else ()),
        shapes_vary=shapes_vary,
        dtype=next((a.dtype for a in accs if a.dtype is not None), None),
        params=params,
        flops=sum(a.flops for a in accs),
        matrix_flops=sum(a.matrix_flops for a in accs),
        bytes_read=sum(a.bytes_read for a in accs),
        bytes_written=sum(a.bytes_written for a in accs),
        traffic=traffic_of(accs),
    )
