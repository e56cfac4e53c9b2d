"""Elementwise arithmetic: one vector FLOP per output element per arithmetic operation.

Binary ops (add, sub, mul, div, maximum, pow, comparisons, where, ...) and unary math (neg, abs, exp,
log, sqrt, rsqrt, reciprocal, sin, cos, erf, floor, clamp_min, ...) cost 1 per output element, and
so does drawing a random number (``bernoulli_``, dropout's mask).
``add``/``sub`` with ``alpha != 1`` and ``clamp`` with both bounds cost 2; ``addcmul``/``addcdiv``
and ``lerp`` cost 3 (two multiplies or a divide, and an add). Dropout in training costs 3 per element
(draw, compare, scale).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from layerprof.formulas.activation import per_element
from layerprof.formulas.registry import REGISTRY, OpFlops, first_output_numel, register

aten = torch.ops.aten

ONE_FLOP_OPS = (
    "mul", "div", "maximum", "minimum", "fmax", "fmin", "pow", "remainder", "fmod", "rsub",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not", "bitwise_and",
    "where", "masked_fill", "neg", "abs", "exp", "exp2", "expm1", "log", "log2", "log1p", "log10",
    "sqrt", "rsqrt", "reciprocal", "sin", "cos", "tan", "erf", "erfc", "floor", "ceil", "round",
    "trunc", "sign", "sgn", "clamp_min", "clamp_max", "square", "atan", "atan2", "sinh", "cosh",
    "asin", "acos", "logit", "nan_to_num", "copysign", "frac", "bernoulli",
)  # fmt: skip
THREE_FLOP_OPS = ("addcmul", "addcdiv", "lerp")
DROPOUT_FLOPS_PER_ELEMENT = 3


def _ops_named(name: str) -> list[Any]:
    ops = [getattr(aten, name)]
    if hasattr(aten, name + "_"):
        ops.append(getattr(aten, name + "_"))
    return ops


for _name in ONE_FLOP_OPS:
    REGISTRY.add_all(_ops_named(_name), per_element(1))
for _name in THREE_FLOP_OPS:
    REGISTRY.add_all(_ops_named(_name), per_element(3))


@register(aten.add, aten.add_, aten.sub, aten.sub_)
def add(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
    return OpFlops(vector=(1 if alpha == 1 else 2) * first_output_numel(out))


@register(aten.clamp, aten.clamp_)
def clamp(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    bounds = [b for b in (*args[1:3], kwargs.get("min"), kwargs.get("max")) if b is not None]
    return OpFlops(vector=max(1, len(bounds)) * first_output_numel(out))


@register(aten.native_dropout)
def dropout(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops(vector=DROPOUT_FLOPS_PER_ELEMENT * int(args[0].numel()))
