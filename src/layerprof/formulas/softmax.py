"""Softmax, log-softmax and reductions (vector FLOPs).

Per-element constants: softmax and log-softmax cost :data:`SOFTMAX_FLOPS_PER_ELEMENT` = 5 (running
max, subtract, exp, sum, divide -- or subtract the log-sum for log-softmax). A sum-like reduction of
``n`` inputs to ``m`` outputs costs ``n - m`` adds; a mean adds one divide per output (``n`` in all);
variance and standard deviation cost 4 per input (accumulate the mean, subtract it, square, accumulate);
a vector norm costs 2 per input (square, accumulate).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from layerprof.formulas.registry import OpFlops, first_output_numel, register

aten = torch.ops.aten

SOFTMAX_FLOPS_PER_ELEMENT = 5
VARIANCE_FLOPS_PER_ELEMENT = 4
NORM_FLOPS_PER_ELEMENT = 2


@register(aten._softmax, aten._log_softmax, aten._safe_softmax)
def softmax(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops(vector=SOFTMAX_FLOPS_PER_ELEMENT * int(args[0].numel()))


@register(aten.sum, aten.amax, aten.amin, aten.prod, aten.max.dim, aten.min.dim, aten.argmax, aten.argmin)
def reduce_sum(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops(vector=int(args[0].numel()) - first_output_numel(out))


@register(aten.max.default, aten.min.default)
def reduce_all(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops(vector=int(args[0].numel()) - 1)


@register(aten.mean)
def mean(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops(vector=int(args[0].numel()))


@register(aten.var, aten.std, aten.var_mean, aten.std_mean)
def variance(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops(vector=VARIANCE_FLOPS_PER_ELEMENT * int(args[0].numel()))


@register(aten.linalg_vector_norm, aten.norm)
def vector_norm(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops(vector=NORM_FLOPS_PER_ELEMENT * int(args[0].numel()))
