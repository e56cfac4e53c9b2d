"""Issue #12's findings about the public API's side effects, each written so that it failed before its fix.

Profiling must not change what the user's program computes next (the RNG streams), a removed watcher
must not keep the model alive, a sampled step whose backward raised must never be reported as if it
were complete, and a sink that raises must not break the training step it was called from.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import itertools
import logging
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode_stack

import layerprof
from conftest import hooks_on
from layerprof.api.counting_mode import _StepCounter
from layerprof.api.watcher import Watcher
from layerprof.errors import InvalidArgumentError
from layerprof.report.facade import Report

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


class Dropping(nn.Module):
    """linear -> dropout -> relu -> linear: every forward in train mode draws from the global RNG."""

    def __init__(self, needs_values: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 4)
        self.needs_values = needs_values  # .item(): no meta count, so layerprof counts on real tensors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(self.fc1(x))
        if self.needs_values and y.sum().item() != y.sum().item():  # NaN check: a value, not a shape
            y = torch.zeros_like(y)
        return self.fc2(y.relu())  # type: ignore[no-any-return]


def batches(seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)  # a generator of its own: data never moves the RNG
    while True:
        yield torch.randn(4, 8, generator=generator), torch.randint(0, 4, (4,), generator=generator)


# -- 1. the RNG streams ------------------------------------------------------------------------------------
PROFILERS: dict[str, Callable[[nn.Module, torch.Tensor], object]] = {
    "analyze": lambda model, x: layerprof.analyze(model, x),
    "analyze-backward": lambda model, x: layerprof.analyze(model, x, backward=True),
    "profile": lambda model, x: layerprof.profile(model, x, target=None, warmup=1, repeat=2),
}


def _profiler_report(model: nn.Module, x: torch.Tensor) -> object:
    # The block's own forward is the user's (it may draw); report() afterwards must not draw.
    devices = [x.device.index] if x.is_cuda else []
    with (
        torch.random.fork_rng(devices=devices, device_type="cuda"),
        layerprof.Profiler(model, target=None) as prof,
    ):
        model(x)
    return prof.report()


PROFILERS["Profiler.report"] = _profiler_report


def _next_output_after(
    run: Callable[[nn.Module, torch.Tensor], object] | None, model: nn.Module, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    if run is not None:
        run(model, x)
    return model(x), torch.get_rng_state()


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(
    ("how", "needs_values"),
    # analyze(backward=True) counts on meta only: a model that needs values is refused there
    [
        (how, values)
        for how in sorted(PROFILERS)
        for values in (False, True)
        if how != "analyze-backward" or not values
    ],
    ids=lambda value: {False: "meta-count", True: "real-count"}.get(value, value),
)
def test_profiling_leaves_the_rng_where_it_was(how: str, needs_values: bool) -> None:
    torch.manual_seed(1)
    model = Dropping(needs_values).train()
    x = torch.randn(4, 8)
    expected, expected_state = _next_output_after(None, model, x)
    got, got_state = _next_output_after(PROFILERS[how], model, x)
    assert torch.equal(got, expected)  # bit-identical: the same dropout mask
    assert torch.equal(got_state, expected_state)


@cuda
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("how", sorted(PROFILERS))
def test_profiling_on_cuda_leaves_the_cuda_rng_where_it_was(how: str) -> None:
    torch.manual_seed(1)
    model = Dropping(needs_values=how != "analyze-backward").train().cuda()  # see above
    x = torch.randn(4, 8, device="cuda")

    def run(profiler: Callable[[nn.Module, torch.Tensor], object] | None) -> tuple[torch.Tensor, ...]:
        torch.manual_seed(0)
        torch.cuda.manual_seed(0)
        if profiler is not None:
            profiler(model, x)
        return model(x), torch.get_rng_state(), torch.cuda.get_rng_state()

    for got, expected in zip(run(PROFILERS[how]), run(None), strict=True):
        assert torch.equal(got.cpu(), expected.cpu())


def _train(model: nn.Module, steps: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Seeded SGD; the outputs of every step and the RNG state at the end."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = batches()
    outputs = []
    torch.manual_seed(0)
    for _ in range(steps):
        x, y = next(data)
        output = model(x)
        outputs.append(output.detach().clone())
        F.cross_entropy(output, y).backward()
        optimizer.step()
        optimizer.zero_grad()
    return outputs, torch.get_rng_state()


def test_a_watched_training_run_draws_what_an_unwatched_one_draws() -> None:
    torch.manual_seed(1)
    plain = Dropping().train()
    watched = copy.deepcopy(plain)
    expected, expected_state = _train(plain, 7)
    reports: list[Report] = []
    with layerprof.watch(watched, every=2, target=None, sink=reports.append):
        got, got_state = _train(watched, 7)  # 2 counted / 3 timed, 4 / 5, 6 / 7
    assert len(reports) == 3
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    assert torch.equal(got_state, expected_state)
    for (name, a), (_, b) in zip(plain.state_dict().items(), watched.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


# -- 2. nothing kept alive ------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["remove", "with-block", "mid-sample"])
def test_a_removed_watcher_keeps_no_reference_to_the_model(how: str) -> None:
    model = Dropping()
    alive = [weakref.ref(model), weakref.ref(model.fc1), weakref.ref(model.fc1.weight)]
    data = batches()
    reports: list[Report] = []

    def step(model: nn.Module) -> None:
        x, y = next(data)
        output = model(x)
        alive.extend([weakref.ref(x), weakref.ref(output)])
        F.cross_entropy(output, y).backward()

    if how == "with-block":
        with layerprof.watch(model, every=1, target=None, sink=reports.append) as watcher:
            step(model)
            step(model)
    else:
        watcher = layerprof.watch(model, every=1, target=None, sink=reports.append)
        step(model)
        step(model)
        if how == "mid-sample":
            step(model)  # emitted, then counted: a sample in flight
            assert watcher.in_flight
        watcher.remove()
    assert watcher.model is model  # still there while the user holds it
    del model
    gc.collect()
    assert [ref() for ref in alive] == [None] * len(alive)
    assert watcher.model is None and reports and watcher.last_report is not None  # the watcher lives on


class PassThrough(TorchDispatchMode):  # type: ignore[no-untyped-call]
    """A user's dispatch mode, above layerprof's counter: the counter cannot leave the stack under it."""

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        return func(*args, **(kwargs or {}))


def test_a_counting_mode_left_waiting_on_the_stack_keeps_no_reference_to_the_model() -> None:
    model = Dropping()
    alive = weakref.ref(model)
    watcher = layerprof.watch(model, every=1, target=None, sink=lambda report: None)
    output = model(next(batches())[0])  # counted: the counting mode is on the stack
    try:
        with PassThrough():
            watcher.remove()  # the counter waits under the user's mode, passing ops through
            assert any(isinstance(m, _StepCounter) for m in _get_current_dispatch_mode_stack())
            del model, output
            gc.collect()
            assert alive() is None  # neither the mode nor its collector holds the model
    finally:
        watcher.flush()  # takes the waiting mode off the stack
    assert not _get_current_dispatch_mode_stack()


def test_a_profiler_after_its_block_keeps_no_tensor_of_the_run() -> None:
    model = Dropping()
    x = torch.randn(4, 8, requires_grad=True)
    with layerprof.Profiler(model, target=None) as prof:
        output = model(x)
    output.sum().backward()
    alive = [weakref.ref(x), weakref.ref(output)]
    del x, output
    gc.collect()
    assert [ref() for ref in alive] == [None, None]
    report = prof.report()  # what report() needs (the model, the recorded shapes) is still there
    assert report.row("fc1").time_ms is not None


# -- 3. a sampled step whose backward raised --------------------------------------------------------------
class Failing(torch.autograd.Function):
    """The identity, whose backward raises while ``fail`` is set."""

    fail = False

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        if Failing.fail:
            raise RuntimeError("backward failed on purpose")
        return grad


class Breakable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 8)
        self.fc2 = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(Failing.apply(self.fc1(x)).relu())  # type: ignore[no-any-return]


BACKWARD_ROWS = {"fc1", "fc2", "(root)/relu"}  # a complete training step's (Failing's clone has none)


def _raise(grad: torch.Tensor) -> torch.Tensor:
    raise RuntimeError("hook failed on purpose")


def by_step(every: int, model: nn.Module, **kwargs: object) -> tuple[Watcher, list[tuple[int, Report]]]:
    got: list[tuple[int, Report]] = []
    watcher = Watcher(model, every=every, target=None, sink=lambda report, step: got.append((step, report)))
    return watcher, got


@pytest.mark.parametrize("where", ["in-the-model", "on-the-output", "in-the-loss"])
def test_a_counted_step_whose_backward_raised_is_dropped(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    model = Breakable()
    watcher, got = by_step(1, model)
    data = batches()
    with caplog.at_level(logging.WARNING, logger="layerprof"), watcher:
        x, y = next(data)
        output = model(x)  # step 0: counted
        if where == "on-the-output":
            output.register_hook(_raise)  # the loss's nodes run, then this, before any node of the model
        # in the loss: after the loss's own nodes, before the model's
        loss = F.cross_entropy(Failing.apply(output) if where == "in-the-loss" else output, y)
        Failing.fail = where != "on-the-output"
        try:
            with pytest.raises(RuntimeError, match="on purpose"):
                loss.backward()
        finally:
            Failing.fail = False
        for _ in range(2):  # step 1 drops the sample of step 0 and is counted, step 2 is timed
            x, y = next(data)
            F.cross_entropy(model(x), y).backward()
    assert [step for step, _ in got] == [1]
    ((_, report),) = got
    assert {r.name for r in report.backward} == BACKWARD_ROWS  # a complete training step
    assert all(r.time_ms is not None for r in report.backward if r.flops)
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("step 0" in m and "backward raised" in m for m in warned), warned


def test_a_backward_that_never_reaches_the_model_leaves_the_sample_waiting() -> None:
    """A backward of another graph (a GAN's other network, a loss on detached outputs) is not the
    counted step's: the counting step waits for the backward through the model."""
    model = Breakable()
    other = nn.Linear(4, 1)
    watcher, got = by_step(1, model)
    data = batches()
    with watcher:
        x, y = next(data)
        output = model(x)  # counted
        other(output.detach()).sum().backward()  # runs and ends without reaching the model
        assert watcher.in_flight
        F.cross_entropy(output, y).backward()
        x, y = next(data)
        F.cross_entropy(model(x), y).backward()  # timed
    ((step, report),) = got
    assert step == 0 and {r.name for r in report.backward} == BACKWARD_ROWS


# -- 4. a sink that raises ---------------------------------------------------------------------------------
class SinkFailure(Exception):
    pass


class FailingSink:
    def __init__(self) -> None:
        self.calls = 0
        self.raised: list[SinkFailure] = []

    def __call__(self, report: Report) -> None:
        self.calls += 1
        error = SinkFailure(f"sink failed on purpose, call {self.calls}")
        self.raised.append(error)
        raise error

    def __repr__(self) -> str:
        return "FailingSink()"


def _grads(model: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


def test_a_sink_that_raises_is_logged_and_the_training_step_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    plain = Breakable()
    watched = copy.deepcopy(plain)
    sink = FailingSink()
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in (plain, watched)]
    with (
        caplog.at_level(logging.WARNING, logger="layerprof"),
        layerprof.watch(watched, every=1, target=None, sink=sink),
    ):
        for step, (x, y) in enumerate(itertools.islice(batches(), 6)):
            grads = []
            for model, optimizer in zip((plain, watched), optimizers, strict=True):
                F.cross_entropy(model(x), y).backward()  # the sink runs inside the watched one's
                grads.append(_grads(model))
                optimizer.step()
                optimizer.zero_grad()
            assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True)), step
    assert sink.calls == 3  # 1/2, 3/4, 5/6
    for (name, a), (_, b) in zip(plain.state_dict().items(), watched.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    logged = [r for r in caplog.records if "FailingSink()" in r.getMessage()]
    assert len(logged) == 3 and all(r.exc_info and r.exc_info[1] in sink.raised for r in logged)


@pytest.mark.parametrize("surfaces_at", ["next forward", "flush", "remove", "with-block"])
def test_strict_raises_the_sinks_error_after_the_step_never_inside_backward(surfaces_at: str) -> None:
    torch.manual_seed(0)
    model = Breakable()
    plain = copy.deepcopy(model)
    sink = FailingSink()
    watcher = layerprof.watch(model, every=1, target=None, sink=sink, strict=True)
    try:
        for x, y in itertools.islice(batches(), 2):  # counted, then timed: the sink raises inside the
            F.cross_entropy(model(x), y).backward()  # second backward, and must not surface there
        for x, y in itertools.islice(batches(), 2):
            F.cross_entropy(plain(x), y).backward()
        assert sink.calls == 1
        assert all(torch.equal(a, b) for a, b in zip(_grads(model), _grads(plain), strict=True))
        with pytest.raises(SinkFailure) as caught:
            if surfaces_at == "next forward":
                model(x)
            elif surfaces_at == "flush":
                watcher.flush()
            elif surfaces_at == "remove":
                watcher.remove()
            else:
                with watcher:
                    pass
        assert caught.value is sink.raised[0]
        model(x)  # raised once; the model goes on
        watcher.remove()
        assert hooks_on(model) == 0 and not watcher.attached
    finally:
        with contextlib.suppress(Exception):  # nothing left on the dispatch-mode stack for later tests
            watcher.remove()


def test_strict_does_not_hide_the_exception_that_ends_a_with_block() -> None:
    model = Breakable()
    sink = FailingSink()
    data = batches()
    with pytest.raises(KeyError), layerprof.watch(model, every=1, target=None, sink=sink, strict=True):
        for _ in range(2):
            x, y = next(data)
            F.cross_entropy(model(x), y).backward()
        raise KeyError("the user's own error")
    assert sink.calls == 1 and hooks_on(model) == 0


def test_strict_must_be_a_bool() -> None:
    with pytest.raises(InvalidArgumentError, match="strict"):
        layerprof.watch(Breakable(), target=None, strict="yes")  # type: ignore[arg-type]
