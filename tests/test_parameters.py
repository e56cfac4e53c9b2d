"""report.parameters: total, trainable and frozen as torchinfo counts them, and the modules that never ran.

The reference is ``sum(p.numel())`` over the model's parameters split by ``requires_grad``; the
unused modules are GoogLeNet's and Inception's auxiliary classifiers in eval mode, whose counts are
``sum(p.numel())`` over their own parameters.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import layerprof
from layerprof.walk.params import ParameterCounts


def _split(model: nn.Module) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trainable, frozen


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_large", "convnext_tiny"])
def test_total_trainable_and_frozen_are_the_numel_sums_split_by_requires_grad(name: str) -> None:
    model = torchvision.models.get_model(name, weights=None).eval()
    first = next(m for m in model.children() if any(True for _ in m.parameters()))
    first.requires_grad_(False)  # freeze the stem, as fine-tuning does
    report = layerprof.analyze(model, input_size=(1, 3, 64, 64))
    trainable, frozen = _split(model)
    assert frozen > 0
    assert report.parameters == ParameterCounts(trainable + frozen, trainable, frozen, {}, 0)
    assert report.total.params == trainable + frozen
    footer = str(report).splitlines()
    assert any(line.startswith("params: ") and "frozen" in line for line in footer)


def test_a_shared_parameter_counts_once_and_a_plain_model_has_no_footer_line() -> None:
    linear = nn.Linear(4, 4)
    model = nn.Sequential(linear, nn.ReLU(), linear)
    report = layerprof.analyze(model, input_size=(2, 4))
    assert report.parameters is not None and report.parameters.total == 4 * 4 + 4
    # all trainable, all used: the total row's params say it all
    assert not any(line.startswith("params: ") for line in str(report).splitlines())


@pytest.mark.parametrize(
    ("name", "size", "aux"),
    [("googlenet", 224, ("aux1", "aux2")), ("inception_v3", 299, ("AuxLogits",))],
)
def test_modules_that_never_ran_are_named_with_their_counts(
    name: str, size: int, aux: tuple[str, ...]
) -> None:
    model = torchvision.models.get_model(name, weights=None, aux_logits=True, init_weights=False).eval()
    report = layerprof.analyze(model, input_size=(1, 3, size, size))
    parameters = report.parameters
    assert parameters is not None
    expected = {a: sum(p.numel() for p in getattr(model, a).parameters()) for a in aux}
    assert dict(parameters.unused) == expected
    assert parameters.unused_total == sum(expected.values())
    assert parameters.total == sum(p.numel() for p in model.parameters())
    assert report.total.params == parameters.total - parameters.unused_total
    assert "in modules that did not run" in str(report) and aux[0] in str(report)


def test_in_training_mode_the_aux_heads_run_and_nothing_is_unused() -> None:
    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).train()
    report = layerprof.analyze(model, input_size=(2, 3, 224, 224))
    assert report.parameters is not None
    assert report.parameters.unused_total == 0 and dict(report.parameters.unused) == {}


def test_weights_a_container_uses_without_calling_their_module_are_not_unused() -> None:
    # swin_v2's attention runs F.linear on qkv.weight without calling qkv: used, though it never ran.
    model = torchvision.models.swin_v2_t().eval()
    report = layerprof.analyze(model, input_size=(1, 3, 256, 256))
    assert report.parameters is not None and report.parameters.unused_total == 0


def test_a_report_without_a_forward_row_for_a_module_reports_it() -> None:
    class Skips(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(4, 4)
            self.spare = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.used(x)

    report = layerprof.analyze(Skips(), input_size=(1, 4))
    assert report.parameters is not None
    assert dict(report.parameters.unused) == {"spare": 4 * 2 + 2}
