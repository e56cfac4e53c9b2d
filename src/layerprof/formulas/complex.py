"""Complex arithmetic in real FLOPs: how the counter prices an op that computes on complex tensors.

A complex number is two reals and a FLOP is one real multiply or add, so the count a formula gives
for real operands is scaled, in one place, for a call that reads or writes a complex tensor
(:func:`complex_flops`, called by the pricing step). Per complex operation:

==============================================  ======  =============================================
op                                              factor  real FLOPs
==============================================  ======  =============================================
matrix work (mm, addmm, bmm, baddbmm, mv, dot)  4       a MAC: 4 multiplies + 4 adds = 8, a real MAC 2
add, sub, rsub, neg; sum, mean; a bias add      2       2 adds (a negation: 2 sign flips)
mul, prod                                       6       4 multiplies + 2 adds
div                                             11      (a+bi)/(c+di): 6 multiplies, 3 adds, 2 divides
abs                                             4       sqrt(a^2 + b^2): 2 multiplies, 1 add, 1 root
==============================================  ======  =============================================

A real operand is promoted to complex by the kernel (a real tensor times ``1j``: a complex multiply).
Convolutions never reach the counter as complex: torch runs one as three real convolutions and real
adds (Gauss's trick), counted as they come. Any other op computing on complex tensors has no rule
here: its FLOPs are 0 and it is listed in ``report.unsupported`` as ``"aten.exp (complex)"``, like an
op without a formula, never counted as if it were real. Its bytes are counted as always.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import torch

from layerprof.formulas.registry import OpFlops

#: A complex multiply-accumulate costs 8 real FLOPs, a real one 2.
MATRIX_FACTOR = 4

#: Op name (the overload packet's, without a trailing ``_``) -> real FLOPs per real-operand FLOP.
VECTOR_FACTORS: Mapping[str, int] = MappingProxyType({
    "add": 2, "sub": 2, "rsub": 2, "neg": 2, "sum": 2, "mean": 2,
    "addmm": 2, "baddbmm": 2,  # their vector FLOPs are the bias add
    "mul": 6, "prod": 6, "div": 11, "abs": 4,
})  # fmt: skip


def computes_on_complex(args: tuple[Any, ...], out: Any) -> bool:
    """Whether a call reads or writes a complex tensor (its first output, or a direct argument)."""
    first = out[0] if isinstance(out, (tuple, list)) and out else out
    if isinstance(first, torch.Tensor) and first.is_complex():
        return True
    return any(isinstance(a, torch.Tensor) and a.is_complex() for a in args)


def complex_flops(name: str, cost: OpFlops) -> OpFlops | None:
    """``cost`` (counted for real operands) in real FLOPs for complex ones; None without a rule."""
    factor = VECTOR_FACTORS.get(name)
    if factor is None and cost.vector:
        return None
    return replace(cost, matrix=MATRIX_FACTOR * cost.matrix, vector=(factor or 0) * cost.vector)
