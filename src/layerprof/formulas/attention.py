"""Attention: scaled_dot_product_attention's fused kernels and the native multi-head attention op.

Matrix FLOPs are the two products, ``2*B*H*L*S*E`` for Q K^T and ``2*B*H*L*S*Ev`` for P V (causal
masks are not discounted, as in ``torch.utils.flop_counter``). Vector FLOPs are the scaling (1) and
the softmax (:data:`~layerprof.formulas.softmax.SOFTMAX_FLOPS_PER_ELEMENT`) per score. When SDPA runs
its math fallback instead, the same work arrives as bmm + softmax ops and is counted by those formulas.
``aten.scaled_dot_product_attention`` itself (it reaches the dispatcher whole under
``inference_mode``) is priced as the fused kernels: its composite picks a kernel by device, and a
count must not depend on where it is counted (on meta the composite would pick the math path).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from layerprof.formulas.matmul import matmul_flops
from layerprof.formulas.registry import OpFlops, register
from layerprof.formulas.softmax import SOFTMAX_FLOPS_PER_ELEMENT

aten = torch.ops.aten

SCORE_FLOPS_PER_ELEMENT = 1 + SOFTMAX_FLOPS_PER_ELEMENT


def attention_flops(batch_heads: int, q_len: int, kv_len: int, head_dim: int, value_dim: int) -> OpFlops:
    scores = matmul_flops(q_len, kv_len, head_dim, batch=batch_heads)
    weighted = matmul_flops(q_len, value_dim, kv_len, batch=batch_heads)
    return OpFlops(matrix=scores + weighted, vector=SCORE_FLOPS_PER_ELEMENT * batch_heads * q_len * kv_len)


def _heads_first(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> OpFlops:
    # (..., L, E) layout: every leading dimension is a batch or a head.
    *lead, q_len, head_dim = q.shape
    kv_len, value_dim = k.shape[-2], v.shape[-1]
    batch_heads = 1
    for size in lead:
        batch_heads *= int(size)
    return attention_flops(batch_heads, int(q_len), int(kv_len), int(head_dim), int(value_dim))


@register(
    aten.scaled_dot_product_attention,
    aten._scaled_dot_product_flash_attention,
    aten._scaled_dot_product_flash_attention_for_cpu,
    aten._scaled_dot_product_efficient_attention,
    aten._scaled_dot_product_cudnn_attention,
    aten._scaled_dot_product_fused_attention_overrideable,
)
def sdpa(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return _heads_first(args[0], args[1], args[2])


@register(aten._flash_attention_forward, aten._efficient_attention_forward)
def sdpa_sequence_first(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # (B, L, H, E) layout.
    q, k, v = args[0], args[1], args[2]
    batch, q_len, heads, head_dim = (int(s) for s in q.shape)
    return attention_flops(batch * heads, q_len, int(k.shape[1]), head_dim, int(v.shape[-1]))


@register(aten._native_multi_head_attention)
def native_multi_head_attention(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    # (query, key, value, embed_dim, num_head, qkv_weight, qkv_bias, proj_weight, proj_bias, ...),
    # batch-first (B, L, D): in-projections, attention, out-projection.
    query, key = args[0], args[1]
    embed_dim, heads = int(args[3]), int(args[4])
    batch, q_len = int(query.shape[0]), int(query.shape[1])
    kv_len = int(key.shape[1])
    head_dim = embed_dim // heads
    projections = matmul_flops(q_len + 2 * kv_len, embed_dim, embed_dim, batch=batch)
    projections += matmul_flops(q_len, embed_dim, embed_dim, batch=batch)
    biases = batch * (2 * q_len + 2 * kv_len) * embed_dim
    core = attention_flops(batch * heads, q_len, kv_len, head_dim, head_dim)
    return OpFlops(matrix=projections + core.matrix, vector=biases + core.vector)
