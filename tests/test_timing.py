"""layerprof.timing: the layer hooks, nesting and self time, rows' shares, kernel attribution.

The arithmetic tests feed hand-written entry/exit records with hand-picked times, so every expected
value is worked out next to it; the hook tests run real (tiny) models but only check structure.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from types import MappingProxyType

import pytest
import torch
from torch import nn

from conftest import hooks_on
from layerprof import analyze, demo_model, get_device
from layerprof.core.records import LayerRow
from layerprof.errors import InvalidArgumentError
from layerprof.timing.kernels import RANGE_PREFIX, RangeHooks, attribute_kernels
from layerprof.timing.layers import LayerTimer, ModuleTimes, Timings, _fold, check_counts, measure
from layerprof.timing.rows import glue_shares, median_iqr, row_samples, timed_rows
from layerprof.walk.collect import ROOT_NAME
from layerprof.walk.twin import make_twin

# Module indices as named_modules() lists them for the records below: (root), a, b, b.c
ROOT, A, B, C = 0, 1, 2, 3


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(x) + 1  # type: ignore[no-any-return]  # the add is the glue row b/add


class Tree(nn.Module):
    """(root) -> a (leaf, called twice), b (container) -> b.c (leaf)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Tanh()
        self.b = Inner()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(self.a(x)))  # type: ignore[no-any-return]


class Broken(nn.Module):
    """``bad`` raises: it takes 3 features and gets 5."""

    def __init__(self) -> None:
        super().__init__()
        self.ok = nn.ReLU()
        self.bad = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bad(self.ok(x))  # type: ignore[no-any-return]


# -- folding records into per-forward times ---------------------------------------------------------
def test_fold_nesting_calls_and_self_time() -> None:
    codes = [ROOT, A, ~A, A, ~A, B, C, ~C, ~B, ~ROOT]
    times = [0.0, 1.0, 3.0, 3.5, 4.5, 5.0, 6.0, 9.0, 10.0, 12.0]
    (forward,) = _fold(codes, times, 4)
    assert forward.calls == [1, 2, 1, 1]
    assert forward.total[A] == pytest.approx((3.0 - 1.0) + (4.5 - 3.5))  # 2 + 1 = 3, both calls summed
    assert forward.total[B] == pytest.approx(10.0 - 5.0)  # 5
    assert forward.total[C] == pytest.approx(9.0 - 6.0)  # 3
    assert forward.total[ROOT] == pytest.approx(12.0)
    assert forward.self_time[B] == pytest.approx(5.0 - 3.0)  # b minus b.c = 2
    assert forward.self_time[ROOT] == pytest.approx(12.0 - 3.0 - 5.0)  # root minus a (both calls) and b = 4
    assert forward.self_time[C] == pytest.approx(3.0)  # a leaf's self time is its time


def test_fold_drops_a_forward_that_raised_and_calls_outside_the_root() -> None:
    raised = [ROOT, A, ~A, B]  # b raised: no exits follow
    complete = [ROOT, B, C, ~C, ~B, ~ROOT]
    alone = [C, ~C]  # b.c called on its own after the forward
    codes = [*raised, *complete, *alone]
    times = [0.0, 1.0, 2.0, 3.0, 20.0, 21.0, 22.0, 23.5, 25.0, 30.0, 40.0, 41.0]
    (forward,) = _fold(codes, times, 4)
    assert forward.calls == [1, 0, 1, 1]
    assert forward.total[ROOT] == pytest.approx(30.0 - 20.0)
    assert forward.total[B] == pytest.approx(25.0 - 21.0)
    assert forward.total[C] == pytest.approx(23.5 - 22.0)


def test_fold_module_that_raised_inside_a_caller_that_caught_it() -> None:
    # b.c entered and never left (it raised, b caught it): b.c gets no time, b keeps all of its own.
    codes = [ROOT, B, C, ~B, ~ROOT]
    times = [0.0, 1.0, 2.0, 6.0, 7.0]
    (forward,) = _fold(codes, times, 4)
    assert forward.calls[C] == 0
    assert forward.total[B] == pytest.approx(6.0 - 1.0)
    assert forward.self_time[B] == pytest.approx(5.0)
    assert forward.self_time[ROOT] == pytest.approx(7.0 - 5.0)


