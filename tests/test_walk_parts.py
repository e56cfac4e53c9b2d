"""Each piece of the walk alone, on hand-made expectations: the module stack, pricing one op, backward
attribution, parameter crediting, row assembly; and a formula that raises is layerprof's FormulaError,
never the user's ForwardError.
"""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import torch
from torch import nn
from torch._ops import OpOverload
from torch.utils._python_dispatch import TorchDispatchMode

import layerprof
from layerprof import FormulaError, ForwardError, LayerprofError
from layerprof.core import rownames
from layerprof.core.records import LayerRow
from layerprof.formulas.registry import REGISTRY, OpFlops
from layerprof.walk import collect, pricing
from layerprof.walk.attribution import BackwardAttribution
from layerprof.walk.ledger import Acc, Ledger, row_key
from layerprof.walk.params import (
    ContainerReads,
    give_direct_params_to_first_glue,
    module_params,
    parameter_owners,
)
from layerprof.walk.pricing import OpCost, add_bytes, describe, price
from layerprof.walk.rows import assemble, owner_row, row_name
from layerprof.walk.stack import ModuleStack
from models import ConvBnReluNet

aten = torch.ops.aten
F32 = 4  # bytes per float32 element
HOOKS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
)


def hooks_on(model: nn.Module) -> int:
    return sum(len(getattr(module, hooks)) for module in model.modules() for hooks in HOOKS)


