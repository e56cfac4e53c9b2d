"""Matrix products: mm, addmm, bmm, baddbmm, mv, dot (matmul, linear and einsum reach these).

``2 * M * N * K`` matrix FLOPs per product (one multiply and one add per MAC). The bias of addmm and
baddbmm adds ``M * N`` vector FLOPs per matrix, as docs/design.md says of bias adds.
``_scaled_mm`` (float8 inputs, priced at the float8 peaks) is the same product, plus 1 vector FLOP per
output element for the scales (one multiply by ``scale_a * scale_b``) and 1 for a bias.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from layerprof.formulas.registry import OpFlops, register

aten = torch.ops.aten


def matmul_flops(m: int, n: int, k: int, batch: int = 1) -> int:
    """FLOPs of ``batch`` products of an (m x k) by a (k x n) matrix."""
    return 2 * batch * m * n * k


@register(aten.mm)
def mm(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    (m, k), (_, n) = args[0].shape, args[1].shape
    return OpFlops(matrix=matmul_flops(m, n, k))


@register(aten.addmm)
def addmm(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    (m, k), (_, n) = args[1].shape, args[2].shape
    return OpFlops(matrix=matmul_flops(m, n, k), vector=m * n)


@register(aten._addmm_activation)
def addmm_activation(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # addmm followed by a fused relu or gelu on the (m x n) result: bias add + one activation op each.
    (m, k), (_, n) = args[1].shape, args[2].shape
    return OpFlops(matrix=matmul_flops(m, n, k), vector=2 * m * n)


@register(aten.bmm)
def bmm(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    (b, m, k), (_, _, n) = args[0].shape, args[1].shape
    return OpFlops(matrix=matmul_flops(m, n, k, batch=b))


@register(aten.baddbmm)
def baddbmm(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    (b, m, k), (_, _, n) = args[1].shape, args[2].shape
    return OpFlops(matrix=matmul_flops(m, n, k, batch=b), vector=b * m * n)


@register(aten.mv)
def mv(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    m, k = args[0].shape
    return OpFlops(matrix=matmul_flops(m, 1, k))


@register(aten.dot, aten.vdot)
def dot(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    (n,) = args[0].shape
    return OpFlops(matrix=matmul_flops(1, 1, n))


@register(aten._scaled_mm)
def scaled_mm(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # _scaled_mm(self, mat2, scale_a, scale_b, bias=None, scale_result=None, out_dtype=None, ...)
    (m, k), (_, n) = args[0].shape, args[1].shape
    bias = args[4] if len(args) > 4 else kwargs.get("bias")
    return OpFlops(matrix=matmul_flops(m, n, k), vector=m * n * (2 if isinstance(bias, torch.Tensor) else 1))
