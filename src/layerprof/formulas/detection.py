"""torchvision's detection ops: roi_align, roi_pool, nms. They are registered by name
(``torchvision.roi_align``), so that layerprof never imports torchvision itself.

- roi_align: per output element (box x channel x bin) ``s * s`` bilinear samples (7 each, as
  :mod:`~layerprof.formulas.sampling`'s bilinear) summed (``s * s - 1`` adds) and averaged (1
  divide), ``s`` the ``sampling_ratio``; an adaptive ratio (``<= 0``, the sample count depends on
  each box's size, i.e. on the data) is counted as 2, the ratio torchvision's detection models use.
- roi_pool: per output element, the max over its bin: counted as 4 compares (a 2x2 bin).
- nms: :data:`BOX_AREA_FLOPS` = 3 per box (two subtractions, a multiply), and
  :data:`IOU_FLOPS` = 13 per pair of boxes (4 max/min for the intersection's corners, 2 subtractions,
  2 clamps at 0, 1 multiply, 2 for the union, 1 divide, 1 compare with the threshold), for every
  pair: an upper bound (the kernel skips boxes already suppressed, which depends on the data), plus
  the sort of the scores (``n * ceil(log2 n)`` compares).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from layerprof.formulas.registry import Formula, OpFlops, first_output

BILINEAR_SAMPLE_FLOPS = 7
ADAPTIVE_SAMPLING_RATIO = 2
ROI_POOL_FLOPS = 4
BOX_AREA_FLOPS = 3
IOU_FLOPS = 13


def roi_align(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # roi_align(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned)
    ratio = int(args[5]) if len(args) > 5 else 0
    s = ratio if ratio > 0 else ADAPTIVE_SAMPLING_RATIO
    samples = s * s
    per_output = samples * BILINEAR_SAMPLE_FLOPS + (samples - 1) + 1
    return OpFlops(vector=per_output * int(first_output(out).numel()))


def roi_pool(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops(vector=ROI_POOL_FLOPS * int(first_output(out).numel()))


def nms(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    n = int(args[0].shape[0])
    pairs = n * (n - 1) // 2
    sort = n * max(1, math.ceil(math.log2(n))) if n > 1 else 0
    return OpFlops(vector=BOX_AREA_FLOPS * n + IOU_FLOPS * pairs + sort)


#: Formulas by op packet name, for ops of libraries layerprof does not import.
NAMED_FORMULAS: Mapping[str, Formula] = MappingProxyType(
    {
        "torchvision.roi_align": roi_align,
        "torchvision.roi_pool": roi_pool,
        "torchvision.nms": nms,
    }
)
