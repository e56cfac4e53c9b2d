"""layerprof.nvtx and watch(nvtx=True): NVTX ranges per layer, forward and backward (issue #13).

The push and pop functions are injected, so the exact sequence is checked on the CPU; what Nsight
Systems shows (the ranges on the kernels, under ``nsys profile``) needs a machine with a GPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import layerprof
from conftest import hooks_on


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))  # type: ignore[no-any-return]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Block()
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.block(x), 1))  # type: ignore[no-any-return]


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    def push(self, name: str) -> None:
        self.events.append(f"push {name}")

    def pop(self) -> None:
        self.events.append("pop")


def balanced(events: list[str]) -> bool:
    depth = 0
    for event in events:
        depth += 1 if event.startswith("push") else -1
        if depth < 0:
            return False
    return depth == 0


FORWARD = [
    "push (root)",
    "push block",
    "push block.conv",
    "pop",
    "push block.relu",
    "pop",
    "pop",
    "push fc",
    "pop",
    "pop",
]


def test_forward_and_backward_ranges_are_the_rows_in_order() -> None:
    torch.manual_seed(0)
    model = Net()
    record = Recorder()
    x, y = torch.randn(2, 3, 4, 4), torch.tensor([0, 2])
    with layerprof.nvtx(model, push=record.push, pop=record.pop):
        output = model(x)
        assert record.events == FORWARD  # nested as the modules are, named after their rows
        F.cross_entropy(output, y).backward()
    # The backward: one range per layer, in backward order (fc first), flat; the flatten's node runs
    # in the root's own stretch, and so is the root's. The input needs no gradient: conv's is last.
    assert record.events[len(FORWARD) :] == [
        "push fc",
        "pop",
        "push (root)",
        "pop",
        "push block.relu",
        "pop",
        "push block.conv",
        "pop",
    ]
    assert balanced(record.events)
    assert hooks_on(model) == 0


def test_backward_range_names_are_the_reports_backward_row_names() -> None:
    torch.manual_seed(0)
    model = Net()
    record = Recorder()
    x = torch.randn(2, 3, 4, 4)
    with layerprof.nvtx(model, push=record.push, pop=record.pop):
        model(x).sum().backward()
    backward = [e.removeprefix("push ") for e in record.events[len(FORWARD) :] if e.startswith("push")]
    report = layerprof.analyze(model, x, backward=True)
    modules = {r.name.partition("/")[0] for r in report.backward}  # a glue row is its container's
    # The root's own flatten is a view: its backward node gets a range of the root's, and no row (a
    # view costs nothing, so the report leaves it out).
    assert set(backward) == modules | {"(root)"} and "(root)" not in modules
    assert {r.name for r in report.forward} <= {e.removeprefix("push ") for e in record.events}


def test_a_second_step_gets_the_same_ranges_and_a_removed_one_none() -> None:
    model = Net()
    record = Recorder()
    x = torch.randn(2, 3, 4, 4)
    with layerprof.nvtx(model, push=record.push, pop=record.pop):
        model(x).sum().backward()
        first = list(record.events)
        model(x).sum().backward()
    assert record.events == first + first
    model(x).sum().backward()
    assert record.events == first + first  # after the with: nothing pushed
    assert hooks_on(model) == 0


def test_a_forward_that_raises_leaves_ranges_balanced_and_no_hook() -> None:
    model = Net()
    record = Recorder()
    with pytest.raises(RuntimeError), layerprof.nvtx(model, push=record.push, pop=record.pop):
        model(torch.randn(2, 5, 4, 4))  # the wrong channels: block.conv raises
    assert record.events == ["push (root)", "push block", "push block.conv", "pop", "pop", "pop"]
    assert hooks_on(model) == 0


def test_a_backward_left_unrun_has_its_node_hooks_removed() -> None:
    model = Net()
    record = Recorder()
    with layerprof.nvtx(model, push=record.push, pop=record.pop):
        loss = model(torch.randn(2, 3, 4, 4)).sum()
    loss.backward()  # after the with: the graph's node pre-hooks are gone
    assert record.events == FORWARD and hooks_on(model) == 0


def test_no_grad_forward_pushes_forward_ranges_only() -> None:
    model = Net()
    record = Recorder()
    with torch.no_grad(), layerprof.nvtx(model, push=record.push, pop=record.pop):
        model(torch.randn(2, 3, 4, 4))
    assert record.events == FORWARD


def test_watch_nvtx_pushes_ranges_every_step_and_removes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    record = Recorder()
    monkeypatch.setattr(torch.cuda.nvtx, "range_push", record.push)
    monkeypatch.setattr(torch.cuda.nvtx, "range_pop", record.pop)
    model = Net()
    x = torch.randn(2, 3, 4, 4)
    with layerprof.watch(model, every=10, target=None, sink=lambda report: None, nvtx=True) as watcher:
        for _ in range(3):  # counted, timed, plain: the ranges are the same every step
            model(x).sum().backward()
    assert watcher.samples == 1
    assert record.events[: len(FORWARD)] == FORWARD
    assert len(record.events) % 3 == 0
    step = len(record.events) // 3
    assert record.events == record.events[:step] * 3 and balanced(record.events)
    assert hooks_on(model) == 0


def test_watch_nvtx_must_be_a_bool() -> None:
    with pytest.raises(layerprof.InvalidArgumentError, match="nvtx"):
        layerprof.watch(Net(), target=None, nvtx="yes")  # type: ignore[arg-type]


def test_nvtx_needs_a_module() -> None:
    with pytest.raises(layerprof.InvalidModelError):
        layerprof.nvtx(lambda x: x)  # type: ignore[arg-type]
