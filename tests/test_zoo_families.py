"""Every torchvision model family beyond classification, against the compute torchvision publishes.

As in tests/test_zoo.py: ``weights.meta["_ops"]`` is torchvision's GMACs (its "GFLOPS"), and
``total.matrix_flops / 2 / 1e9`` rounded to 3 decimals must equal it. No weights are downloaded:
models are built with ``weights=None`` (and ``weights_backbone=None``) and only the metadata is read.

- Segmentation at 520x520, with the auxiliary head the DEFAULT weights carry (``aux_loss=True``
  for FCN and DeepLabV3, whose weights all have one; LR-ASPP has none). On meta.
- Video at 16 frames at the crop size of the weights' transforms. On meta.
- Detection at one 800x800 image, on the CPU (``nms`` and ``nonzero`` need real data). The dense
  detectors (RetinaNet, FCOS, SSD, SSDlite) do the same matrix work whatever they detect, and match
  as they are. The two-stage ones run their box head on the proposals that survive the RPN's NMS
  and their mask / keypoint heads on the detections, which with random weights are random; their
  published figures count fixed numbers, which the test pins (the RPN keeps its top 1000
  proposals, or none; the ROI heads keep 0, 1 or 100 detections):

  ===========================================  =========  ==========  ===================
  model                                        proposals  detections  as they are (seed 0)
  ===========================================  =========  ==========  ===================
  fasterrcnn_resnet50_fpn, _v2                 1000       (no head)   134.38, 280.371
  fasterrcnn_mobilenet_v3_large_fpn            0          (no head)   18.853 (1000)
  fasterrcnn_mobilenet_v3_large_320_fpn        0          (no head)   2.873 (150)
  maskrcnn_resnet50_fpn                        1000       0           182.431
  maskrcnn_resnet50_fpn_v2                     1000       100         333.577
  keypointrcnn_resnet50_fpn                    1000       1           483.47
  ===========================================  =========  ==========  ===================

- Quantized classification: eager quantization (fuse, prepare, calibrate, convert with fbgemm) of
  the ``quantize=False`` model on random weights, on the CPU, at the crop size.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models import get_model, get_model_weights, list_models

import layerprof
from test_quantized import quantize
from test_zoo import ParametersOnMeta


def _published(name: str) -> float:
    return float(get_model_weights(name).DEFAULT.meta["_ops"])


def _gmacs(report: layerprof.Report) -> float:
    return round(report.total.matrix_flops / 2 / 1e9, 3)


def _analyze(model: nn.Module, *args: object, **kwargs: object) -> layerprof.Report:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an op without a formula warns: none may be missing here
        return layerprof.analyze(model, *args, **kwargs)  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models(module=torchvision.models.segmentation))
def test_segmentation_at_520_with_its_aux_head(name: str) -> None:
    options = {} if name.startswith("lraspp") else {"aux_loss": True}
    with ParametersOnMeta():
        model = get_model(name, weights=None, weights_backbone=None, **options).eval()
    report = _analyze(model, input_size=(1, 3, 520, 520))
    assert report.unsupported == {}
    assert _gmacs(report) == _published(name)
    if options:
        aux = [r for r in report.layers if r.name.startswith("aux_classifier.")]
        assert sum(r.matrix_flops for r in aux) > 0  # the aux head is part of the figure


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models(module=torchvision.models.video))
def test_video_at_16_frames_at_the_crop_size(name: str) -> None:
    height, width = get_model_weights(name).DEFAULT.transforms().crop_size
    with ParametersOnMeta():
        model = get_model(name, weights=None).eval()
    report = _analyze(model, input_size=(1, 3, 16, height, width))
    assert report.unsupported == {}
    assert _gmacs(report) == _published(name)


def _proposals(count: int) -> Callable[[nn.Module], None]:
    def pin(model: nn.Module) -> None:
        rpn: nn.Module = model.rpn  # type: ignore[assignment]
        if count:
            rpn.nms_thresh = 1.0  # no proposal suppresses another: the top 1000 all survive
        else:
            rpn.score_thresh = 1.1  # no objectness reaches it: no proposal
        model.roi_heads.score_thresh = 1.0  # type: ignore[union-attr]  # no detection

    return pin


def _detections(count: int) -> Callable[[nn.Module], None]:
    def pin(model: nn.Module) -> None:
        model.rpn.nms_thresh = 1.0  # type: ignore[union-attr]
        heads: nn.Module = model.roi_heads  # type: ignore[assignment]
        heads.score_thresh, heads.nms_thresh, heads.detections_per_img = 0.0, 1.0, count

    return pin


DETECTION: dict[str, Callable[[nn.Module], None] | None] = {
    "retinanet_resnet50_fpn": None,
    "retinanet_resnet50_fpn_v2": None,
    "fcos_resnet50_fpn": None,
    "ssd300_vgg16": None,
    "ssdlite320_mobilenet_v3_large": None,
    "fasterrcnn_resnet50_fpn": _proposals(1000),
    "fasterrcnn_resnet50_fpn_v2": _proposals(1000),
    "fasterrcnn_mobilenet_v3_large_fpn": _proposals(0),
    "fasterrcnn_mobilenet_v3_large_320_fpn": _proposals(0),
    "maskrcnn_resnet50_fpn": _detections(0),
    "maskrcnn_resnet50_fpn_v2": _detections(100),
    "keypointrcnn_resnet50_fpn": _detections(1),
}


def test_every_detection_model_is_checked() -> None:
    assert set(DETECTION) == set(list_models(module=torchvision.models.detection))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DETECTION))
def test_detection_at_800(name: str) -> None:
    torch.manual_seed(0)
    model = get_model(name, weights=None, weights_backbone=None).eval()
    pin = DETECTION[name]
    if pin is not None:
        pin(model)
    with torch.no_grad():
        report = _analyze(model, ([torch.rand(3, 800, 800)],))
    assert report.unsupported == {}
    assert _gmacs(report) == _published(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models(module=torchvision.models.quantization))
def test_quantized_classification_eager_quantized(name: str) -> None:
    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("this torch build has no fbgemm")
    (crop,) = get_model_weights(name).DEFAULT.transforms().crop_size
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation warnings
            fused, int8 = quantize(name, crop)
        report = _analyze(int8, torch.randn(1, 3, crop, crop))
    finally:
        torch.backends.quantized.engine = before
    assert report.unsupported == {}
    assert _gmacs(report) == _published(name)
    parameters = report.parameters
    assert parameters is not None
    assert parameters.total == sum(p.numel() for p in fused.parameters())
    # GoogLeNet's and Inception's aux heads do not run in eval mode: theirs are the unused ones
    assert report.total.params == parameters.total - parameters.unused_total
