"""Sampling and patch ops: grid_sampler (spatial transformers, optical flow), im2col / col2im
(``nn.Unfold`` / ``nn.Fold``), max_unpool.

Per-element constants:

- grid_sampler: :data:`GRID_FLOPS_PER_LOCATION` = 2 per coordinate of each sampling location (the
  grid's ``[-1, 1]`` value unnormalized to pixels: a multiply and an add), then per output element
  (every channel of every location) the interpolation: bilinear 4 taps weighted and summed, ``4 + 3
  = 7`` (trilinear 8 taps: 15); nearest 0 (a read); bicubic 16 taps, ``16 + 15 = 31``. Bilinear
  tap weights are computed once per location, :data:`TAP_WEIGHT_FLOPS` = 6 (two fractions and
  their complements, 2, and four products, 4), the same 6 for trilinear (mode 0 of
  grid_sampler_3d); nearest and bicubic weights are not counted.
- im2col: 0 (a copy of patches); col2im: 1 per element of its column input (overlapping patches
  are summed into the image); max_unpool: 0 (a scatter into a zeroed output).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from layerprof.formulas.registry import OpFlops, first_output, numel, register

aten = torch.ops.aten

GRID_FLOPS_PER_LOCATION = 2  # per coordinate: unnormalize (multiply, add)
TAP_WEIGHT_FLOPS = 6  # per location, bilinear / trilinear weights
INTERPOLATION_FLOPS = {0: 7, 1: 0, 2: 31}  # grid_sampler_2d's interpolation_mode: bilinear, nearest, bicubic
INTERPOLATION_FLOPS_3D = {0: 15, 1: 0}  # trilinear, nearest


def _grid(args: tuple[Any, ...], out: Any, per_element: Mapping[int, int]) -> OpFlops:
    grid = args[1]
    coordinates = int(grid.shape[-1])
    locations = numel(grid.shape[:-1])
    mode = int(args[2])
    interpolate = per_element.get(mode, 0)
    weights = TAP_WEIGHT_FLOPS if interpolate and mode == 0 else 0
    per_location = GRID_FLOPS_PER_LOCATION * coordinates + weights
    return OpFlops(vector=per_location * locations + interpolate * int(first_output(out).numel()))


@register(aten.grid_sampler_2d, aten.cudnn_grid_sampler)
def grid_sampler_2d(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    if len(args) < 3:  # cudnn_grid_sampler(input, grid): bilinear
        args = (args[0], args[1], 0)
    return _grid(args, out, INTERPOLATION_FLOPS)


@register(aten.grid_sampler_3d)
def grid_sampler_3d(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _grid(args, out, INTERPOLATION_FLOPS_3D)


@register(aten.im2col, aten.max_unpool2d, aten.max_unpool3d)
def patches(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops()


@register(aten.col2im)
def col2im(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops(vector=int(args[0].numel()))
