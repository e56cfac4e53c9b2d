"""layerprof.watch: sampling, hooks, training left untouched, memory, real models, modes and sinks."""

from __future__ import annotations

import builtins
import copy
import gc
import json
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

import layerprof
from conftest import hooks_on
from layerprof.api.watcher import Watcher
from layerprof.errors import InvalidArgumentError, InvalidModelError
from layerprof.report.facade import Report


class Tiny(nn.Module):
    """conv -> batch norm -> in-place ReLU -> pool -> linear: 5 classes from 3x8x8 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.relu(self.bn(self.conv(x)))), 1))  # type: ignore[no-any-return]


def batches(
    seed: int = 0, shape: tuple[int, ...] = (4, 3, 8, 8), classes: int = 5
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield (
            torch.randn(shape, generator=generator),
            torch.randint(0, classes, (shape[0],), generator=generator),
        )


def train(model: nn.Module, optimizer_steps: int, *, accumulate: int = 1, seed: int = 0) -> None:
    """Seeded SGD with momentum; ``accumulate`` forwards and backwards per optimizer step."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = batches(seed)
    for _ in range(optimizer_steps):
        for _ in range(accumulate):
            x, y = next(data)
            (F.cross_entropy(model(x), y) / accumulate).backward()
        optimizer.step()
        optimizer.zero_grad()


def collect(model: nn.Module, every: int, **kwargs: object) -> tuple[Watcher, list[Report]]:
    reports: list[Report] = []
    watcher = layerprof.watch(model, every=every, target=None, sink=reports.append, **kwargs)  # type: ignore[arg-type]
    return watcher, reports


def backward_rows_all_timed(report: Report) -> None:
    assert report.backward, "no backward rows"
    untimed = [r.name for r in report.backward if r.flops and r.time_ms is None]
    assert not untimed, untimed
    assert all(r.time_ms is not None for r in report.forward)
    assert " ms step" in report.table()  # the coverage footer speaks of the step, not the forward


# -- training is untouched ---------------------------------------------------------------------------
@pytest.mark.parametrize("accumulate", [1, 3], ids=["plain", "accumulate-3"])
def test_training_is_bit_identical_with_and_without_watch(accumulate: int) -> None:
    torch.manual_seed(0)
    plain = Tiny()
    watched = copy.deepcopy(plain)
    train(plain, 6, accumulate=accumulate)
    watcher, reports = collect(watched, every=2)
    with watcher:
        train(watched, 6, accumulate=accumulate)
    assert len(reports) >= 2
    for (name, a), (_, b) in zip(plain.state_dict().items(), watched.state_dict().items(), strict=True):
        assert torch.equal(a, b), name  # weights, momentum-updated, and BN running statistics


def test_the_counter_is_off_during_the_timed_step() -> None:
    """The counting step runs under the dispatch mode; the timed forward and backward never do."""
    model = Tiny()
    seen: list[tuple[str, int]] = []
    model.fc.register_forward_hook(
        lambda *_: seen.append(("forward", len(_get_current_dispatch_mode_stack())))
    )
    watcher, reports = collect(model, every=1)
    with watcher:
        for x, y in [next(batches(s)) for s in range(2)]:
            output = model(x)
            output.register_hook(
                lambda grad: seen.append(("backward", len(_get_current_dispatch_mode_stack())))
            )
            F.cross_entropy(output, y).backward()
    assert len(reports) == 1
    assert seen == [("forward", 1), ("backward", 1), ("forward", 0), ("backward", 0)]
    assert not _get_current_dispatch_mode_stack()


# -- hooks -------------------------------------------------------------------------------------------
def test_one_root_pre_hook_between_samples_and_none_after_remove() -> None:
    model = Tiny()
    before = hooks_on(model)
    watcher, reports = collect(model, every=3)
    assert hooks_on(model) == before + 1 and len(model._forward_pre_hooks) == 1
    train(model, 2)  # steps 0 counted (the first step is always sampled), 1 timed
    assert len(reports) == 1 and not watcher.in_flight
    assert hooks_on(model) == before + 1
    train(model, 1)  # step 2: not sampled
    assert hooks_on(model) == before + 1 and not watcher.in_flight
    train(model, 2)  # 3 counted, 4 timed
    assert len(reports) == 2 and not watcher.in_flight
    assert [r.step for r in reports] == [0, 3]
    assert hooks_on(model) == before + 1
    watcher.remove()
    assert hooks_on(model) == before
    train(model, 3)
    assert len(reports) == 2 and watcher.forwards == 5


