"""Activations: a documented number of vector FLOPs per output element.

Transcendentals (exp, log, erf, tanh) count as one FLOP each, like any other arithmetic op, so the
constants are the operation counts of each function's textbook form:

=============  =====  ==========================================================
op             FLOPs  form
=============  =====  ==========================================================
relu           1      max(x, 0)
threshold      1      x > t ? x : v
leaky_relu     2      compare, multiply
hardtanh/relu6 2      min, max
hardsigmoid    4      add 3, clamp (2), multiply by 1/6
hardswish      5      x * hardsigmoid(x)
sigmoid        4      negate, exp, add 1, reciprocal
silu           5      x * sigmoid(x)
tanh           1      one transcendental
elu/celu/selu  4      compare, exp, subtract 1, multiply
softplus       3      exp, add 1, log
mish           5      x * tanh(softplus(x))
gelu           5      x * 0.5 * (1 + erf(x / sqrt 2)); 9 with approximate="tanh"
prelu          2      compare, multiply
=============  =====  ==========================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from layerprof.formulas.registry import REGISTRY, Formula, OpFlops, first_output_numel, register

aten = torch.ops.aten

ACTIVATION_FLOPS_PER_ELEMENT: Mapping[str, int] = {
    "relu": 1,
    "threshold": 1,
    "leaky_relu": 2,
    "hardtanh": 2,
    "hardsigmoid": 4,
    "hardswish": 5,
    "sigmoid": 4,
    "silu": 5,
    "tanh": 1,
    "elu": 4,
    "celu": 4,
    "selu": 4,
    "softplus": 3,
    "mish": 5,
    "_prelu_kernel": 2,
}
GELU_FLOPS_PER_ELEMENT = 5
GELU_TANH_FLOPS_PER_ELEMENT = 9


def per_element(flops_per_element: int) -> Formula:
    """A formula charging ``flops_per_element`` vector FLOPs for each element the op writes."""

    def formula(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
        return OpFlops(vector=flops_per_element * first_output_numel(out))

    formula.__qualname__ = f"per_element({flops_per_element})"
    return formula


def _with_inplace(name: str) -> list[Any]:
    ops = [getattr(aten, name)]
    if hasattr(aten, name + "_"):
        ops.append(getattr(aten, name + "_"))
    return ops


for _name, _cost in ACTIVATION_FLOPS_PER_ELEMENT.items():
    REGISTRY.add_all(_with_inplace(_name), per_element(_cost))


@register(aten.gelu, aten.gelu_)
def gelu(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    approximate = kwargs.get("approximate", args[1] if len(args) > 1 else "none")
    cost = GELU_TANH_FLOPS_PER_ELEMENT if approximate == "tanh" else GELU_FLOPS_PER_ELEMENT
    return OpFlops(vector=cost * first_output_numel(out))
