"""Interpolation (upsampling): a weighted sum of taps per output element (vector FLOPs).

Nearest neighbour copies: 0 FLOPs (its bytes are still counted). Linear-family modes blend ``2**d``
taps in ``d`` dimensions and cubic blends ``4**d``: ``taps`` multiplies and ``taps - 1`` adds per
output element, so linear 3, bilinear 7, trilinear 15, bicubic 31.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from layerprof.formulas.activation import per_element
from layerprof.formulas.registry import REGISTRY, OpFlops, register

aten = torch.ops.aten


def interpolation_flops_per_element(taps: int) -> int:
    return 2 * taps - 1


@register(
    aten.upsample_nearest1d,
    aten.upsample_nearest2d,
    aten.upsample_nearest3d,
    aten._upsample_nearest_exact1d,
    aten._upsample_nearest_exact2d,
    aten._upsample_nearest_exact3d,
)
def nearest(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops()


REGISTRY.add_all([aten.upsample_linear1d], per_element(interpolation_flops_per_element(2)))
REGISTRY.add_all(
    [aten.upsample_bilinear2d, aten._upsample_bilinear2d_aa], per_element(interpolation_flops_per_element(4))
)
REGISTRY.add_all([aten.upsample_trilinear3d], per_element(interpolation_flops_per_element(8)))
REGISTRY.add_all(
    [aten.upsample_bicubic2d, aten._upsample_bicubic2d_aa], per_element(interpolation_flops_per_element(16))
)