@pytest.mark.parametrize("stop_after", ["counted forward", "timed forward", "counted step"])
def test_remove_mid_sample_takes_everything_off(stop_after: str) -> None:
    model = Tiny()
    data = batches()
    watcher, reports = collect(model, every=1)
    x, y = next(data)
    loss = F.cross_entropy(model(x), y)  # counted forward
    if stop_after != "counted forward":
        loss.backward()
        x, y = next(data)
        loss = F.cross_entropy(model(x), y)  # timed forward
        if stop_after == "counted step":
            loss.backward()
            x, y = next(data)
            loss = F.cross_entropy(model(x), y)  # emitted, then counted again
    assert watcher.in_flight
    watcher.remove()
    assert not watcher.in_flight and hooks_on(model) == 0
    assert not _get_current_dispatch_mode_stack()
    loss.backward()  # the graph the sample had hooked still runs
    train(model, 2)
    assert len(reports) == (1 if stop_after == "counted step" else 0)


def test_watcher_is_a_context_manager() -> None:
    model = Tiny()
    with layerprof.watch(model, every=1, target=None, sink=lambda report: None) as watcher:
        assert isinstance(watcher, Watcher) and watcher.attached
        model(next(batches())[0])
    assert not watcher.attached and hooks_on(model) == 0
    assert not _get_current_dispatch_mode_stack()


# -- memory --------------------------------------------------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs /proc (Linux)")
def test_a_thousand_steps_keep_memory_flat() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 32), torch.randint(0, 10, (8,))
    watcher = layerprof.watch(model, every=10, target=None, sink=lambda report: None)

    def steps(n: int) -> None:
        for _ in range(n):
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()

    with watcher:
        steps(200)
        gc.collect()
        rss_before = _rss_bytes()
        steps(800)
        gc.collect()
        rss_after = _rss_bytes()
    assert watcher.samples == 1000 // 10  # 0, 10, ..., 990 counted and the next ones timed
    assert rss_after - rss_before < 4 * 2**20, (rss_before, rss_after)  # 4 MiB slack for the allocator


def test_no_tensor_outlives_its_sample() -> None:
    model = Tiny()
    alive: list[weakref.ref[torch.Tensor]] = []
    model.bn.register_forward_hook(lambda _m, _a, out: alive.append(weakref.ref(out)))
    watcher, reports = collect(model, every=1)
    with watcher:
        data = batches()
        for _ in range(2):  # counted, then timed
            x, y = next(data)
            output = model(x)
            loss = F.cross_entropy(output, y)
            alive += [weakref.ref(x), weakref.ref(output), weakref.ref(loss)]
            loss.backward()
            del x, y, output, loss
        gc.collect()
        assert len(reports) == 1 and not watcher.in_flight
        assert [ref() for ref in alive] == [None] * len(alive)
        for param in model.parameters():  # the watcher keeps no gradient either
            param.grad = None
        assert watcher._sample is None


# -- modes ---------------------------------------------------------------------------------------------
def test_gradient_accumulation_samples_each_forward_and_backward() -> None:
    model = Tiny()
    watcher, reports = collect(model, every=3)
    with watcher:
        train(model, 3, accumulate=4)  # 12 forwards (steps 0-11): 0 counted / 1 timed, 3 / 4, 6 / 7, 9 / 10
    assert [r.row("conv").calls for r in reports] == [1, 1, 1, 1]
    assert watcher.samples == 4 and [r.step for r in reports] == [0, 3, 6, 9]
    for report in reports:
        backward_rows_all_timed(report)
    # Step 3 is the fourth micro-batch: its gradients accumulate into .grad, one add per element.
    conv = reports[1].row("conv", "backward")
    assert conv.flops - conv.matrix_flops == 4 * 3 * 3 * 3  # conv.weight: 108 adds
    bn = reports[1].row("bn", "backward")
    assert bn.flops == 9 * 4 * 4 * 8 * 8 + 4 + 4  # 9 per input element, + weight and bias grads