# -- the hooks on a real model ----------------------------------------------------------------------
def test_timer_hooks_count_calls_and_are_removed() -> None:
    model = Tree()
    timer = LayerTimer(model, root_name=ROOT_NAME)
    assert timer.names == (ROOT_NAME, "a", "b", "b.c")
    x = torch.randn(4, 4)
    with timer:
        assert hooks_on(model) == 2 * 4  # one pre-hook and one hook per module
        for _ in range(3):
            model(x)
        model.b(x)  # a call outside a forward of the root is not a sample
    assert hooks_on(model) == 0
    timer.flush()
    timings = timer.timings()
    assert timings.forwards == 3
    assert timings.modules["a"].calls == 2
    assert timings.modules["b.c"].calls == 1
    for module in timings.modules.values():
        assert len(module.total_ms) == 3
        assert all(t >= 0 for t in module.total_ms)
        assert all(0 <= s <= t for s, t in zip(module.self_ms, module.total_ms, strict=True))
    root = timings.modules[ROOT_NAME]
    for i in range(3):
        inside = timings.modules["a"].total_ms[i] + timings.modules["b"].total_ms[i]
        assert root.self_ms[i] == pytest.approx(root.total_ms[i] - inside)


def test_timer_removes_its_hooks_when_the_forward_raises() -> None:
    model = Broken()
    timer = LayerTimer(model)
    with pytest.raises(RuntimeError), timer:
        model(torch.randn(2, 5))
    assert hooks_on(model) == 0
    assert timer.running_layer() == "bad"
    timer.flush()
    assert timer.timings().forwards == 0


def test_measure_interleaves_plain_and_hooked_forwards() -> None:
    model = Tree()
    hooked, plain = make_twin(model, to_meta=False), make_twin(model, to_meta=False)
    timer = LayerTimer(hooked)
    x = torch.randn(4, 4)
    with torch.no_grad(), timer:
        result = measure(lambda: hooked(x), lambda: plain(x), timer, warmup=2, repeat=3)
    assert result.timings.forwards == 3  # the 2 warm-up forwards are discarded
    assert len(result.end_to_end_ms) == 3
    assert all(t > 0 for t in result.end_to_end_ms)
    assert hooks_on(plain) == 0 and hooks_on(model) == 0


@pytest.mark.parametrize(
    ("warmup", "repeat", "named"),
    [(5, 0, "repeat"), (5, -3, "repeat"), (-1, 20, "warmup"), (5, 2.5, "repeat"), (True, 2, "warmup")],
)
def test_check_counts_names_the_bad_value(warmup: object, repeat: object, named: str) -> None:
    with pytest.raises(InvalidArgumentError, match=named):
        check_counts(warmup, repeat)


# -- statistics and shares --------------------------------------------------------------------------
def test_median_iqr() -> None:
    # inclusive quartiles of 1..5: q1 = 2, q3 = 4 -> IQR 2
    median, iqr = median_iqr([5.0, 1.0, 3.0, 2.0, 4.0])
    assert median == pytest.approx(3.0)
    assert iqr == pytest.approx(4.0 - 2.0)
    # 1, 2, 3, 10: q1 = 1 + 0.75 * (2 - 1) = 1.75, q3 = 3 + 0.25 * (10 - 3) = 4.75
    median, iqr = median_iqr([10.0, 1.0, 2.0, 3.0])
    assert median == pytest.approx((2.0 + 3.0) / 2)
    assert iqr == pytest.approx(4.75 - 1.75)
    assert median_iqr([7.0]) == (7.0, 0.0)
    with pytest.raises(InvalidArgumentError):
        median_iqr([])


def glue(name: str, *, flops: int = 0, bytes_read: int = 0, bytes_written: int = 0) -> LayerRow:
    return LayerRow(
        name=name,
        kind=name.rsplit("/", 1)[1],
        flops=flops,
        bytes_read=bytes_read,
        bytes_written=bytes_written,
    )


