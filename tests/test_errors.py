"""Bad input: each raises the right LayerprofError subclass, and the message names the bad value."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

import layerprof
from layerprof import (
    DeviceMismatchError,
    ForwardError,
    InvalidArgumentError,
    InvalidModelError,
    LayerprofError,
    UnknownDeviceError,
)
from models import ConvBnReluNet, RaisingNet


def resnet18() -> nn.Module:
    with torch.device("meta"):
        model: nn.Module = torchvision.models.resnet18().eval()
    return model


@pytest.fixture(scope="module")
def report() -> layerprof.Report:
    return layerprof.analyze(layerprof.demo_model(), input_size=(1, 3, 32, 32), target="gtx1080")


CASES: list[Any] = [
    pytest.param(
        lambda: layerprof.analyze("resnet18", input_size=(1, 3, 224, 224)),  # type: ignore[arg-type]
        InvalidModelError, "str", id="not-a-module",
    ),
    pytest.param(
        lambda: layerprof.analyze(nn.Conv2d, input_size=(1, 3, 8, 8)),  # type: ignore[arg-type]
        InvalidModelError, "type", id="module-class-not-instance",
    ),
    pytest.param(
        lambda: layerprof.analyze(resnet18(), input_size=(3, 224, 224)),
        InvalidArgumentError, "(3, 224, 224)", id="input-size-wrong-rank",
    ),
    pytest.param(
        lambda: layerprof.analyze(resnet18(), input_size=(1, 1, 224, 224)),
        InvalidArgumentError, "(1, 1, 224, 224)", id="input-size-wrong-channels",
    ),
    pytest.param(
        lambda: layerprof.analyze(resnet18(), input_size=(1, 3, 0, 224)),
        InvalidArgumentError, "(1, 3, 0, 224)", id="input-size-zero",
    ),
    pytest.param(
        lambda: layerprof.analyze(resnet18(), input_size=(1, 3, 224, 224), dtype=torch.int64),
        InvalidArgumentError, "torch.int64", id="integer-dtype",
    ),
    pytest.param(
        lambda: layerprof.analyze(resnet18(), input_size=(1, 3, 224, 224), dtype="float13"),
        InvalidArgumentError, "float13", id="unknown-dtype-name",
    ),
    pytest.param(
        lambda: layerprof.analyze(resnet18()),
        InvalidArgumentError, "input_size", id="no-inputs",
    ),
    pytest.param(
        lambda: layerprof.analyze(resnet18(), torch.zeros(1, 3, 8, 8), input_size=(1, 3, 8, 8)),
        InvalidArgumentError, "input_size", id="inputs-and-input-size",
    ),
    pytest.param(
        lambda: layerprof.analyze(ConvBnReluNet(), 3.5),  # type: ignore[arg-type]
        InvalidArgumentError, "float", id="inputs-not-tensors",
    ),
    pytest.param(
        lambda: layerprof.analyze(ConvBnReluNet(), input_size=(1, 3, 8, 8), target="no-such-gpu"),
        UnknownDeviceError, "no-such-gpu", id="unknown-target",
    ),
    pytest.param(
        lambda: layerprof.get_device("gtx1090"),
        UnknownDeviceError, "gtx1090", id="unknown-device",
    ),
    pytest.param(
        lambda: layerprof.analyze(ConvBnReluNet(), torch.randn(1, 3, 8, 8, device="meta")),
        DeviceMismatchError, "meta", id="inputs-on-another-device",
    ),
    pytest.param(
        lambda: layerprof.conv_cost(6, 4, (8, 8), 3, groups=4),
        InvalidArgumentError, "groups=4", id="conv-cost-groups",
    ),
    pytest.param(
        lambda: layerprof.conv_cost(3, 4, (2, 2), 5),
        InvalidArgumentError, "(2, 2)", id="conv-cost-input-too-small",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "named"), CASES)
def test_bad_input(call: Callable[[], object], error: type[LayerprofError], named: str) -> None:
    with pytest.raises(error, match=re.escape(named)) as caught:
        call()
    assert isinstance(caught.value, LayerprofError)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        pytest.param({"sort": "bogus"}, "bogus", id="sort"),
        pytest.param({"fmt": "nope"}, "nope", id="fmt"),
        pytest.param({"depth": -1}, "-1", id="depth"),
        pytest.param({"top": 0}, "0", id="top"),
    ],
)
def test_bad_table_options(report: layerprof.Report, options: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape(named)):
        report.table(**options)


def test_errors_subclass_builtins() -> None:
    # Callers may catch the usual builtin too.
    with pytest.raises(ValueError):
        layerprof.analyze(resnet18(), input_size=(3, 224, 224))
    with pytest.raises(TypeError):
        layerprof.analyze(object(), input_size=(1, 3, 8, 8))  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        layerprof.get_device("no-such-gpu")


@pytest.mark.parametrize("use_input_size", [False, True], ids=["inputs", "input_size"])
def test_forward_error_names_the_layer_that_raised(use_input_size: bool) -> None:
    with pytest.raises(ForwardError) as caught:
        if use_input_size:
            layerprof.analyze(RaisingNet(), input_size=(2, 8))
        else:
            layerprof.analyze(RaisingNet(), torch.randn(2, 8))
    error = caught.value
    assert error.layer == "layer2"
    assert "layer2" in str(error)
    assert "boom in the middle of the network" in str(error)
    assert isinstance(error.__cause__, RuntimeError)


def test_forward_error_in_a_nested_layer() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.Linear(5, 2)))
    with pytest.raises(ForwardError) as caught:
        layerprof.analyze(model, input_size=(1, 4))
    assert caught.value.layer == "1.1"
    assert "1.1" in str(caught.value)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_inputs_on_cpu_for_a_model_on_cuda() -> None:
    model = ConvBnReluNet().cuda()
    with pytest.raises(DeviceMismatchError, match="cpu"):
        layerprof.analyze(model, torch.randn(1, 3, 8, 8))


def test_a_size_is_refused_only_when_the_forward_fails() -> None:
    # The first convolution registered (a Conv1d gate) is not the first to run: the size is fine.
    class GatedStem(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.gate = nn.Conv1d(1, 1, 3, padding=1)
            self.stem = nn.Conv2d(3, 16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.stem(x)
            weights = self.gate(x.mean((2, 3)).unsqueeze(1)).squeeze(1)
            return x * weights[:, :, None, None]

    report = layerprof.analyze(GatedStem(), input_size=(1, 3, 8, 8))
    assert report.row("stem").matrix_flops == 2 * 16 * 6 * 6 * 3 * 9


@pytest.mark.parametrize("target", [5, [], {"t4"}], ids=["int", "empty-list", "set"])
def test_a_target_of_the_wrong_kind_is_named(target: object) -> None:
    with pytest.raises(layerprof.InvalidArgumentError, match="target"):
        layerprof.analyze(nn.Conv2d(3, 4, 1), input_size=(1, 3, 4, 4), target=target)  # type: ignore[arg-type]


def test_backward_without_a_trainable_output_is_a_usage_error_not_a_failed_forward() -> None:
    with pytest.raises(layerprof.InvalidArgumentError, match="requires grad") as caught:
        layerprof.analyze(nn.Sequential(nn.ReLU()), input_size=(1, 3), backward=True)
    assert not isinstance(caught.value, layerprof.ForwardError)