def test_a_sampled_eval_step_has_no_backward_rows() -> None:
    model = Tiny()
    data = batches()
    hooks_seen: list[int] = []  # the hooks on the model while its fc layer runs, this probe included
    model.fc.register_forward_hook(lambda *_: hooks_seen.append(hooks_on(model)))
    watcher, reports = collect(model, every=2)

    def train_step() -> None:
        x, y = next(data)
        F.cross_entropy(model(x), y).backward()

    def eval_step() -> None:
        with torch.no_grad():
            model(next(data)[0])

    with watcher:
        train_step()  # 0: counted
        train_step()  # 1: timed
        eval_step()  # 2: counted, an eval step
        train_step()  # 3: another kind, let through without the timing hooks
        eval_step()  # 4: timed
        assert len(reports) == 2
        train_step()  # 5
        train_step()  # 6: counted
        train_step()  # 7: timed
    # step 5: the probe and the root pre-hook; step 3: those and the hook that re-arms the timer
    assert hooks_seen[5] == 2 and hooks_seen[3] == 3
    first, evaluated, trained = reports
    assert [r.step for r in reports] == [0, 2, 6]
    backward_rows_all_timed(first)
    assert not evaluated.backward and all(r.time_ms is not None for r in evaluated.forward)
    backward_rows_all_timed(trained)


def test_train_and_eval_switches_and_validation_without_backward() -> None:
    model = Tiny()
    data = batches()
    x_seen: list[torch.Tensor] = []
    watcher, reports = collect(model, every=3)

    def step(training: bool, backward: bool) -> None:
        model.train(training)
        x, y = next(data)
        x_seen.append(x)
        loss = F.cross_entropy(model(x), y)
        if backward:
            loss.backward()

    with watcher:
        step(True, True)  # 0: counted
        step(True, True)  # 1: timed
        step(True, True)  # 2
        step(False, False)  # 3: counted, eval mode with grad enabled, no backward comes
        step(True, True)  # 4: another kind: let through
        step(False, False)  # 5: timed; over when the next forward starts
        step(True, True)  # 6: emits 3/5, then counted
        step(True, True)  # 7: timed
    _, validation, training = reports
    assert validation.step == 3 and training.step == 6
    assert not validation.backward and validation.row("bn").time_ms is not None
    backward_rows_all_timed(training)
    # Each report counts the mode it sampled: the same counts as analyze() in that mode.
    model.eval()
    expected_eval = layerprof.analyze(model, x_seen[0])
    model.train()
    expected_train = layerprof.analyze(model, x_seen[0])
    assert [r.flops for r in validation.forward] == [r.flops for r in expected_eval.layers]
    assert [r.flops for r in training.forward] == [r.flops for r in expected_train.layers]
    assert validation.row("bn").flops != training.row("bn").flops  # batch statistics cost more


def test_autocast_bf16_rows_are_priced_in_bf16() -> None:
    model = Tiny()
    data = batches()
    watcher, reports = collect(model, every=1)
    with watcher:
        for _ in range(2):
            x, y = next(data)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
    (report,) = reports
    assert report.row("conv").dtype == "bfloat16"  # not the float32 of the weight cast before it
    assert report.row("conv", "backward").dtype == "bfloat16"
    assert report.row("fc").dtype == "bfloat16"
    backward_rows_all_timed(report)


def test_autocast_steps_are_not_timed_against_float32_counts() -> None:
    model = Tiny()
    data = batches()
    watcher, reports = collect(model, every=1)
    with watcher:
        x, y = next(data)
        F.cross_entropy(model(x), y).backward()  # counted in float32
        with torch.autocast("cpu", dtype=torch.bfloat16):  # another kind: let through
            F.cross_entropy(model(next(data)[0]), y).backward()
        F.cross_entropy(model(x), y).backward()  # timed
    (report,) = reports
    assert report.row("conv").dtype == "float32"


