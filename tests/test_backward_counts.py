"""Backward rows of a sampled training step, counted by hand (constants from formulas/backward.py).

Each model runs two training steps under ``layerprof.watch(every=1)``: the first is counted, the
second timed, and the report's backward rows carry the counts. A convolution's backward costs
``2 * MACs`` for the input gradient plus ``2 * MACs`` for the weight gradient (groups kept), the first
layer of a model has no input gradient to compute; batch norm costs 9 FLOPs per input element.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import layerprof
from layerprof.report.facade import Report


def sample(model: nn.Module, x: torch.Tensor) -> Report:
    """One sampled training step of ``model`` on ``x`` (loss: the sum of the outputs)."""
    reports: list[Report] = []
    with layerprof.watch(model, every=1, target=None, sink=reports.append):
        for _ in range(2):
            model.zero_grad(set_to_none=True)
            model(x).sum().backward()
    assert len(reports) == 1
    return reports[0]


def test_conv_backward_first_depthwise_strided() -> None:
    model = nn.Sequential(
        OrderedDict(
            first=nn.Conv2d(3, 4, 3, padding=1, bias=False),
            depthwise=nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False),
            strided=nn.Conv2d(4, 8, 3, stride=2, padding=1, bias=False),
        )
    )
    report = sample(model, torch.randn(2, 3, 8, 8))
    first_macs = 2 * 4 * 8 * 8 * 3 * 9  # N * C_out * H * W * (C_in / groups) * k * k = 13824
    depthwise_macs = 2 * 4 * 8 * 8 * 1 * 9  # = 4608
    strided_macs = 2 * 8 * 4 * 4 * 4 * 9  # 8x8 -> 4x4 at stride 2: = 9216
    assert report.row("first").matrix_flops == 2 * first_macs  # = 27648
    # The model's input needs no gradient: only the weight gradient, as much as the forward.
    assert report.row("first", "backward").matrix_flops == 2 * first_macs  # = 27648
    assert report.row("depthwise", "backward").matrix_flops == 4 * depthwise_macs  # = 18432
    assert report.row("strided", "backward").matrix_flops == 4 * strided_macs  # = 36864
    for name in ("first", "depthwise", "strided"):
        row = report.row(name, "backward")
        assert row.flops == row.matrix_flops  # no bias: nothing but the two gradient convolutions
        assert row.kernel_size == (3, 3)
    assert bwd_fwd_column(report.table()) == {"strided": "2.00", "depthwise": "2.00", "first": "1.00"}


def bwd_fwd_column(table: str) -> dict[str, str]:
    """The ``bwd/fwd`` cell of each backward row of a printed table (cells are left-aligned)."""
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("layer "))
    start = header.index("bwd/fwd")
    return {
        line.split()[0]: line[start : start + len("bwd/fwd")].strip()
        for line in lines
        if " backward " in line
    }


def test_linear_backward() -> None:
    model = nn.Sequential(OrderedDict(hidden=nn.Linear(16, 16), out=nn.Linear(16, 8)))
    report = sample(model, torch.randn(2, 16))
    out = report.row("out", "backward")
    # grad input: (2 x 8) @ (8 x 16) -> 2 * 2 * 8 * 16 = 512; grad weight: (8 x 2) @ (2 x 16) -> 512
    assert out.matrix_flops == 2 * 2 * 8 * 16 + 2 * 8 * 2 * 16  # = 1024
    # bias gradient: the (2 x 8) output gradient summed over the batch: 2 * 8 - 8 = 8 adds
    assert out.flops - out.matrix_flops == 2 * 8 - 8
    hidden = report.row("hidden", "backward")
    assert hidden.matrix_flops == 2 * 16 * 2 * 16  # its input needs no gradient: grad weight only = 1024
    assert hidden.flops - hidden.matrix_flops == 2 * 16 - 16
    forward = report.row("out")
    assert forward.matrix_flops == 2 * 2 * 16 * 8  # addmm: 2 * M * N * K = 512
    assert out.matrix_flops == 2 * forward.matrix_flops


def test_batch_norm_backward() -> None:
    model = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3, padding=1, bias=False), bn=nn.BatchNorm2d(4)))
    report = sample(model, torch.randn(2, 3, 8, 8))
    bn = report.row("bn", "backward")
    assert bn.flops == 9 * 2 * 4 * 8 * 8  # 9 FLOPs per element of the (2, 4, 8, 8) input = 4608
    assert bn.matrix_flops == 0
    # the weight and bias gradients accumulate into fresh .grad tensors: no extra row, no extra op
    assert [r.name for r in report.backward] == ["bn", "conv"]


def test_resnet18_backward_matrix_flops_match_torch_flop_counter() -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    x = torch.randn(2, 3, 64, 64)
    report = sample(model, x)
    ours = sum(r.matrix_flops for r in report.backward)

    output = model(x).sum()
    with FlopCounterMode(display=False) as counter:
        output.backward()
    theirs = counter.get_total_flops()
    assert theirs > 0
    assert abs(ours - theirs) <= 0.01 * theirs, (ours, theirs)
    # forward and backward rows have the same names; backward matrix work ~ 2x the forward's
    forward = sum(r.matrix_flops for r in report.forward)
    assert 1.8 * forward < ours < 2.0 * forward  # conv1 (no input gradient) costs 1x, the rest 2x
