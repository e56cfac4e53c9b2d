"""Normalisation: batch, layer, group and instance norm (instance norm runs as a batch norm).

Per-element constants. A norm that computes its statistics costs :data:`STATS_FLOPS_PER_ELEMENT` = 3
(accumulate x and x*x, one multiply) plus :data:`NORMALIZE_FLOPS_PER_ELEMENT` = 2 (subtract the mean,
multiply by 1/std) plus :data:`AFFINE_FLOPS_PER_ELEMENT` = 2 when it has a weight (scale and shift):
7 for batch norm in training, layer norm and group norm with affine parameters. Batch norm in
inference folds the running statistics and the affine parameters into one scale and one shift per
channel: :data:`FOLDED_NORM_FLOPS_PER_ELEMENT` = 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from layerprof.formulas.registry import OpFlops, numel, register

aten = torch.ops.aten

STATS_FLOPS_PER_ELEMENT = 3
NORMALIZE_FLOPS_PER_ELEMENT = 2
AFFINE_FLOPS_PER_ELEMENT = 2
FOLDED_NORM_FLOPS_PER_ELEMENT = 2


def norm_flops(elements: int, *, computes_stats: bool, affine: bool) -> int:
    if not computes_stats:
        return FOLDED_NORM_FLOPS_PER_ELEMENT * elements
    per_element = STATS_FLOPS_PER_ELEMENT + NORMALIZE_FLOPS_PER_ELEMENT
    if affine:
        per_element += AFFINE_FLOPS_PER_ELEMENT
    return per_element * elements


def _batch_norm(
    x: torch.Tensor, weight: Any, training: bool, running_stats: tuple[int, ...] = (3, 4)
) -> OpFlops:
    affine = isinstance(weight, torch.Tensor)
    flops = norm_flops(int(x.numel()), computes_stats=training, affine=affine)
    if training:  # the running statistics are updated in place
        return OpFlops(vector=flops, written_args=running_stats)
    # In inference only the normalised output is written; the saved statistics are placeholders.
    return OpFlops(vector=flops, written_outputs=1)


@register(aten.native_batch_norm, aten.cudnn_batch_norm)
def batch_norm(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # (input, weight, bias, running_mean, running_var, training, momentum, eps)
    return _batch_norm(args[0], args[1], bool(args[5]))


@register(aten._native_batch_norm_legit_functional)
def batch_norm_functional(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # Returns the new running statistics instead of updating its arguments.
    return _batch_norm(args[0], args[1], bool(args[5]), running_stats=())


@register(aten.miopen_batch_norm)
def miopen_batch_norm(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _batch_norm(args[0], args[1], bool(args[5]))


@register(aten._native_batch_norm_legit.default)
def batch_norm_legit(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _batch_norm(args[0], args[1], bool(args[5]))


@register(aten._native_batch_norm_legit.no_stats)
def batch_norm_legit_no_stats(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # (input, weight, bias, training, momentum, eps): no running stats, so it always computes them.
    return _batch_norm(args[0], args[1], True, running_stats=())


@register(aten._native_batch_norm_legit_no_training)
def batch_norm_no_training(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _batch_norm(args[0], args[1], False)


@register(aten.native_layer_norm)
def layer_norm(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # (input, normalized_shape, weight, bias, eps)
    affine = isinstance(args[2], torch.Tensor)
    return OpFlops(vector=norm_flops(int(args[0].numel()), computes_stats=True, affine=affine))


@register(aten.native_group_norm)
def group_norm(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # (input, weight, bias, N, C, HxW, group, eps)
    affine = isinstance(args[1], torch.Tensor)
    return OpFlops(vector=norm_flops(int(args[0].numel()), computes_stats=True, affine=affine))


@register(aten._fused_rms_norm, aten.rms_norm)
def rms_norm(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    """Per element: mean of squares (2), multiply by 1/rms (1), scale (1 with a weight); per
    normalized row: add eps and rsqrt (2), as the ops torch's CPU decomposition runs. ``aten.rms_norm``
    has its own entry because its composite picks the fused kernel on some devices only."""
    affine = len(args) > 2 and isinstance(args[2], torch.Tensor)
    elements = int(args[0].numel())
    rows = elements // max(1, numel(args[1]))
    return OpFlops(vector=(3 + (1 if affine else 0)) * elements + 2 * rows)
