"""analyze leaves the user's model exactly as it was: outputs, hooks, flags, devices, buffers, memory."""

from __future__ import annotations

import gc
import weakref
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import layerprof
from conftest import hook_counts, torch_flags
from models import ConvBnReluNet, RaisingNet


def snapshot(model: nn.Module) -> dict[str, Any]:
    return {
        "training": {name: m.training for name, m in model.named_modules()},
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "params": {
            name: (p.data_ptr(), p.device, p.dtype, p.detach().clone())
            for name, p in model.named_parameters()
        },
        "buffers": {name: (b.data_ptr(), b.detach().clone()) for name, b in model.named_buffers()},
        "attributes": {name: sorted(vars(m)) for name, m in model.named_modules()},
        "modules": [name for name, _ in model.named_modules()],
    }


def assert_same(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key in ("training", "requires_grad", "attributes", "modules"):
        assert before[key] == after[key], key
    assert before["params"].keys() == after["params"].keys()
    for name, (ptr, device, dtype, value) in before["params"].items():
        ptr_after, device_after, dtype_after, value_after = after["params"][name]
        assert (ptr, device, dtype) == (ptr_after, device_after, dtype_after), name
        assert torch.equal(value, value_after), name
    for name, (ptr, value) in before["buffers"].items():
        assert ptr == after["buffers"][name][0], name
        assert torch.equal(value, after["buffers"][name][1]), name


@pytest.mark.parametrize("use_input_size", [False, True], ids=["inputs", "input_size"])
def test_outputs_bit_identical_and_nothing_changed(use_input_size: bool) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
    before = snapshot(model)

    if use_input_size:
        report = layerprof.analyze(model, input_size=(2, 3, 64, 64), dtype=torch.float16, target="gtx1080")
    else:
        report = layerprof.analyze(model, x, target="gtx1080")
    assert report.total.flops > 0

    assert hook_counts(model) == {}
    assert_same(before, snapshot(model))
    with torch.no_grad():
        assert torch.equal(model(x), expected)


def test_a_user_hook_stays_registered_and_runs_once_in_the_counted_forward() -> None:
    model = ConvBnReluNet().eval()
    calls: list[str] = []
    handle = model.conv.register_forward_hook(lambda m, i, o: calls.append("conv"))
    try:
        layerprof.analyze(model, input_size=(1, 3, 8, 8))
        assert hook_counts(model) == {"conv._forward_hooks": 1}
        assert calls == ["conv"]  # the counted forward is the model's own, user hooks included
    finally:
        handle.remove()


def test_train_mode_batch_norm_stats_and_flags_unchanged() -> None:
    torch.manual_seed(0)
    model = ConvBnReluNet().train()
    model.conv.weight.requires_grad_(False)  # a frozen layer stays frozen
    before = snapshot(model)
    layerprof.analyze(model, torch.randn(4, 3, 8, 8))
    after = snapshot(model)
    assert_same(before, after)
    assert model.training and model.bn.training
    bn = model.bn
    assert bn.num_batches_tracked is not None and bn.running_mean is not None and bn.running_var is not None
    assert int(bn.num_batches_tracked) == 0
    assert torch.equal(bn.running_mean, torch.zeros(8))
    assert torch.equal(bn.running_var, torch.ones(8))
    assert not model.conv.weight.requires_grad and model.fc.weight.requires_grad


def test_no_hooks_left_after_a_forward_that_raises() -> None:
    model = RaisingNet()
    before = snapshot(model)
    with pytest.raises(layerprof.ForwardError):
        layerprof.analyze(model, torch.randn(2, 8))
    with pytest.raises(layerprof.ForwardError):
        layerprof.analyze(model, input_size=(2, 8))
    assert hook_counts(model) == {}
    assert_same(before, snapshot(model))


def test_grad_mode_and_torchs_other_switches_are_restored() -> None:
    model = ConvBnReluNet().eval()
    assert torch.is_grad_enabled()
    before = torch_flags()
    layerprof.analyze(model, torch.randn(1, 3, 8, 8))
    assert torch.is_grad_enabled()
    layerprof.profile(model, torch.randn(1, 3, 8, 8), target=None, warmup=1, repeat=2)
    assert torch_flags() == before
    with pytest.raises(layerprof.ForwardError):
        layerprof.analyze(RaisingNet(), torch.randn(2, 8))
    assert torch.is_grad_enabled()
    assert torch_flags() == before


def test_the_report_keeps_no_tensor_alive() -> None:
    model = ConvBnReluNet().eval()
    x = torch.randn(2, 3, 16, 16)
    alive = weakref.ref(x)
    report = layerprof.analyze(model, x)
    del x
    gc.collect()
    assert alive() is None
    assert report.total.flops > 0  # the report is still there


def test_the_report_does_not_keep_the_model_alive() -> None:
    model = ConvBnReluNet().eval()
    alive = weakref.ref(model)
    report = layerprof.analyze(model, input_size=(1, 3, 8, 8))
    del model
    gc.collect()
    assert alive() is None
    assert report.total.params > 0


def test_the_models_own_hook_dicts_never_hold_a_hook_while_it_is_counted_or_timed() -> None:
    # layerprof walks a twin: its hooks go in the twin's own dictionaries, never the model's, not
    # even for the length of one forward.
    seen: list[int] = []

    class Spy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            dicts = (model._forward_hooks, model._forward_pre_hooks, model.conv._forward_hooks)
            seen.append(sum(len(d) for d in (*dicts, model.conv._forward_pre_hooks)))
            return self.conv(x)  # type: ignore[no-any-return]

    model = Spy()
    layerprof.analyze(model, input_size=(1, 3, 8, 8))
    layerprof.analyze(model, torch.randn(1, 3, 8, 8))
    layerprof.profile(model, torch.randn(1, 3, 8, 8), target=None, warmup=1, repeat=2)
    assert len(seen) >= 4
    assert seen == [0] * len(seen)


def test_fx_graph_modules_are_counted() -> None:
    # A GraphModule's class is made per instance by its __new__: the twin must keep that class.
    traced = torch.fx.symbolic_trace(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
    report = layerprof.analyze(traced, input_size=(1, 3, 8, 8))
    assert report.total.matrix_flops == 2 * 8 * 6 * 6 * 3 * 9  # N * C_out * H_out * W_out * C_in * k * k


def test_a_plain_tensor_attribute_updated_in_forward_is_left_alone() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.scale = torch.ones(1)  # neither a parameter nor a buffer

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.scale.mul_(2)  # a running statistic kept by hand
            return self.conv(x) * self.scale  # type: ignore[no-any-return]

    model = Scaled()
    layerprof.analyze(model, torch.randn(1, 3, 8, 8))
    layerprof.profile(model, torch.randn(1, 3, 8, 8), target=None, warmup=1, repeat=2)
    assert torch.equal(model.scale, torch.ones(1))