class Wrapper(nn.Module):
    """A stem before and a head after the watched model, added after the watcher was attached."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 1)
        self.inner = inner
        self.head = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.inner(self.stem(x))))  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "wrap", [lambda m: nn.Sequential(m, nn.Linear(5, 5)), Wrapper], ids=["sequential", "stem-and-head"]
)
def test_model_wrapped_after_the_watcher_was_attached(wrap: Callable[[nn.Module], nn.Module]) -> None:
    model = Tiny()
    watcher, reports = collect(model, every=2)
    wrapped = wrap(model)
    with watcher:
        train(wrapped, 5)  # steps 0 counted, 1 timed; 2 counted, 3 timed; 4 counted, never timed
    assert len(reports) == 2
    report = reports[0]
    # the model's rows only: not the wrapper's stem or head, not the loss
    assert {r.name for r in report.layers} == {"conv", "bn", "relu", "pool", "fc"}
    backward_rows_all_timed(report)
    ratio = report.row("conv", "backward").matrix_flops / report.row("conv").matrix_flops
    # with a stem the model's input needs a gradient: the first conv computes both gradients
    assert ratio == (2.0 if isinstance(wrapped, Wrapper) else 1.0)


@pytest.mark.parametrize(
    ("factory", "activation"),
    [
        (lambda: torchvision.models.resnet50(num_classes=10), "ReLU"),
        (lambda: torchvision.models.mobilenet_v3_small(num_classes=10), "Hardswish"),
    ],
    ids=["resnet50-inplace-relu", "mobilenet_v3-inplace-hardswish"],
)
def test_models_whose_inplace_activations_break_module_backward_hooks(
    factory: Callable[[], nn.Module], activation: str
) -> None:
    torch.manual_seed(0)
    model = factory()
    inplace = [m for m in model.modules() if type(m).__name__ == activation]
    assert inplace and all(getattr(m, "inplace", False) for m in inplace)
    watcher, reports = collect(model, every=1)
    data = batches(shape=(2, 3, 64, 64), classes=10)
    with watcher:
        for _ in range(2):
            x, y = next(data)
            F.cross_entropy(model(x), y).backward()
    (report,) = reports
    backward_rows_all_timed(report)
    assert any(r.kind == activation for r in report.backward)
    forward = sum(r.matrix_flops for r in report.forward)
    backward = sum(r.matrix_flops for r in report.backward)
    assert 1.8 * forward < backward <= 2 * forward  # 2x, less the first conv's input gradient
    assert report.coverage is not None and report.total.time_ms is not None


def test_a_backward_ending_on_another_thread_is_emitted_on_the_training_thread() -> None:
    """As a CUDA backward may end on a device thread: the report waits for flush() (or the next forward)."""
    model = Tiny()
    data = batches()
    watcher, reports = collect(model, every=1)
    with watcher:
        x, y = next(data)
        F.cross_entropy(model(x), y).backward()  # counted
        x, y = next(data)
        loss = F.cross_entropy(model(x), y)  # timed forward
        worker = threading.Thread(target=loss.backward)
        worker.start()
        worker.join()
        assert not reports and watcher.in_flight
        watcher.flush()
        assert len(reports) == 1 and not watcher.in_flight
    backward_rows_all_timed(reports[0])


class DataDependent(nn.Module):
    """Its forward makes other autograd nodes for inputs of negative mean."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y.relu() if x.mean() > 0 else y.sigmoid().tanh()


def test_a_forward_that_depends_on_its_data_gets_its_backward_untimed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = DataDependent()
    watcher, reports = collect(model, every=1)
    x = torch.rand(2, 3, 8, 8)
    with caplog.at_level(logging.INFO, logger="layerprof"), watcher:
        model(x).sum().backward()  # counted: conv, relu
        model(-x).sum().backward()  # timed: conv, sigmoid, tanh
    (report,) = reports
    assert report.backward and all(r.time_ms is None for r in report.backward)
    assert report.row("conv").time_ms is not None
    assert any("depends on its data" in r.getMessage() for r in caplog.records)