def test_glue_shares_follow_roofline_time_on_the_first_target() -> None:
    gtx1080 = get_device("gtx1080")
    # Memory-bound on gtx1080 (no FLOPs): roofline time = bytes / 320e9, so shares follow bytes 3:1.
    add = glue("b/add", bytes_read=2000, bytes_written=1000)
    cat = glue("b/cat", bytes_read=500, bytes_written=500)
    assert glue_shares([add, cat], [gtx1080]) == [pytest.approx(3000 / 4000), pytest.approx(1000 / 4000)]
    # Compute-heavy row: 8.8e6 FLOPs take 8.8e6 / 8.8e12 s = 1e-6 s, 1000 bytes take 1000 / 320e9 s.
    heavy = glue("b/mm", flops=8_800_000, bytes_read=1000)
    light = glue("b/add", bytes_read=320_000)  # 320_000 / 320e9 = 1e-6 s
    assert glue_shares([heavy, light], [gtx1080]) == [pytest.approx(0.5), pytest.approx(0.5)]


def test_glue_shares_without_target_follow_bytes_and_split_nothing_equally() -> None:
    add = glue("b/add", bytes_read=300)
    cat = glue("b/cat", bytes_written=100)
    assert glue_shares([add, cat], []) == [pytest.approx(0.75), pytest.approx(0.25)]
    assert glue_shares([glue("b/x"), glue("b/y")], []) == [0.5, 0.5]
    assert glue_shares([add], []) == [1.0]


def timings_of(modules: dict[str, tuple[tuple[float, ...], tuple[float, ...]]]) -> Timings:
    """Timings from name -> (total per forward, self per forward)."""
    return Timings(
        forwards=len(next(iter(modules.values()))[0]),
        modules=MappingProxyType(
            {name: ModuleTimes(name, 1, total, own) for name, (total, own) in modules.items()}
        ),
    )


def test_rows_get_module_time_and_glue_rows_share_self_time() -> None:
    timings = timings_of(
        {"b": ((10.0, 20.0, 30.0), (4.0, 8.0, 12.0)), "b.c": ((6.0, 12.0, 18.0), (6.0, 12.0, 18.0))}
    )
    rows = [
        LayerRow(name="b.c", kind="ReLU"),
        glue("b/add", bytes_read=300),
        glue("b/cat", bytes_written=100),
        LayerRow(name="never", kind="ReLU"),
    ]
    samples = row_samples(rows, timings, [])
    assert samples["b.c"] == (6.0, 12.0, 18.0)
    assert samples["b/add"] == pytest.approx((0.75 * 4.0, 0.75 * 8.0, 0.75 * 12.0))
    assert samples["b/cat"] == pytest.approx((0.25 * 4.0, 0.25 * 8.0, 0.25 * 12.0))
    assert "never" not in samples

    timed = {row.name: row for row in timed_rows(rows, timings, [])}
    assert timed["b.c"].time_ms == pytest.approx(12.0)
    assert timed["b.c"].time_iqr_ms == pytest.approx(15.0 - 9.0)  # quartiles of 6, 12, 18
    assert timed["b/add"].time_ms == pytest.approx(0.75 * 8.0)
    assert timed["b/cat"].time_ms == pytest.approx(0.25 * 8.0)
    assert timed["never"].time_ms is None
    # The glue rows add up to the container's median self time: the sums are kept.
    assert sum(timed[name].time_ms or 0.0 for name in ("b/add", "b/cat")) == pytest.approx(8.0)