class Block(nn.Module):
    """A container with a leaf, a shared leaf called twice and its own functional op."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x)) + self.act(x)


# -- the module stack --------------------------------------------------------------------------------------
def test_the_stack_records_each_module_that_ran_in_first_call_order() -> None:
    model = nn.Sequential(OrderedDict(block=Block(), head=nn.Linear(4, 2)))
    seen: list[tuple[str | None, str | None]] = []
    stack = ModuleStack(model, itertools.count())
    stack.attach()
    model.block.fc.register_forward_hook(lambda *_: seen.append((stack.running_layer, None)))
    try:
        model(torch.randn(3, 4))
    finally:
        stack.close()
    assert hooks_on(model) == 1  # the stack's hooks are gone; the test's own is left
    # The test's hook runs after the stack's own forward hook on fc, which popped fc.
    assert seen == [("block", None)]
    assert stack.current is None and stack.running_layer is None
    states = {state.name: state for state in stack.states.values()}
    assert [s.name for s in sorted(states.values(), key=lambda s: s.order)] == [
        rownames.ROOT, "block", "block.fc", "block.act", "head",
    ]  # fmt: skip
    assert states["block.act"].calls == 2  # shared within one forward: one state, two calls
    assert states["block.act"].input_shapes == ((3, 4),)  # the first call's
    assert states[rownames.ROOT].had_child and states["block"].had_child
    assert not states["block.fc"].had_child and not states["head"].had_child
    assert states["head"].output_shapes == ((3, 2),)
    kinds = {rownames.ROOT: "Sequential", "block": "Block", "block.fc": "Linear", "block.act": "ReLU"}
    assert stack.module_kinds() == {**kinds, "head": "Linear"}


def test_the_stack_names_the_innermost_running_module_and_calls_back_with_the_roots_output() -> None:
    model = nn.Sequential(OrderedDict(block=Block()))
    running: list[str | None] = []
    outputs: list[Any] = []
    stack = ModuleStack(model, itertools.count(), on_root_output=outputs.append)
    stack.attach()
    model.block.fc.register_forward_pre_hook(lambda *_: running.append(stack.running_layer))
    try:
        result = model(torch.randn(1, 4))
    finally:
        stack.close()
    assert running == ["block.fc"]  # the stack's pre-hook ran first and pushed it
    assert len(outputs) == 1 and outputs[0] is result


# -- pricing one op ----------------------------------------------------------------------------------------
def test_pricing_a_matrix_product() -> None:
    a, b = torch.empty(3, 5, device="meta"), torch.empty(5, 7, device="meta")
    cost = price(describe(aten.mm.default), (a, b), {}, torch.mm(a, b))
    assert cost == OpCost(
        flops=2 * 3 * 7 * 5,  # 2 * m * n * k
        matrix_flops=2 * 3 * 7 * 5,
        kernel_size=None,
        bytes_read=(3 * 5 + 5 * 7) * F32,
        bytes_written=3 * 7 * F32,
    )


def test_pricing_reads_a_tensor_once_and_a_broadcast_view_at_its_footprint() -> None:
    x = torch.empty(4, 6)
    squared = price(describe(aten.mul.Tensor), (x, x), {}, x * x)
    assert (squared.bytes_read, squared.bytes_written) == (24 * F32, 24 * F32)  # x read once
    token = torch.empty(1, 6).expand(4, 6)  # stride 0 over the batch: 6 elements in memory
    assert add_bytes([token], set()) == 6 * F32


def test_an_op_without_a_formula_keeps_its_bytes() -> None:
    info = describe(aten.mm.default)
    bare = pricing.OpInfo(info.free, None, info.name, info.packet, info.out_args, None, info.op)
    a, b = torch.empty(2, 2), torch.empty(2, 2)
    assert price(bare, (a, b), {}, a @ b) == OpCost(0, 0, None, 8 * F32, 4 * F32, unsupported="aten.mm")


# -- backward attribution ----------------------------------------------------------------------------------
class _Recorder(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """Feeds attribution as the collector does: every forward op of ``conv`` charged to ``key``; in the
    backward, the row each op's node maps to."""

    def __init__(self, attribution: BackwardAttribution, key: tuple[int, str | None]) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.attribution = attribution
        self.key = key
        self.backward: list[tuple[str, tuple[int, str | None] | None]] = []

    def __torch_dispatch__(
        self,
        func: OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        node = torch._C._current_autograd_node()
        if node is not None:
            self.backward.append((str(func.overloadpacket), self.attribution.row_of(node)))
        else:
            self.attribution.consumed(t for t in args if isinstance(t, torch.Tensor))
            self.attribution.produced(out, self.key)
        return out


def test_a_convs_backward_ops_go_to_its_row_and_the_loss_to_none() -> None:
    conv = nn.Conv2d(2, 3, 3, bias=False)
    attribution = BackwardAttribution(parameter_owners(conv.modules()))
    key = row_key(conv, "convolution")
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    recorder = _Recorder(attribution, key)
    with recorder:
        y = conv(x)
    attribution.returned(y)  # the model's output: its node is set now
    loss = y.sum()  # outside the recorder: made by no layer
    with recorder:
        loss.backward()
    rows: dict[str, set[tuple[int, str | None] | None]] = {}
    for op, row in recorder.backward:
        rows.setdefault(op, set()).add(row)
    assert rows["aten.convolution_backward"] == {(id(conv), None)}
    assert rows["aten.expand"] == {None}  # sum's backward: the loss, no row
    # The weight's gradient accumulation goes to the conv, which owns it.
    assert attribution.parameter_rows() == {id(conv.weight): (id(conv), None)}
    assert list(attribution.node_rows.values()) == [key]
    attribution.release()
    assert not attribution.node_rows


def test_a_containers_own_parameter_accumulates_on_its_glue_row() -> None:
    class WithToken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.token = nn.Parameter(torch.zeros(2))
            self.fc = nn.Linear(2, 2)

    model = WithToken()
    attribution = BackwardAttribution(parameter_owners(model.modules()))
    rows = attribution.parameter_rows()
    assert rows[id(model.token)] == (id(model), "accumulate_grad")
    assert rows[id(model.fc.weight)] == (id(model.fc), None)
    node = (model.token * 2).grad_fn
    assert node is not None
    accumulate = node.next_functions[0][0]
    assert attribution.row_of(accumulate) == (id(model), "accumulate_grad")


def test_the_collector_routes_each_layers_backward_ops_to_its_row() -> None:
    with torch.device("meta"):
        model = nn.Sequential(OrderedDict(conv=nn.Conv2d(2, 3, 3, bias=False), act=nn.ReLU()))
    collector = collect.Collector(model, track_backward=True)
    collector.attach()
    try:
        with collect.OpCounter(collector):
            model(torch.empty(1, 2, 5, 5, device="meta")).sum().backward()
    finally:
        collector.close()
    assert sorted(set(collector.backward_row_names().values())) == ["act", "conv"]
    assert collector.parameter_row_names() == {id(model.conv.weight): "conv"}
    collector.release_graph()
    backward = {row.name: row for row in collector.rows() if row.phase == "backward"}
    assert set(backward) == {"conv", "act"}
    # Only the weight gradient (the input needs none): as many FLOPs as the forward's convolution.
    assert backward["conv"].matrix_flops == 2 * 3 * 3 * 3 * 2 * 3 * 3  # 2 * Cout * H'W' * Cin * k * k
    # The loss's sum and the seed of its gradient ran outside the model; its backward has no row.
    assert collector.outside_forward_ops > 0 and collector.outside_backward_ops > 0


# -- crediting parameters ----------------------------------------------------------------------------------
def test_a_shared_module_and_a_tied_weight_are_credited_once() -> None:
    shared = nn.Linear(3, 3)
    model = nn.Sequential(OrderedDict(a=shared, b=shared, c=nn.Linear(3, 3, bias=False)))
    model.c.weight = shared.weight  # tied
    owners = parameter_owners(model.modules())
    assert owners == {id(shared.weight): shared, id(shared.bias): shared}
    assert module_params(model) == 9 + 3  # each parameter once
    assert module_params(model.c) == 9


def test_glue_params_are_the_direct_ones_plus_unrun_submodules_weights_read() -> None:
    class Container(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.token = nn.Parameter(torch.zeros(5))
            self.ran = nn.Linear(2, 2)  # 6 parameters, in its own row
            self.used = nn.Linear(3, 3)  # 12; only its weight (9) is read by the container's code
            self.idle = nn.Linear(4, 4)  # never touched

    model = Container()
    reads = ContainerReads()
    reads.note(model, (torch.empty(1), model.used.weight.t()), {})  # a view: its base counts as read
    assert reads.glue_params(model, {id(model.ran)}) == 5 + 9
    assert reads.glue_params(model.used, set()) == 12  # its own direct parameters


def test_a_containers_direct_params_go_on_its_first_glue_row_only() -> None:
    def row(name: str, params: int) -> LayerRow:
        return LayerRow(
            name=name, kind="k", phase="forward", depth=rownames.depth(name), calls=1, params=params
        )

    rows = [row("blk/add", 7), row("blk.fc", 4), row("blk/mul", 7), row("other/add", 2)]
    assert [r.params for r in give_direct_params_to_first_glue(rows)] == [7, 4, 0, 2]


# -- row assembly ------------------------------------------------------------------------------------------
def acc(order: int, *, flops: int = 0, read: int = 0, calls: int = 1, dtype: str | None = None) -> Acc:
    made = Acc(order)
    made.flops, made.bytes_read, made.calls, made.dtype = flops, read, calls, dtype
    made.input_shapes = ((order,),)
    return made


def test_rows_from_hand_made_accumulators() -> None:
    model = nn.Sequential(OrderedDict(block=Block(), head=nn.Linear(4, 2)))
    model.block.token = nn.Parameter(torch.zeros(3))
    order = itertools.count()
    stack = ModuleStack(model, order)
    x = torch.empty(1, 4)
    # The forward, by hand: root > block > (fc, act, act) > head.
    stack.enter(model, (x,), {})
    stack.enter(model.block, (x,), {})
    for leaf in (model.block.fc, model.block.act, model.block.act):
        stack.enter(leaf, (x,), {})
        stack.leave(leaf, (x,), x)
    stack.leave(model.block, (x,), x)
    stack.enter(model.head, (x,), {})
    stack.leave(model.head, (x,), torch.empty(1, 2))
    stack.leave(model, (x,), torch.empty(1, 2))
    accs = {
        row_key(model.block.fc, "addmm"): acc(10, flops=40, read=100, dtype="float32"),
        row_key(model.block, "add"): acc(11, flops=4, read=32),
        row_key(model.head, "addmm"): acc(12, flops=20, read=60),
        row_key(model.block, "mul"): acc(13, flops=4, read=32, calls=2),
    }
    rows = assemble(accs, "forward", stack, ContainerReads())
    assert [(r.name, r.kind, r.calls, r.flops, r.bytes_read, r.params) for r in rows] == [
        ("block.fc", "Linear", 1, 40, 100, 20),
        ("block.act", "ReLU", 2, 0, 0, 0),  # called, no costed op: still a row
        ("head", "Linear", 1, 20, 60, 10),  # module rows sit at their first call, glue at their first op
        ("block/add", "add", 1, 4, 32, 3),  # the container's token, on its first glue row
        ("block/mul", "mul", 2, 4, 32, 0),
    ]
    assert rows[0].input_shapes == ((1, 4),) and rows[0].dtype == "float32"  # the module's, not the op's
    assert rows[3].input_shapes == ((11,),)  # a glue row's: its first op's
    assert row_name(row_key(model.block, "add"), stack) == "block/add"
    # Backward: only rows charged something, in the order first charged, with no shapes of the module.
    backward = assemble({row_key(model.head, "mm"): acc(20, flops=8)}, "backward", stack, ContainerReads())
    assert [(r.name, r.phase, r.flops, r.params, r.input_shapes) for r in backward] == [
        ("head", "backward", 8, 0, ((20,),))
    ]


def test_a_container_none_of_whose_submodules_ran_is_one_row() -> None:
    attention = nn.MultiheadAttention(4, 1)
    stack = ModuleStack(attention, itertools.count())
    x = torch.empty(1, 4)
    stack.enter(attention, (x,), {})
    stack.leave(attention, (x,), x)
    ledger = Ledger(itertools.count(5))
    for op in ("linear", "softmax", "linear"):
        ledger.add(row_key(attention, op), OpCost(2, 0, None, 8, 4), (x,), x)
    assert owner_row(row_key(attention, "linear"), stack) == (id(attention), None)
    (row,) = assemble(ledger.accs, "forward", stack, ContainerReads())
    assert (row.name, row.kind, row.calls, row.flops, row.bytes_read) == (
        rownames.ROOT, "MultiheadAttention", 1, 6, 24,
    )  # fmt: skip


# -- a formula that raises is layerprof's error ------------------------------------------------------------
def _raising(message: str) -> Callable[[tuple[Any, ...], Mapping[str, Any], Any], OpFlops]:
    def broken_formula(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
        raise IndexError(message)

    return broken_formula


@pytest.mark.parametrize(
    ("op", "backward"),
    [(aten.convolution.default, False), (aten.convolution_backward.default, True)],
    ids=["forward", "backward"],
)
def test_a_raising_formula_is_a_formula_error_naming_the_op_and_formula(
    monkeypatch: pytest.MonkeyPatch, op: OpOverload, backward: bool
) -> None:
    monkeypatch.setitem(REGISTRY._formulas, op, _raising("formula bug"))
    model = ConvBnReluNet()
    with pytest.raises(FormulaError) as caught:
        layerprof.analyze(model, input_size=(2, 3, 8, 8), target=None, backward=backward)
    error = caught.value
    assert not isinstance(error, ForwardError) and isinstance(error, (LayerprofError, RuntimeError))
    assert error.op == str(op) and str(op) in str(error)
    assert error.formula.endswith("_raising.<locals>.broken_formula") and error.formula in str(error)
    assert isinstance(error.__cause__, IndexError) and "formula bug" in str(error)
    assert hooks_on(model) == 0


def test_byte_counting_and_the_counters_own_bugs_are_formula_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: object) -> int:
        raise ValueError("counter bug")

    model = ConvBnReluNet()
    monkeypatch.setattr(pricing, "add_bytes", broken)
    with pytest.raises(FormulaError, match="counting the bytes") as caught:
        layerprof.analyze(model, input_size=(2, 3, 8, 8), target=None)
    assert caught.value.op == "aten.convolution.default"
    assert caught.value.formula == "layerprof.formulas.conv.convolution"
    monkeypatch.undo()
    monkeypatch.setattr(collect, "row_key", broken)  # routing, past pricing
    with pytest.raises(FormulaError, match="charging the call"):
        layerprof.analyze(model, input_size=(2, 3, 8, 8), target=None)
    assert hooks_on(model) == 0


def test_a_formula_error_is_not_retried_on_real_inputs_by_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REGISTRY._formulas, aten.convolution.default, _raising("formula bug"))
    model = ConvBnReluNet().eval()
    with pytest.raises(FormulaError, match=re.escape("aten.convolution.default")):
        layerprof.profile(model, torch.randn(1, 3, 8, 8), target=None, warmup=0, repeat=1)
    assert hooks_on(model) == 0


def test_the_users_own_exception_is_still_a_forward_error() -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x) @ torch.empty(3, 3, device=x.device)  # a shape error in the model

    with pytest.raises(ForwardError) as caught:
        layerprof.analyze(Broken(), input_size=(2, 4), target=None)
    assert not isinstance(caught.value, FormulaError)