def test_backward_false_samples_forwards_only() -> None:
    model = Tiny()
    watcher, reports = collect(model, every=2, backward=False)
    with watcher:
        train(model, 3)
    (report,) = reports
    assert not report.backward and all(r.time_ms is not None for r in report.forward)


# -- sinks -----------------------------------------------------------------------------------------------
def two_steps(model: nn.Module) -> None:
    data = batches()
    for _ in range(2):
        x, y = next(data)
        F.cross_entropy(model(x), y).backward()


def test_print_sink_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    model = Tiny()
    with layerprof.watch(model, every=1, target="t4", sink=builtins.print):
        two_steps(model)
    out = capsys.readouterr().out
    assert out.count("layerprof: Tiny (4x3x8x8)") == 1
    assert "bwd/fwd" in out and "bound@t4" in out


def test_default_sink_logs_and_nothing_is_printed(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    model = Tiny()
    with (
        caplog.at_level(logging.INFO, logger="layerprof.api.watch"),
        layerprof.watch(model, every=1, target=None),
    ):
        two_steps(model)
    assert capsys.readouterr().out == ""
    logged = [
        r for r in caplog.records if r.name == "layerprof.api.watch" and "layerprof: Tiny" in r.getMessage()
    ]
    assert len(logged) == 1


def test_path_sink_appends_one_json_line_per_sample(tmp_path: Path) -> None:
    model = Tiny()
    path = tmp_path / "samples.jsonl"
    with layerprof.watch(model, every=2, target=None, sink=path):
        train(model, 8)  # steps 0/1, 2/3, 4/5, 6/7 sampled
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 2, 4, 6]
    assert {row["phase"] for row in lines[0]["layers"]} == {"forward", "backward"}
    assert lines[0]["model"] == "Tiny"


def test_callable_sink_gets_the_report() -> None:
    model = Tiny()
    got: list[object] = []
    with layerprof.watch(model, every=1, target=None, sink=got.append) as watcher:
        two_steps(model)
    assert got == [watcher.last_report] and isinstance(got[0], Report)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"every": 0}, "every"),
        ({"every": True}, "every"),
        ({"every": 2.5}, "every"),
        ({"sink": 42}, "sink"),
        ({"sink": "/no/such/dir/samples.jsonl"}, "/no/such/dir"),
        ({"backward": "yes"}, "backward"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(InvalidArgumentError, match=named):
        layerprof.watch(Tiny(), **{"target": None, **kwargs})  # type: ignore[arg-type]


def test_model_must_be_a_module() -> None:
    with pytest.raises(InvalidModelError):
        layerprof.watch(lambda x: x, target=None)  # type: ignore[arg-type]


def test_a_sampled_forward_that_raises_leaves_nothing_behind() -> None:
    from torch.utils._python_dispatch import _get_current_dispatch_mode_stack

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    watcher = layerprof.watch(model, every=1, target=None, sink=lambda report: None)
    try:
        with pytest.raises(RuntimeError):
            model(torch.randn(2, 5))  # the wrong width: the sampled (counted) forward raises
        # Right after the exception, before any other forward: only the watcher's root pre-hook.
        assert not _get_current_dispatch_mode_stack()
        assert hooks_on(model) == 1
        assert not watcher.in_flight
        model(torch.randn(2, 4)).sum().backward()  # and sampling goes on
    finally:
        watcher.remove()
    assert hooks_on(model) == 0


def test_forwards_on_another_thread_are_not_sampled() -> None:
    import threading

    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    watcher, _ = collect(model, every=1)
    try:
        model(torch.randn(2, 4)).sum().backward()  # this thread owns the samples
        other = threading.Thread(target=lambda: model(torch.randn(2, 4)))
        other.start()
        other.join()
        assert watcher.forwards == 1  # the other thread's forward passed untouched
    finally:
        watcher.remove()
    assert hooks_on(model) == 0
