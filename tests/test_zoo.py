"""Every torchvision classification model, counted at its default weights' crop size, against the
GFLOPS torchvision publishes for it (``weights.meta["_ops"]``).

torchvision's figure counts one per multiply-accumulate of the matrix ops (its "GFLOPS" are GMACs):
``total.matrix_flops / 2 / 1e9``, rounded to 3 decimals as torchvision rounds it, must equal it.
Models are built with ``weights=None`` and their parameters allocated on the meta device, so the whole
zoo (regnet_y_128gf and vit_h_14 included) costs shapes only.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import pytest
import torch
import torchvision
from torch import nn
from torch.overrides import TorchFunctionMode
from torchvision.models import get_model, get_model_weights, list_models

import layerprof

MODEL_NAMES = list_models(module=torchvision.models)
AUXILIARY = ("aux1.", "aux2.", "AuxLogits.")


class ParametersOnMeta(TorchFunctionMode):
    """Sends ``torch.empty`` (how layers allocate parameters) to the meta device; other tensors stay
    on the CPU, because some builders compute their widths with real tensors (RegNet's ``.tolist()``)."""

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Mapping[str, Any] | None = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.empty and kwargs.get("device") is None:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def build(name: str, crop: int) -> nn.Module:
    # A ViT's positional embedding fixes its image size: the default weights of vit_h_14 are at 518.
    options = {"image_size": crop} if name.startswith("vit_") else {}
    with ParametersOnMeta():
        model: nn.Module = get_model(name, weights=None, **options).eval()
    return model


def test_the_zoo_is_all_there() -> None:
    assert len(MODEL_NAMES) >= 80
    assert {"resnet50", "vit_h_14", "regnet_y_128gf", "efficientnet_b7", "swin_v2_b"} <= set(MODEL_NAMES)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_matrix_gflops_match_torchvision(name: str) -> None:
    weights = get_model_weights(name).DEFAULT
    (crop,) = weights.transforms().crop_size
    published = weights.meta["_ops"]
    model = build(name, crop)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an op without a formula warns: none may be missing here
        report = layerprof.analyze(model, input_size=(1, 3, crop, crop))

    assert report.unsupported == {}
    assert round(report.total.matrix_flops / 2 / 1e9, 3) == published
    # Every parameter the forward uses is in some row (swin_v2's attention uses its qkv and proj weights
    # without calling those modules); the auxiliary classifiers of GoogLeNet and Inception do not run in
    # eval mode, so theirs are not.
    used = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(AUXILIARY))
    assert report.total.params == used