def test_sums_on_a_real_model_equal_leaf_times_plus_container_self_times() -> None:
    model = demo_model()
    rows = list(analyze(model, input_size=(1, 3, 64, 64)).layers)
    twin = make_twin(model, to_meta=False)
    timer = LayerTimer(twin, root_name=ROOT_NAME)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad(), timer:
        for _ in range(5):
            twin(x)
    timer.flush()
    timings = timer.timings()
    timed = timed_rows(rows, timings, [get_device("gtx1080")])
    assert all(row.time_ms is not None and row.time_ms >= 0 for row in timed)

    leaves = [r.name for r in rows if "/" not in r.name]
    containers = {r.name.rsplit("/", 1)[0] for r in rows if "/" in r.name}
    assert containers == {"res", ROOT_NAME}  # out += identity in res, interpolate and cat in the root
    by_name = {r.name: r for r in timed}
    assert by_name["res/add"].time_ms == pytest.approx(statistics.median(timings.modules["res"].self_ms))
    expected = sum(statistics.median(timings.modules[n].total_ms) for n in leaves) + sum(
        statistics.median(timings.modules[c].self_ms) for c in containers
    )
    assert sum(r.time_ms for r in timed if r.time_ms is not None) == pytest.approx(expected)


# -- kernel attribution (fake profiler events) ------------------------------------------------------
@dataclass
class FakeKernel:
    duration: float  # microseconds
    name: str = "kernel"


@dataclass
class FakeEvent:
    name: str
    cpu_parent: FakeEvent | None = None
    kernels: list[FakeKernel] = field(default_factory=list)


def test_attribute_kernels_to_the_innermost_range() -> None:
    root = FakeEvent(RANGE_PREFIX + ROOT_NAME)
    block = FakeEvent(RANGE_PREFIX + "b", root)
    conv_range = FakeEvent(RANGE_PREFIX + "b.c", block)
    conv = FakeEvent("aten::convolution", conv_range)
    add = FakeEvent("aten::add_", block)
    cat = FakeEvent("aten::cat", block)
    events = [
        root,
        block,
        conv_range,
        conv,
        FakeEvent("cudaLaunchKernel", conv, [FakeKernel(20.0), FakeKernel(4.0)]),
        add,
        FakeEvent("cudaLaunchKernel", add, [FakeKernel(10.0)]),
        cat,
        FakeEvent("cudaLaunchKernel", cat, [FakeKernel(8.0)]),  # no row b/cat: shared by b's glue rows
        FakeEvent(RANGE_PREFIX + "b", None, [FakeKernel(999.0)]),  # a range's device copy: skipped
        FakeEvent("aten::add_", add, [FakeKernel(777.0, RANGE_PREFIX + "b")]),  # the same, elsewhere
        FakeEvent("cudaMemcpyAsync", None, [FakeKernel(50.0)]),  # outside every range: not a row's
    ]
    rows = [
        LayerRow(name="b.c", kind="ReLU"),
        glue("b/add", bytes_read=300),
        glue("b/mul", bytes_read=100),
        LayerRow(name="fc", kind="Linear"),
    ]
    kernels = attribute_kernels(events, rows, [])
    assert kernels["b.c"] == pytest.approx((20.0 + 4.0) / 1e3)
    assert kernels["b/add"] == pytest.approx((10.0 + 0.75 * 8.0) / 1e3)  # its own + 300 / 400 of cat's
    assert kernels["b/mul"] == pytest.approx(0.25 * 8.0 / 1e3)
    assert kernels["fc"] == 0.0


def test_range_hooks_nest_under_the_cpu_profiler() -> None:
    model = demo_model()
    ranges = RangeHooks(model, root_name=ROOT_NAME)
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        ranges.attach()
        try:
            model(torch.randn(1, 3, 32, 32))
        finally:
            ranges.close()
    assert hooks_on(model) == 0

    def innermost_range(event: object) -> str | None:
        parent = getattr(event, "cpu_parent", None)
        while parent is not None:
            if parent.name.startswith(RANGE_PREFIX):
                return str(parent.name).removeprefix(RANGE_PREFIX)
            parent = parent.cpu_parent
        return None

    owners = {(e.name, innermost_range(e)) for e in prof.events()}
    assert ("aten::add_", "res") in owners  # out += identity runs in the block's own forward
    assert ("aten::cat", ROOT_NAME) in owners
    assert ("aten::convolution", "stem.0") in owners


def test_range_hooks_close_open_ranges_after_a_failed_forward() -> None:
    model = Broken()
    ranges = RangeHooks(model)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        ranges.attach()
        with pytest.raises(RuntimeError):
            model(torch.randn(2, 5))
        ranges.close()
    assert hooks_on(model) == 0
