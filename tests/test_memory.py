"""Memory footprint on meta: closed forms on tiny models, the CUDA rounding, max_batch, budgets, bad input.

Every expected value is written as the arithmetic of the tensors alive at the peak, float32 = 4 bytes.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from tests.models import Single, op_model
from torch import nn

import layerprof
from layerprof.errors import InvalidArgumentError
from layerprof.walk.memory import cuda_block

GiB = 2**30
T4 = dataclasses.replace(layerprof.get_device("t4"), memory_bytes=16 * GiB)
XEON = dataclasses.replace(layerprof.get_device("xeon-e5345"), memory_bytes=8 * GiB)


def _linear(features: int = 1000) -> nn.Module:
    return Single(nn.Linear(features, features, bias=False))


def _cpu(capacity: int) -> layerprof.DeviceSpec:
    # no caches: a capacity this small cannot hold the table's LLC (a cache is below its memory)
    return dataclasses.replace(XEON, memory_bytes=capacity, cache_levels=())


def _gpu(capacity: int) -> layerprof.DeviceSpec:
    return dataclasses.replace(T4, memory_bytes=capacity, cache_levels=())


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_linear_inference_peak_is_weight_input_and_output(batch: int) -> None:
    report = layerprof.analyze(_linear().eval(), input_size=(batch, 1000), target=XEON)
    memory = report.memory
    assert memory is not None
    # weight 1000 * 1000 * 4, input and output batch * 1000 * 4 each
    assert memory.peak_bytes == 1000 * 1000 * 4 + 2 * batch * 1000 * 4
    assert (memory.parameters, memory.inputs, memory.activations) == (4_000_000, 4000 * batch, 4000 * batch)
    assert memory.peak_phase == "forward" and set(memory.phases) == {"forward"}
    assert report.row("layer").activation_bytes == batch * 1000 * 4  # its output, alive when it returns
    assert memory.capacity_bytes == 8 * GiB and memory.fits()


def test_views_cost_nothing_and_temporaries_are_gone_when_the_row_returns() -> None:
    # view, unsqueeze, transpose share the input's storage: nothing is allocated
    views = layerprof.analyze(op_model(lambda x: x.view(-1).unsqueeze(0).t()), input_size=(4, 8))
    assert views.memory is not None
    assert views.memory.peak_bytes == 4 * 8 * 4 and views.memory.activations == 0
    assert views.row("layer").activation_bytes == 0
    # x * 2 is alive while + 1 runs (peak: input, the product, the sum), freed when the row returns
    temps = layerprof.analyze(op_model(lambda x: x * 2 + 1), input_size=(4, 8))
    assert temps.memory is not None
    assert temps.memory.peak_bytes == 3 * 4 * 8 * 4
    assert temps.row("layer").activation_bytes == 4 * 8 * 4


def test_in_place_ops_allocate_nothing() -> None:
    report = layerprof.analyze(nn.Sequential(nn.Linear(8, 8), nn.ReLU(inplace=True)), input_size=(2, 8))
    assert report.row("1").activation_bytes == 0
    assert report.row("0").activation_bytes == 2 * 8 * 4


def test_cuda_targets_round_every_allocation_to_512_bytes() -> None:
    model = Single(nn.Linear(3, 5))
    report = layerprof.analyze(model.eval(), input_size=(1, 3), target=[T4, XEON])
    exact = report.memory_by_target[XEON.name]
    rounded = report.memory_by_target[T4.name]
    # weight 15 * 4 = 60, bias 5 * 4 = 20, input 3 * 4 = 12, output 5 * 4 = 20
    assert exact.peak_bytes == 60 + 20 + 12 + 20 and exact.allocator == "exact"
    assert rounded.peak_bytes == 4 * 512 and rounded.allocator == "cuda"  # each a block of 512
    assert report.memory == rounded  # the first target's
    assert [cuda_block(n) for n in (0, 1, 512, 513, 4_000_000)] == [0, 512, 512, 1024, 7813 * 512]


def test_training_step_with_sgd_momentum_by_hand() -> None:
    batch = 3
    report = layerprof.analyze(
        _linear().train(), input_size=(batch, 1000), target=XEON, backward=True, optimizer="sgd-momentum"
    )
    memory = report.memory
    assert memory is not None and set(memory.phases) == {"forward", "backward", "optimizer_step"}
    step = memory.phases["optimizer_step"]
    # at the step: weight, its gradient and its momentum buffer (1000 * 1000 * 4 each), the input
    assert (step.parameters, step.gradients, step.optimizer_state) == (4_000_000,) * 3
    assert step.peak_bytes == 3 * 4_000_000 + batch * 1000 * 4 and step.temporary == 0
    assert memory.peak_phase == "optimizer_step" and memory.peak_bytes == step.peak_bytes
    forward = memory.phases["forward"]
    assert forward.peak_bytes == 4_000_000 + 2 * batch * 1000 * 4 and forward.gradients == 0


@pytest.mark.parametrize(
    ("optimizer", "state_copies"),
    [
        ("sgd", 0),
        ("adam", 2),
        ("adamw", 2),
        (lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9), 1),
        (lambda m: torch.optim.Adam(m.parameters(), amsgrad=True), 3),
        (lambda m: torch.optim.AdamW(m.parameters(), weight_decay=0.1), 2),
    ],
    ids=["sgd", "adam", "adamw", "SGD-momentum", "Adam-amsgrad", "AdamW"],
)
def test_optimizer_state_is_copies_of_the_parameters(optimizer: object, state_copies: int) -> None:
    model = _linear(64).train()
    given = optimizer(model) if callable(optimizer) else optimizer
    report = layerprof.analyze(model, input_size=(2, 64), target=XEON, backward=True, optimizer=given)
    assert report.memory is not None
    assert report.memory.phases["optimizer_step"].optimizer_state == state_copies * 64 * 64 * 4
    assert all(p.grad is None for p in model.parameters())  # the user's model never sees a gradient


def test_optimizer_param_groups_are_followed() -> None:
    model = nn.Sequential(nn.Linear(16, 16, bias=False), nn.Linear(16, 4, bias=False)).train()
    only_first = torch.optim.Adam([model[0].weight])  # the second layer is not optimized: no state for it
    report = layerprof.analyze(model, input_size=(2, 16), backward=True, optimizer=only_first)
    assert report.memory is not None
    assert report.memory.phases["optimizer_step"].optimizer_state == 2 * 16 * 16 * 4


def test_a_gpu_target_counts_the_foreach_step_and_its_temporaries() -> None:
    model = _linear(256).train()
    report = layerprof.analyze(model, input_size=(2, 256), target=[T4, XEON], backward=True, optimizer="adam")
    cuda = report.memory_by_target[T4.name].phases["optimizer_step"]
    cpu = report.memory_by_target[XEON.name].phases["optimizer_step"]
    assert cuda.optimizer_state == cpu.optimizer_state == 2 * 256 * 256 * 4
    assert cuda.temporary >= 256 * 256 * 4  # foreach: one whole copy of the parameters at least


def test_backward_peak_counts_gradients() -> None:
    model = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32)).train()
    report = layerprof.analyze(model, input_size=(4, 32), backward=True)
    assert report.memory is not None
    backward = report.memory.phases["backward"]
    params = sum(p.numel() for p in model.parameters()) * 4
    assert backward.parameters == params and 0 < backward.gradients <= params
    assert report.memory.optimizer_state == 0


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("rmsprop", "unknown optimizer 'rmsprop'"),
        (42, "got int: 42"),
        (nn.Linear(2, 2), "got Linear"),
    ],
)
def test_bad_optimizers_are_named(bad: object, needle: str) -> None:
    with pytest.raises(InvalidArgumentError, match=needle):
        layerprof.analyze(_linear(8).train(), input_size=(2, 8), backward=True, optimizer=bad)


def test_an_optimizer_of_another_class_is_refused_by_name() -> None:
    model = _linear(8)
    with pytest.raises(InvalidArgumentError, match="got RMSprop"):
        layerprof.analyze(
            model, input_size=(2, 8), backward=True, optimizer=torch.optim.RMSprop(model.parameters())
        )


def test_an_optimizer_needs_backward() -> None:
    with pytest.raises(InvalidArgumentError, match="pass backward=True"):
        layerprof.analyze(_linear(8), input_size=(2, 8), optimizer="adam")


def test_a_target_without_memory_cannot_say_whether_it_fits() -> None:
    bare = dataclasses.replace(T4, name="bare-gpu", memory_bytes=None)
    report = layerprof.analyze(_linear(8), input_size=(2, 8), target=bare)
    assert report.memory is not None
    with pytest.raises(InvalidArgumentError, match="target 'bare-gpu' has no memory capacity"):
        report.memory.fits()
    with pytest.raises(InvalidArgumentError, match="target 'bare-gpu' has no memory capacity"):
        layerprof.max_batch(_linear(8), (1, 8), bare)


def _linear_peak_exact(batch: int) -> int:
    return 1000 * 1000 * 4 + 2 * batch * 1000 * 4  # weight, input, output


def _linear_peak_cuda(batch: int) -> int:
    return cuda_block(1000 * 1000 * 4) + 2 * cuda_block(batch * 1000 * 4)


@pytest.mark.parametrize("batch", [1, 37, 1000])
def test_max_batch_by_hand(batch: int) -> None:
    model = _linear().eval()
    # a capacity just above the peak at ``batch``: that batch fits, the next does not
    exact_capacity = _linear_peak_exact(batch) + 7999
    assert layerprof.max_batch(model, (1, 1000), _cpu(exact_capacity)) == batch
    cuda_capacity = _linear_peak_cuda(batch)
    assert _linear_peak_cuda(batch + 1) > cuda_capacity
    assert layerprof.max_batch(model, (1, 1000), _gpu(cuda_capacity)) == batch


def test_max_batch_is_zero_when_nothing_fits_and_counts_training() -> None:
    model = _linear().train()
    assert layerprof.max_batch(model, (1, 1000), _cpu(1000)) == 0
    # a training step with SGD momentum: 3 copies of the weight, then the input per sample
    capacity = 3 * 4_000_000 + 50 * 4000
    assert (
        layerprof.max_batch(model, (1, 1000), _cpu(capacity), backward=True, optimizer="sgd-momentum") == 50
    )


def test_max_batch_grows_with_the_capacity() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3)).eval()
    found = []
    for capacity in [2**k for k in range(14, 24)]:
        batch = layerprof.max_batch(model, (1, 3, 16, 16), _gpu(capacity))
        found.append(batch)
        if batch:
            report = layerprof.analyze(model, input_size=(batch, 3, 16, 16), target=_gpu(capacity))
            after = layerprof.analyze(model, input_size=(batch + 1, 3, 16, 16), target=_gpu(capacity))
            assert report.memory is not None and after.memory is not None
            assert report.memory.fits() and not after.memory.fits()
    assert found == sorted(found) and found[-1] > found[0]


@pytest.mark.parametrize("bad", [(), "1,3", [(1, 3), "x"], (0, 3)])
def test_max_batch_refuses_bad_sizes(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match="batch-first size"):
        layerprof.max_batch(_linear(8), bad, _cpu(GiB))  # type: ignore[arg-type]


def test_max_peak_memory_budget() -> None:
    report = layerprof.analyze(_linear().eval(), input_size=(2, 1000), target=[T4, XEON])
    results = layerprof.assert_within(report, max_peak_memory="4MiB")
    assert [r.target for r in results] == [T4.name, XEON.name]
    assert results[1].value == _linear_peak_exact(2) and results[1].limit == 4 * 2**20
    with pytest.raises(AssertionError, match="max_peak_memory @ t4"):
        layerprof.assert_within(report, max_peak_memory="3.9MB")
    assert layerprof.assert_within(report, max_peak_memory=_linear_peak_cuda(2), target=T4.name)
    with pytest.raises(InvalidArgumentError, match="unknown byte unit 'XB'"):
        layerprof.assert_within(report, max_peak_memory="6XB")


def test_budgets_read_sizes_in_every_unit() -> None:
    expected = {
        "2KiB": 2048,
        "2KB": 2000,
        "1.5MiB": 1.5 * 2**20,
        "3MB": 3e6,
        "6GiB": 6 * GiB,
        "1GB": 1e9,
        "512": 512,
    }
    for text, value in expected.items():
        assert layerprof.Budgets(max_peak_memory=text).max_peak_memory == value


def test_the_table_shows_activation_memory_and_the_peaks() -> None:
    report = layerprof.analyze(_linear().eval(), input_size=(2, 1000), target=T4)
    text = report.table()
    assert "act mem" in text.splitlines()[2]
    assert "memory peak 3.83 MiB of 16.00 GiB on t4 (forward)" in text
    assert math.isclose(_linear_peak_cuda(2) / 2**20, 3.83, abs_tol=0.005)
    data = report.to_dict()
    assert data["memory"]["peak_bytes"] == _linear_peak_cuda(2)
    assert data["layers"][0]["activation_bytes"] == 2 * 1000 * 4


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_profile_measures_the_cuda_peak_next_to_the_prediction() -> None:
    model = _linear().cuda().eval()
    report = layerprof.profile(model, torch.randn(64, 1000, device="cuda"), target=T4, warmup=1, repeat=2)
    assert report.memory is not None and report.memory.measured_peak_bytes is not None
    assert report.memory.measured_peak_bytes >= report.memory.peak_bytes * 0.9
    assert (
        report.memory.measured_row_peak_bytes is not None and "layer" in report.memory.measured_row_peak_bytes
    )
