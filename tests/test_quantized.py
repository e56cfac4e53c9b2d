"""Real int8 models (eager-mode quantization with fbgemm), float8 GEMMs and torchvision's detection ops.

A quantized resnet18 must count what its float twin counts: the same matrix MACs (torchvision's
published GMACs for ``quantized_resnet18``), the same parameters as the fused float model (fusion
folds each batch norm into its convolution's bias), its rows in int8, priced at int8 peaks, its
packed int8 weights read as bytes. The detection ops' costs are hand arithmetic on their docstrings'
constants.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import get_model_weights

import layerprof
from layerprof.formulas import NAMED_FORMULAS
from layerprof.roofline.verdicts import priced_dtype


@pytest.fixture(autouse=True)
def _fbgemm() -> Iterator[None]:
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("this torch build has no fbgemm")
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation warnings
        yield
    torch.backends.quantized.engine = before


def quantize(name: str, size: int = 224) -> tuple[nn.Module, nn.Module]:
    """(the fused float model, its int8 conversion): fuse, prepare, calibrate on a random batch, convert."""
    float_model = torchvision.models.get_model(name, weights=None, quantize=False).eval()
    float_model.fuse_model(is_qat=False)  # type: ignore[operator]
    fused = copy.deepcopy(float_model)
    float_model.qconfig = torch.ao.quantization.get_default_qconfig("fbgemm")
    torch.ao.quantization.prepare(float_model, inplace=True)
    with torch.no_grad():
        float_model(torch.randn(1, 3, size, size))
    torch.ao.quantization.convert(float_model, inplace=True)
    return fused, float_model


def test_an_int8_resnet18_counts_the_float_models_matrix_work_and_parameters() -> None:
    fused, int8 = quantize("quantized_resnet18")
    x = torch.randn(1, 3, 224, 224)
    report = layerprof.analyze(int8, x, target="a100-40gb")
    reference = layerprof.analyze(torchvision.models.resnet18().eval(), input_size=(1, 3, 224, 224))

    assert report.unsupported == {}
    assert report.total.matrix_flops == reference.total.matrix_flops
    assert (
        round(report.total.matrix_flops / 2 / 1e9, 3)
        == get_model_weights("quantized_resnet18").DEFAULT.meta["_ops"]
    )
    fused_params = sum(p.numel() for p in fused.parameters())
    assert report.total.params == fused_params
    assert report.parameters is not None
    assert report.parameters.total == fused_params and report.parameters.frozen == fused_params

    conv1 = report.row("conv1")  # ConvReLU2d: 3 -> 64, 7x7, stride 2 on 224x224
    assert conv1.dtype == "int8" and priced_dtype(conv1) == "int8"
    assert conv1.params == 64 * 3 * 7 * 7 + 64
    out = 64 * 112 * 112
    assert conv1.matrix_flops == 2 * out * 3 * 7 * 7
    assert conv1.flops - conv1.matrix_flops == out * (1 + 5 + 1)  # bias, requantize, relu
    # quint8 input, int8 weight, float32 bias read; quint8 output written
    assert conv1.bytes_read == 3 * 224 * 224 + 64 * 3 * 7 * 7 + 4 * 64
    assert conv1.bytes_written == out
    quant = report.row("quant")
    assert quant.flops == 5 * 3 * 224 * 224 and quant.bytes_written == 3 * 224 * 224
    assert report.row("layer1.0/add_relu").flops == 11 * 64 * 56 * 56

    with torch.inference_mode():
        inferred = layerprof.analyze(int8, x)
    assert [(r.name, r.flops, r.bytes_total) for r in inferred.layers] == [
        (r.name, r.flops, r.bytes_total) for r in report.layers
    ]


def test_int8_rows_are_priced_at_the_int8_peak() -> None:
    _, int8 = quantize("quantized_resnet18")
    report = layerprof.analyze(int8, torch.randn(1, 3, 224, 224), target="a100-40gb")
    conv = report.row("layer4.0.conv2")  # compute-bound at int8: the time is matrix FLOPs / int8 peak
    spec = report.targets[0]
    verdict = conv.roofline["a100-40gb"]
    int8_peak = spec.peak_flops_per_s("int8", "matrix")
    assert int8_peak > spec.peak_flops_per_s("float32", "matrix")
    if verdict.bound == "compute":
        vector = conv.flops - conv.matrix_flops
        expected = conv.matrix_flops / int8_peak + vector / spec.peak_flops_per_s("int8", "vector")
        assert verdict.roofline_time_ms == pytest.approx(expected * 1e3)


def test_a_dynamically_quantized_linear_is_int8_matrix_work() -> None:
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 8)).eval()
    dynamic = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    report = layerprof.analyze(dynamic, torch.randn(4, 64))
    assert report.unsupported == {}
    assert report.total.matrix_flops == 2 * 4 * (64 * 32 + 32 * 8)
    assert report.total.params == sum(p.numel() for p in model.parameters())


def test_detection_ops_by_hand() -> None:
    x = torch.rand(1, 3, 8, 8)
    rois = torch.tensor([[0, 0, 0, 4, 4.0], [0, 1, 1, 6, 6.0]])
    out = torchvision.ops.roi_align(x, rois, (2, 2), 1.0, 3)
    # 2 boxes x 3 channels x 2x2 bins; 3x3 samples of 7 FLOPs each, 8 adds, 1 divide
    assert NAMED_FORMULAS["torchvision.roi_align"]((x, rois, 1.0, 2, 2, 3, False), {}, out).vector == (
        2 * 3 * 4 * (9 * 7 + 8 + 1)
    )
    # an adaptive sampling ratio counts as 2x2 samples
    assert NAMED_FORMULAS["torchvision.roi_align"]((x, rois, 1.0, 2, 2, 0, False), {}, out).vector == (
        2 * 3 * 4 * (4 * 7 + 3 + 1)
    )
    boxes, scores = torch.rand(10, 4), torch.rand(10)
    keep = torchvision.ops.nms(boxes, scores, 0.5)
    # 3 per box area, 13 per pair (45 pairs), 10 * ceil(log2 10) = 40 compares for the sort
    assert NAMED_FORMULAS["torchvision.nms"]((boxes, scores, 0.5), {}, keep).vector == 3 * 10 + 13 * 45 + 40
    pooled = torchvision.ops.roi_pool(x, rois, (2, 2), 1.0)
    assert NAMED_FORMULAS["torchvision.roi_pool"]((x, rois, 1.0, 2, 2), {}, pooled).vector == 4 * 2 * 3 * 4


def test_detection_ops_are_counted_in_a_model() -> None:
    class Nms(nn.Module):
        def forward(self, boxes: torch.Tensor) -> torch.Tensor:
            return torchvision.ops.nms(boxes, boxes[:, 0], 0.5)

    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.nms = Nms()
            self.align = torchvision.ops.RoIAlign((2, 2), 1.0, 2)

        def forward(self, x: torch.Tensor, rois: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
            return self.align(x, rois).sum() + self.nms(boxes).sum()

    boxes = torch.tensor([[0, 0, 4, 4.0], [1, 1, 5, 5.0], [0, 0, 3, 3.0]])
    report = layerprof.analyze(Head(), (torch.rand(1, 3, 8, 8), torch.tensor([[0, 0, 0, 4, 4.0]]), boxes))
    assert not any("torchvision" in op for op in report.unsupported)
    assert report.row("nms").flops == 3 * 3 + 13 * 3 + 3 * 2  # areas, pairs, sort
    assert report.row("align").flops == 1 * 3 * 4 * (4 * 7 + 3 + 1)
