"""Per-layer agreement with two independent counters on real torchvision models (batch 1, 224 x 224, eval).

* fvcore's FlopCountAnalysis counts one "flop" per multiply-accumulate of a convolution or a linear
  layer: a conv or linear row's ``macs`` must equal fvcore's count for that module.
* ``torch.utils.flop_counter.FlopCounterMode`` counts 2 FLOPs per MAC of the matrix ops it knows
  (convolution, mm, addmm, bmm, attention), per module FQN prefixed with the root's class name
  (``ResNet.layer1.0.conv1``), each module including its submodules: the matrix FLOPs of the rows
  under that module must add up to its count.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import torch
import torchvision
from fvcore.nn import FlopCountAnalysis
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import layerprof
from layerprof import Report

MODELS = ["resnet50", "mobilenet_v3_large", "efficientnet_b0", "convnext_tiny"]
SIZE = (1, 3, 224, 224)


def _under(report: Report, module: str) -> Iterator[layerprof.LayerRow]:
    """Rows of ``module`` and its descendants (its own glue rows included); every row for the root."""
    for row in report.layers:
        if module == "" or row.name == module or row.name.startswith((module + ".", module + "/")):
            yield row


@pytest.mark.parametrize("name", MODELS)
def test_conv_and_linear_macs_match_fvcore(name: str) -> None:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None).eval()
    report = layerprof.analyze(model, input_size=SIZE)

    analysis = FlopCountAnalysis(model, torch.randn(SIZE))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_module = analysis.by_module()

    compared = 0
    for row in report.layers:
        if row.kind in ("Conv2d", "Linear"):
            assert row.macs == by_module[row.name], row.name
            compared += 1
    modules = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert compared == len(modules)  # every conv and linear layer ran once and was compared


@pytest.mark.parametrize("name", MODELS)
def test_matrix_flops_match_flop_counter_mode_per_module(name: str) -> None:
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None).eval()
    report = layerprof.analyze(model, input_size=SIZE)

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(SIZE, device="meta"))
    counts = counter.get_flop_counts()

    root = type(model).__name__
    assert sum(counts["Global"].values()) == report.total.matrix_flops
    checked = 0
    for key, per_op in counts.items():
        if key == "Global":
            continue
        module = key.removeprefix(root).removeprefix(".")
        assert sum(r.matrix_flops for r in _under(report, module)) == sum(per_op.values()), key
        checked += 1
    assert checked > 50  # the counter saw the whole module tree


@pytest.mark.parametrize(
    "factory",
    [
        pytest.param(layerprof.demo_model, id="DemoNet"),
        pytest.param(lambda: torchvision.models.resnet18().eval(), id="resnet18"),
    ],
)
def test_crosscheck_agrees(factory: object) -> None:
    torch.manual_seed(0)
    model = factory()  # type: ignore[operator]
    report = layerprof.analyze(model, torch.randn(1, 3, 128, 128))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check = report.crosscheck()
    assert check.agrees, check.summary()
    assert check.layerprof_macs == check.fvcore_macs == report.total.macs
    assert check.rows_compared >= sum(1 for r in report.layers if r.kind in ("Conv2d", "Linear"))
