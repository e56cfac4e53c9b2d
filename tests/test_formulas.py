"""The formula registry, tested through itself: every registered op packet gets a representative call.

A representative call is the op run on meta tensors (shapes only), its output fed to the op's formula
exactly as the counter would. Ops with no meta kernel (cuDNN, MKLDNN, quantized) get a hand-made
output of the right shape. Where the expected count is easy to state it is written as arithmetic
from the documented constants; every formula must at least return non-negative integer FLOPs.
"""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from torch import nn
from torch._ops import OpOverload, OpOverloadPacket

import layerprof
from layerprof.formulas import FORMULAS, OpFlops
from layerprof.formulas.registry import Registry

aten = torch.ops.aten


def t(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def idx(*shape: int) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.int64, device="meta")


@dataclass(frozen=True)
class Call:
    """A representative call of one overload; ``out`` only for ops that cannot run on meta."""

    op: OpOverload
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    out: Any = None
    matrix: int | None = None
    vector: int | None = None


# Shapes shared by the structured calls below.
B, H, L, S, E, EV = 2, 3, 5, 7, 8, 6  # attention: batch, heads, query len, key len, head dim, value dim
X = (2, 4, 8, 8)  # an NCHW activation
N_X = 2 * 4 * 8 * 8  # its element count: 512


def _structured() -> dict[str, Callable[[], Call]]:
    """Calls for ops whose arguments need structure (2-D matrices, index tensors, kernel sizes)."""
    return {
        # -- matrix products: 2 * M * N * K ----------------------------------------------------------
        "mm": lambda: Call(aten.mm.default, (t(5, 8), t(8, 6)), matrix=2 * 5 * 6 * 8),
        "addmm": lambda: Call(
            aten.addmm.default, (t(6), t(5, 8), t(8, 6)), matrix=2 * 5 * 6 * 8, vector=5 * 6
        ),
        "_addmm_activation": lambda: Call(
            aten._addmm_activation.default, (t(6), t(5, 8), t(8, 6)), matrix=2 * 5 * 6 * 8, vector=2 * 5 * 6
        ),
        "bmm": lambda: Call(aten.bmm.default, (t(3, 5, 8), t(3, 8, 6)), matrix=2 * 3 * 5 * 6 * 8),
        "baddbmm": lambda: Call(
            aten.baddbmm.default,
            (t(3, 5, 6), t(3, 5, 8), t(3, 8, 6)),
            matrix=2 * 3 * 5 * 6 * 8,
            vector=3 * 5 * 6,
        ),
        "mv": lambda: Call(aten.mv.default, (t(5, 8), t(8)), matrix=2 * 5 * 8),
        "dot": lambda: Call(aten.dot.default, (t(8), t(8)), matrix=2 * 8),
        "vdot": lambda: Call(aten.vdot.default, (t(8), t(8)), matrix=2 * 8),
        # -- convolution: 2 * N * Cout * prod(out) * Cin/g * prod(k); bias N * Cout * prod(out) -----------
        "convolution": lambda: Call(
            aten.convolution.default,
            (t(2, 4, 8, 8), t(6, 2, 3, 3), t(6), [1, 1], [1, 1], [1, 1], False, [0, 0], 2),
            matrix=2 * 2 * 6 * 8 * 8 * 2 * 9,
            vector=2 * 6 * 8 * 8,
        ),
        "_convolution": lambda: Call(
            aten._convolution.default,
            (
                t(1, 4, 5, 5),
                t(4, 3, 2, 2),
                None,
                [2, 2],
                [0, 0],
                [1, 1],
                True,
                [0, 0],
                1,
                False,
                False,
                True,
                True,
            ),
            matrix=2 * 1 * 3 * 5 * 5 * 4 * 4,  # transposed: the input's 5 x 5, not the output's 10 x 10
        ),
        "convolution_overrideable": lambda: Call(
            aten.convolution_overrideable.default,
            (t(1, 4, 8, 8), t(6, 4, 3, 3), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
            out=t(1, 6, 6, 6),
            matrix=2 * 1 * 6 * 6 * 6 * 4 * 9,
        ),
        "cudnn_convolution": lambda: Call(
            aten.cudnn_convolution.default,
            (t(1, 4, 8, 8), t(6, 4, 3, 3), [0, 0], [1, 1], [1, 1], 1, False, False, True),
            out=t(1, 6, 6, 6),
            matrix=2 * 1 * 6 * 6 * 6 * 4 * 9,
        ),
        "cudnn_convolution_transpose": lambda: Call(
            aten.cudnn_convolution_transpose.default,
            (t(1, 4, 5, 5), t(4, 3, 2, 2), [0, 0], [0, 0], [2, 2], [1, 1], 1, False, False, True),
            out=t(1, 3, 10, 10),
            matrix=2 * 1 * 3 * 5 * 5 * 4 * 4,
        ),
        "mkldnn_convolution": lambda: Call(
            aten.mkldnn_convolution.default,
            (t(1, 4, 8, 8), t(6, 4, 3, 3), t(6), [0, 0], [1, 1], [1, 1], 1),
            out=t(1, 6, 6, 6),
            matrix=2 * 1 * 6 * 6 * 6 * 4 * 9,
            vector=1 * 6 * 6 * 6,
        ),
        # -- attention: 2*B*H*L*S*E + 2*B*H*L*S*Ev matrix; (1 scale + 5 softmax) per score vector ---------
        **{name: functools.partial(_sdpa_call, name) for name in SDPA_FORWARD},
        "_native_multi_head_attention": lambda: Call(
            aten._native_multi_head_attention.default,
            (t(2, 5, 8), t(2, 7, 8), t(2, 7, 8), 8, 2, t(24, 8), t(24), t(8, 8), t(8)),
            out=(t(2, 5, 8), t(2, 5, 7)),
            # q, k, v and out projections; QK^T and PV with head_dim 8 / 2 = 4 on 2 * 2 batch-heads.
            matrix=2 * 2 * (5 + 7 + 7) * 8 * 8 + 2 * 2 * 5 * 8 * 8 + 2 * (2 * 2) * 5 * 7 * 4 * 2,
            vector=2 * (2 * 5 + 2 * 7) * 8 + (1 + 5) * (2 * 2) * 5 * 7,
        ),
        # -- normalisation: 3 stats + 2 normalise + 2 affine; 2 when folded (batch norm inference) -------
        "native_batch_norm": lambda: Call(
            aten.native_batch_norm.default, (t(*X), t(4), t(4), t(4), t(4), True, 0.1, 1e-5), vector=7 * N_X
        ),
        "_native_batch_norm_legit": lambda: Call(
            aten._native_batch_norm_legit.default,
            (t(*X), t(4), t(4), t(4), t(4), False, 0.1, 1e-5),
            vector=2 * N_X,
        ),
        "_native_batch_norm_legit_functional": lambda: Call(
            aten._native_batch_norm_legit_functional.default,
            (t(*X), None, None, t(4), t(4), True, 0.1, 1e-5),
            vector=(3 + 2) * N_X,  # no weight: no affine step
        ),
        "_native_batch_norm_legit_no_training": lambda: Call(
            aten._native_batch_norm_legit_no_training.default,
            (t(*X), t(4), t(4), t(4), t(4), 0.1, 1e-5),
            vector=2 * N_X,
        ),
        "cudnn_batch_norm": lambda: Call(
            aten.cudnn_batch_norm.default,
            (t(*X), t(4), t(4), t(4), t(4), False, 0.1, 1e-5),
            out=(t(*X), t(0), t(0), t(0, dtype=torch.uint8)),
            vector=2 * N_X,
        ),
        "miopen_batch_norm": lambda: Call(
            aten.miopen_batch_norm.default,
            (t(*X), t(4), t(4), t(4), t(4), True, 0.1, 1e-5),
            out=(t(*X), t(4), t(4)),
            vector=7 * N_X,
        ),
        "native_layer_norm": lambda: Call(
            aten.native_layer_norm.default, (t(2, 5, 8), [8], t(8), t(8), 1e-5), vector=7 * 2 * 5 * 8
        ),
        "native_group_norm": lambda: Call(
            aten.native_group_norm.default, (t(*X), t(4), t(4), 2, 4, 64, 2, 1e-5), vector=7 * N_X
        ),
        "_fused_rms_norm": lambda: Call(
            aten._fused_rms_norm.default,
            (t(2, 5, 8), [8], t(8), 1e-5),
            out=(t(2, 5, 8), t(2, 5, 1)),
            vector=(3 + 1) * 2 * 5 * 8,
        ),
        "native_dropout": lambda: Call(aten.native_dropout.default, (t(*X), 0.5, True), vector=3 * N_X),
        # -- pooling: K - 1 per max window, K per average window --------------------------------------
        "max_pool1d": lambda: Call(
            aten.max_pool1d.default, (t(2, 4, 9), [3], [3]), vector=2 * 4 * 3 * (3 - 1)
        ),
        "max_pool1d_with_indices": lambda: Call(
            aten.max_pool1d_with_indices.default, (t(2, 4, 9), [3], [3]), vector=2 * 4 * 3 * (3 - 1)
        ),
        "max_pool2d": lambda: Call(
            aten.max_pool2d.default, (t(*X), [2, 2], [2, 2]), vector=2 * 4 * 4 * 4 * (4 - 1)
        ),
        "max_pool2d_with_indices": lambda: Call(
            aten.max_pool2d_with_indices.default, (t(*X), [2, 2], [2, 2]), vector=2 * 4 * 4 * 4 * (4 - 1)
        ),
        "max_pool3d": lambda: Call(
            aten.max_pool3d.default,
            (t(1, 2, 4, 4, 4), [2, 2, 2], [2, 2, 2]),
            vector=1 * 2 * 2 * 2 * 2 * (8 - 1),
        ),
        "max_pool3d_with_indices": lambda: Call(
            aten.max_pool3d_with_indices.default,
            (t(1, 2, 4, 4, 4), [2, 2, 2], [2, 2, 2]),
            vector=1 * 2 * 2 * 2 * 2 * (8 - 1),
        ),
        "mkldnn_max_pool2d": lambda: Call(
            aten.mkldnn_max_pool2d.default,
            (t(*X), [2, 2], [2, 2]),
            out=t(2, 4, 4, 4),
            vector=2 * 4 * 4 * 4 * (4 - 1),
        ),
        "quantized_max_pool2d": lambda: Call(
            aten.quantized_max_pool2d.default,
            (t(*X), [2, 2], [2, 2]),
            out=t(2, 4, 4, 4),
            vector=2 * 4 * 4 * 4 * (4 - 1),
        ),
        "avg_pool1d": lambda: Call(aten.avg_pool1d.default, (t(2, 4, 9), [3], [3]), vector=2 * 4 * 3 * 3),
        "avg_pool2d": lambda: Call(
            aten.avg_pool2d.default, (t(*X), [2, 2], [2, 2]), vector=2 * 4 * 4 * 4 * 4
        ),
        "avg_pool3d": lambda: Call(
            aten.avg_pool3d.default, (t(1, 2, 4, 4, 4), [2, 2, 2], [2, 2, 2]), vector=1 * 2 * 2 * 2 * 2 * 8
        ),
        # Adaptive 8 -> 3: windows [0, 3), [2, 6), [5, 8): 3 + 4 + 3 = 10 elements per dimension.
        "_adaptive_avg_pool2d": lambda: Call(
            aten._adaptive_avg_pool2d.default, (t(*X), [3, 3]), vector=2 * 4 * 10 * 10
        ),
        "_adaptive_avg_pool3d": lambda: Call(
            aten._adaptive_avg_pool3d.default, (t(1, 2, 8, 8, 8), [3, 3, 3]), vector=1 * 2 * 10 * 10 * 10
        ),
        "adaptive_max_pool1d": lambda: Call(
            aten.adaptive_max_pool1d.default, (t(2, 4, 8), [3]), vector=2 * 4 * 10 - 2 * 4 * 3
        ),
        "adaptive_max_pool2d": lambda: Call(
            aten.adaptive_max_pool2d.default, (t(*X), [3, 3]), vector=2 * 4 * 10 * 10 - 2 * 4 * 3 * 3
        ),
        "adaptive_max_pool3d": lambda: Call(
            aten.adaptive_max_pool3d.default,
            (t(1, 2, 8, 8, 8), [3, 3, 3]),
            vector=1 * 2 * 10 * 10 * 10 - 1 * 2 * 3 * 3 * 3,
        ),
        # -- interpolation: nearest 0; 2 * taps - 1 per output element ---------------------------------
        "upsample_nearest1d": lambda: Call(aten.upsample_nearest1d.default, (t(2, 4, 8), [16]), vector=0),
        "upsample_nearest2d": lambda: Call(aten.upsample_nearest2d.default, (t(*X), [16, 16]), vector=0),
        "upsample_nearest3d": lambda: Call(
            aten.upsample_nearest3d.default, (t(1, 2, 4, 4, 4), [8, 8, 8]), vector=0
        ),
        "_upsample_nearest_exact1d": lambda: Call(
            aten._upsample_nearest_exact1d.default, (t(2, 4, 8), [16]), vector=0
        ),
        "_upsample_nearest_exact2d": lambda: Call(
            aten._upsample_nearest_exact2d.default, (t(*X), [16, 16]), vector=0
        ),
        "_upsample_nearest_exact3d": lambda: Call(
            aten._upsample_nearest_exact3d.default, (t(1, 2, 4, 4, 4), [8, 8, 8]), vector=0
        ),
        "upsample_linear1d": lambda: Call(
            aten.upsample_linear1d.default, (t(2, 4, 8), [16], False), vector=3 * 2 * 4 * 16
        ),
        "upsample_bilinear2d": lambda: Call(
            aten.upsample_bilinear2d.default, (t(*X), [16, 16], False), vector=7 * 2 * 4 * 16 * 16
        ),
        "_upsample_bilinear2d_aa": lambda: Call(
            aten._upsample_bilinear2d_aa.default, (t(*X), [16, 16], False), vector=7 * 2 * 4 * 16 * 16
        ),
        "upsample_trilinear3d": lambda: Call(
            aten.upsample_trilinear3d.default,
            (t(1, 2, 4, 4, 4), [8, 8, 8], False),
            vector=15 * 1 * 2 * 8 * 8 * 8,
        ),
        "upsample_bicubic2d": lambda: Call(
            aten.upsample_bicubic2d.default, (t(*X), [16, 16], False), vector=31 * 2 * 4 * 16 * 16
        ),
        "_upsample_bicubic2d_aa": lambda: Call(
            aten._upsample_bicubic2d_aa.default, (t(*X), [16, 16], False), vector=31 * 2 * 4 * 16 * 16
        ),
        # -- elementwise with structure ----------------------------------------------------------------
        "clamp": lambda: Call(aten.clamp.default, (t(*X), 0.0, 6.0), vector=2 * N_X),
        "clamp_": lambda: Call(aten.clamp_.default, (t(*X),), {"max": 6.0}, vector=1 * N_X),
        "where": lambda: Call(aten.where.self, (t(*X, dtype=torch.bool), t(*X), t(*X)), vector=N_X),
        "masked_fill": lambda: Call(
            aten.masked_fill.Scalar, (t(*X), t(*X, dtype=torch.bool), 0.0), vector=N_X
        ),
        "masked_fill_": lambda: Call(
            aten.masked_fill_.Scalar, (t(*X), t(*X, dtype=torch.bool), 0.0), vector=N_X
        ),
        "add": lambda: Call(aten.add.Tensor, (t(*X), t(*X)), {"alpha": 2}, vector=2 * N_X),
        "sub": lambda: Call(aten.sub.Tensor, (t(*X), t(*X)), vector=1 * N_X),
        "lerp": lambda: Call(aten.lerp.Scalar, (t(*X), t(*X), 0.5), vector=3 * N_X),
        # -- reductions and softmax --------------------------------------------------------------------
        "_softmax": lambda: Call(aten._softmax.default, (t(*X), -1, False), vector=5 * N_X),
        "_log_softmax": lambda: Call(aten._log_softmax.default, (t(*X), -1, False), vector=5 * N_X),
        "_safe_softmax": lambda: Call(aten._safe_softmax.default, (t(*X), -1), vector=5 * N_X),
        "sum": lambda: Call(aten.sum.dim_IntList, (t(*X), [-1]), vector=N_X - 2 * 4 * 8),
        "mean": lambda: Call(aten.mean.dim, (t(*X), [-1, -2], True), vector=N_X),
        "max": lambda: Call(aten.max.dim, (t(*X), 1), vector=N_X - 2 * 8 * 8),
        "var": lambda: Call(aten.var.correction, (t(*X), [1]), vector=4 * N_X),
        "linalg_vector_norm": lambda: Call(aten.linalg_vector_norm.default, (t(*X),), vector=2 * N_X),
        # -- movement: 0 FLOPs -------------------------------------------------------------------------
        "index": lambda: Call(aten.index.Tensor, (t(*X), [idx(3)]), vector=0),
        "_unsafe_index": lambda: Call(aten._unsafe_index.Tensor, (t(*X), [idx(3)]), vector=0),
        "index_put": lambda: Call(aten.index_put.default, (t(*X), [idx(3)], t(3, 4, 8, 8)), vector=0),
        "index_put_": lambda: Call(aten.index_put_.default, (t(*X), [idx(3)], t(3, 4, 8, 8)), vector=0),
        "index_select": lambda: Call(aten.index_select.default, (t(*X), 1, idx(2)), vector=0),
        "gather": lambda: Call(aten.gather.default, (t(*X), 1, idx(*X)), vector=0),
        "scatter": lambda: Call(aten.scatter.value, (t(*X), 1, idx(*X), 1.0), vector=0),
        "scatter_": lambda: Call(aten.scatter_.src, (t(*X), 1, idx(*X), t(*X)), vector=0),
        "embedding": lambda: Call(aten.embedding.default, (t(10, 8), idx(2, 5)), vector=0),
        "masked_select": lambda: Call(
            aten.masked_select.default, (t(*X), t(*X, dtype=torch.bool)), out=t(100), vector=0
        ),
        "_copy_from": lambda: Call(aten._copy_from.default, (t(*X), t(*X)), out=t(*X), vector=0),
        "fill": lambda: Call(aten.fill.Scalar, (t(*X), 1.0), vector=0),
        "fill_": lambda: Call(aten.fill_.Scalar, (t(*X), 1.0), vector=0),
        "flip": lambda: Call(aten.flip.default, (t(*X), [-1]), vector=0),
        "roll": lambda: Call(aten.roll.default, (t(*X), [1], [-1]), vector=0),
        "repeat": lambda: Call(aten.repeat.default, (t(*X), [1, 1, 2, 2]), vector=0),
        "reflection_pad1d": lambda: Call(aten.reflection_pad1d.default, (t(2, 4, 8), [1, 1]), vector=0),
        "reflection_pad2d": lambda: Call(aten.reflection_pad2d.default, (t(*X), [1, 1, 1, 1]), vector=0),
        "reflection_pad3d": lambda: Call(
            aten.reflection_pad3d.default, (t(1, 2, 4, 4, 4), [1] * 6), vector=0
        ),
        "replication_pad1d": lambda: Call(aten.replication_pad1d.default, (t(2, 4, 8), [1, 1]), vector=0),
        "replication_pad2d": lambda: Call(aten.replication_pad2d.default, (t(*X), [1, 1, 1, 1]), vector=0),
        "replication_pad3d": lambda: Call(
            aten.replication_pad3d.default, (t(1, 2, 4, 4, 4), [1] * 6), vector=0
        ),
        "constant_pad_nd": lambda: Call(aten.constant_pad_nd.default, (t(*X), [1, 1, 1, 1]), vector=0),
        "cat": lambda: Call(aten.cat.default, ([t(*X), t(*X)], 1), vector=0),
        "stack": lambda: Call(aten.stack.default, ([t(*X), t(*X)], 1), vector=0),
        "pixel_shuffle": lambda: Call(aten.pixel_shuffle.default, (t(*X), 2), vector=0),
        "pixel_unshuffle": lambda: Call(aten.pixel_unshuffle.default, (t(*X), 2), vector=0),
        "channel_shuffle": lambda: Call(aten.channel_shuffle.default, (t(*X), 2), vector=0),
        "narrow_copy": lambda: Call(aten.narrow_copy.default, (t(*X), 1, 0, 2), vector=0),
        "select_scatter": lambda: Call(aten.select_scatter.default, (t(*X), t(2, 8, 8), 1, 0), vector=0),
        "slice_scatter": lambda: Call(aten.slice_scatter.default, (t(*X), t(2, 2, 8, 8), 1, 0, 2), vector=0),
        "select_backward": lambda: Call(
            aten.select_backward.default, (t(2, 8, 8), [2, 4, 8, 8], 1, 0), vector=0
        ),
        "slice_backward": lambda: Call(
            aten.slice_backward.default, (t(2, 2, 8, 8), [2, 4, 8, 8], 1, 0, 2, 1), vector=0
        ),
        "as_strided_scatter": lambda: Call(
            aten.as_strided_scatter.default, (t(*X), t(*X), list(X), [256, 64, 8, 1]), vector=0
        ),
        "tril": lambda: Call(aten.tril.default, (t(8, 8),), vector=0),
        "triu": lambda: Call(aten.triu.default, (t(8, 8),), vector=0),
        "zeros": lambda: Call(aten.zeros.default, ([2, 3],), {"device": "meta"}, vector=0),
        "ones": lambda: Call(aten.ones.default, ([2, 3],), {"device": "meta"}, vector=0),
        "full": lambda: Call(aten.full.default, ([2, 3], 1.0), {"device": "meta"}, vector=0),
        "arange": lambda: Call(aten.arange.default, (10,), {"device": "meta"}, vector=0),
        "scalar_tensor": lambda: Call(aten.scalar_tensor.default, (1.0,), {"device": "meta"}, vector=0),
        **_backward(),
    }


def _backward() -> dict[str, Callable[[], Call]]:
    """Backward ops, priced by the constants documented in layerprof.formulas.backward."""
    grad_pooled = (2, 4, 4, 4)  # the gradient of a 2x2, stride-2 pooling of X
    return {
        # Input and weight gradients each cost the forward's MACs (2 FLOPs each); the bias gradient sums
        # the output gradient. Forward MACs of a 3x3, 4 -> 6, groups 2 conv on X: 2 * 6 * 8*8 * 2 * 9.
        "convolution_backward": lambda: Call(
            aten.convolution_backward.default,
            (t(2, 6, 8, 8), t(*X), t(6, 2, 3, 3), [6], [1, 1], [1, 1], [1, 1], False, [0, 0], 2, [True] * 3),
            out=(t(*X), t(6, 2, 3, 3), t(6)),
            matrix=2 * (2 * 6 * 8 * 8 * 2 * 9) + 2 * (2 * 6 * 8 * 8 * 2 * 9),
            vector=2 * 6 * 8 * 8,
        ),
        "native_batch_norm_backward": lambda: Call(
            aten.native_batch_norm_backward.default,
            (t(*X), t(*X), t(4), t(4), t(4), t(4), t(4), True, 1e-5, [True, True, True]),
            out=(t(*X), t(4), t(4)),
            vector=9 * N_X,
        ),
        "batch_norm_backward": lambda: Call(
            aten.batch_norm_backward.default,
            (t(*X), t(*X), t(4), t(4), t(4), t(4), t(4), False, 1e-5, [True, True, True], t(0)),
            out=(t(*X), t(4), t(4)),
            vector=6 * N_X,  # not training: the inference constant
        ),
        "native_layer_norm_backward": lambda: Call(
            aten.native_layer_norm_backward.default,
            (t(2, 5, 8), t(2, 5, 8), [8], t(2, 5, 1), t(2, 5, 1), t(8), t(8), [True, True, True]),
            out=(t(2, 5, 8), t(8), t(8)),
            vector=9 * 2 * 5 * 8,
        ),
        "native_group_norm_backward": lambda: Call(
            aten.native_group_norm_backward.default,
            (t(*X), t(*X), t(2, 2), t(2, 2), t(4), 2, 4, 64, 2, [True, True, True]),
            out=(t(*X), t(4), t(4)),
            vector=9 * N_X,
        ),
        # Max pooling: one add per output-gradient element; average: K per output-gradient element.
        "max_pool2d_with_indices_backward": lambda: Call(
            aten.max_pool2d_with_indices_backward.default,
            (t(*grad_pooled), t(*X), [2, 2], [2, 2], [0, 0], [1, 1], False, idx(*grad_pooled)),
            out=t(*X),
            vector=2 * 4 * 4 * 4,
        ),
        "max_pool3d_with_indices_backward": lambda: Call(
            aten.max_pool3d_with_indices_backward.default,
            (t(1, 2, 2, 2, 2), t(1, 2, 4, 4, 4), [2] * 3, [2] * 3, [0] * 3, [1] * 3,
             False, idx(1, 2, 2, 2, 2)),
            out=t(1, 2, 4, 4, 4),
            vector=1 * 2 * 2 * 2 * 2,
        ),
        "avg_pool2d_backward": lambda: Call(
            aten.avg_pool2d_backward.default,
            (t(*grad_pooled), t(*X), [2, 2], [2, 2], [0, 0], False, True, None),
            out=t(*X),
            vector=2 * 4 * 4 * 4 * 4,
        ),
        "avg_pool3d_backward": lambda: Call(
            aten.avg_pool3d_backward.default,
            (t(1, 2, 2, 2, 2), t(1, 2, 4, 4, 4), [2] * 3, [2] * 3, [0] * 3, False, True, None),
            out=t(1, 2, 4, 4, 4),
            vector=1 * 2 * 2 * 2 * 2 * 8,
        ),
        # Interpolation: as much per output-gradient element as the forward per output element.
        "upsample_nearest1d_backward": lambda: Call(
            aten.upsample_nearest1d_backward.default, (t(2, 4, 16), [16], [2, 4, 8]), out=t(2, 4, 8),
            vector=2 * 4 * 16,  # one add per output-gradient element
        ),
        "upsample_nearest2d_backward": lambda: Call(
            aten.upsample_nearest2d_backward.default, (t(2, 4, 16, 16), [16, 16], list(X)), out=t(*X),
            vector=2 * 4 * 16 * 16,
        ),
        "upsample_nearest3d_backward": lambda: Call(
            aten.upsample_nearest3d_backward.default, (t(1, 2, 8, 8, 8), [8, 8, 8], [1, 2, 4, 4, 4]),
            out=t(1, 2, 4, 4, 4), vector=1 * 2 * 8 * 8 * 8,
        ),
        "upsample_linear1d_backward": lambda: Call(
            aten.upsample_linear1d_backward.default, (t(2, 4, 16), [16], [2, 4, 8], False), out=t(2, 4, 8),
            vector=3 * 2 * 4 * 16,
        ),
        "upsample_bilinear2d_backward": lambda: Call(
            aten.upsample_bilinear2d_backward.default, (t(2, 4, 16, 16), [16, 16], list(X), False), out=t(*X),
            vector=7 * 2 * 4 * 16 * 16,
        ),
        "upsample_trilinear3d_backward": lambda: Call(
            aten.upsample_trilinear3d_backward.default,
            (t(1, 2, 8, 8, 8), [8, 8, 8], [1, 2, 4, 4, 4], False), out=t(1, 2, 4, 4, 4),
            vector=15 * 1 * 2 * 8 * 8 * 8,
        ),
        "upsample_bicubic2d_backward": lambda: Call(
            aten.upsample_bicubic2d_backward.default, (t(2, 4, 16, 16), [16, 16], list(X), False), out=t(*X),
            vector=31 * 2 * 4 * 16 * 16,
        ),
        # Attention: four products (twice the forward's matrix FLOPs), softmax gradient (4) + scale (1).
        **{name: functools.partial(_sdpa_backward_call, name) for name in SDPA_BACKWARD},
    }  # fmt: skip


SDPA_FORWARD = (
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
    "_flash_attention_forward",
    "_efficient_attention_forward",
)
SDPA_BACKWARD = (
    "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_efficient_attention_backward",
    "_scaled_dot_product_cudnn_attention_backward",
)


def _sdpa_call(name: str) -> Call:
    # Q K^T and P V: 2*B*H*L*S*E + 2*B*H*L*S*Ev matrix; (1 scale + 5 softmax) per score, vector.
    return Call(
        getattr(aten, name).default,
        _sdpa_args(name),
        out=_sdpa_out(name),
        matrix=2 * B * H * L * S * E + 2 * B * H * L * S * EV,
        vector=(1 + 5) * B * H * L * S,
    )


def _sdpa_backward_call(name: str) -> Call:
    # Four products (twice the forward's matrix FLOPs); softmax gradient (4) and scale (1) per score.
    return Call(
        getattr(aten, name).default,
        (t(B, H, L, EV), *_sdpa_args("")),
        out=(t(B, H, L, E), t(B, H, S, E), t(B, H, S, EV)),
        matrix=2 * (2 * B * H * L * S * E + 2 * B * H * L * S * EV),
        vector=(4 + 1) * B * H * L * S,
    )


def _sdpa_args(name: str) -> tuple[Any, ...]:
    if name in ("_flash_attention_forward", "_efficient_attention_forward"):
        q, k, v = t(B, L, H, E), t(B, S, H, E), t(B, S, H, EV)  # sequence-first layout
    else:
        q, k, v = t(B, H, L, E), t(B, H, S, E), t(B, H, S, EV)
    return (q, k, v)


def _sdpa_out(name: str) -> tuple[torch.Tensor, ...]:
    if name in ("_flash_attention_forward", "_efficient_attention_forward"):
        return (t(B, L, H, EV), t(B, H, L))
    return (t(B, H, L, EV), t(B, H, L))


STRUCTURED = _structured()

_PREFERRED_OVERLOADS = ("default", "Tensor", "self", "input", "int", "dim", "Scalar")


def _packets() -> dict[OpOverloadPacket, list[OpOverload]]:
    packets: dict[OpOverloadPacket, list[OpOverload]] = defaultdict(list)
    for op in FORMULAS:
        packets[op.overloadpacket].append(op)
    return dict(sorted(packets.items(), key=lambda item: item[0].__name__))


PACKETS = _packets()


def _pick(ops: list[OpOverload]) -> OpOverload:
    functional = [op for op in ops if not any(a.is_out for a in op._schema.arguments)] or ops
    by_name = {op._overloadname: op for op in functional}
    for name in _PREFERRED_OVERLOADS:
        if name in by_name:
            return by_name[name]
    return functional[0]


def _schema_call(op: OpOverload) -> Call:
    """Arguments from the schema for elementwise-shaped ops: every tensor is the same NCHW activation."""
    args: list[Any] = []
    for argument in op._schema.arguments:
        if argument.kwarg_only or argument.has_default_value():
            break
        kind = str(argument.type)
        if kind.startswith(("Tensor", "Optional[Tensor]")):
            args.append(t(*X))
        elif kind in ("int", "SymInt"):
            args.append(1)
        elif kind in ("float", "Scalar", "number"):
            args.append(1.0)
        elif kind == "bool":
            args.append(False)
        elif "int" in kind.lower():
            args.append([1])
        else:
            args.append(None)
    return Call(op, tuple(args))


def representative(packet: OpOverloadPacket) -> Call:
    maker = STRUCTURED.get(packet.__name__)
    return maker() if maker is not None else _schema_call(_pick(PACKETS[packet]))


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out  # type: ignore[no-any-return]


@pytest.mark.parametrize("packet", list(PACKETS), ids=[p.__name__ for p in PACKETS])
def test_every_registered_formula_prices_a_representative_call(packet: OpOverloadPacket) -> None:
    call = representative(packet)
    assert call.op in FORMULAS, (
        f"{call.op} is not registered (the representative call picked a wrong overload)"
    )
    out = call.out if call.out is not None else call.op(*call.args, **call.kwargs)
    cost = FORMULAS[call.op](call.args, dict(call.kwargs), out)

    assert isinstance(cost, OpFlops)
    assert isinstance(cost.matrix, int) and cost.matrix >= 0
    assert isinstance(cost.vector, int) and cost.vector >= 0
    if call.matrix is not None:
        assert cost.matrix == call.matrix
    else:
        assert cost.matrix == 0, "only the structured calls above are matrix work"
    if call.vector is not None:
        assert cost.vector == call.vector
    elif FORMULAS[call.op].__qualname__.startswith("per_element("):
        per_element = int(FORMULAS[call.op].__qualname__.removeprefix("per_element(").rstrip(")"))
        assert cost.vector == per_element * _first(out).numel()


def test_every_packet_with_a_formula_is_reached() -> None:
    # The parametrization above covers FORMULAS by packet; each structured call must name a real packet.
    names = {p.__name__ for p in PACKETS}
    assert set(STRUCTURED) <= names, sorted(set(STRUCTURED) - names)


def test_only_tensor_overloads_are_registered() -> None:
    # TorchScript overloads on scalars and lists (aten.add.int, aten.eq.str) return no tensor: a formula
    # reading shapes would crash on them, so none may be registered.
    scalar_only = [str(op) for op in FORMULAS if not any("Tensor" in str(r.type) for r in op._schema.returns)]
    assert scalar_only == []


# -- documented per-element constants, one op each -------------------------------------------------------

ACTIVATIONS = [
    # (op, FLOPs per element, as documented in layerprof.formulas.activation)
    pytest.param(aten.relu.default, 1, id="relu-1"),
    pytest.param(aten.relu_.default, 1, id="relu_-1"),
    pytest.param(aten.leaky_relu.default, 2, id="leaky_relu-2"),
    pytest.param(aten.hardtanh.default, 2, id="hardtanh-2"),
    pytest.param(aten.hardsigmoid.default, 4, id="hardsigmoid-4"),
    pytest.param(aten.hardswish.default, 5, id="hardswish-5"),
    pytest.param(aten.sigmoid.default, 4, id="sigmoid-4"),
    pytest.param(aten.silu.default, 5, id="silu-5"),
    pytest.param(aten.tanh.default, 1, id="tanh-1"),
    pytest.param(aten.elu.default, 4, id="elu-4"),
    pytest.param(aten.softplus.default, 3, id="softplus-3"),
    pytest.param(aten.mish.default, 5, id="mish-5"),
    pytest.param(aten.gelu.default, 5, id="gelu-5"),
    pytest.param(aten.exp.default, 1, id="exp-1"),
    pytest.param(aten.mul.Tensor, 1, id="mul-1"),
    pytest.param(aten.addcmul.default, 3, id="addcmul-3"),
]


@pytest.mark.parametrize(("op", "per_element"), ACTIVATIONS)
def test_per_element_constants(op: OpOverload, per_element: int) -> None:
    call = _schema_call(op)
    out = op(*call.args)
    assert FORMULAS[op](call.args, {}, out) == OpFlops(vector=per_element * N_X)


def test_gelu_tanh_costs_nine_per_element() -> None:
    x = t(*X)
    out = aten.gelu.default(x, approximate="tanh")
    assert FORMULAS[aten.gelu.default]((x,), {"approximate": "tanh"}, out).vector == 9 * N_X


# -- the registry itself ---------------------------------------------------------------------------------


def test_registry_refuses_a_duplicate_registration() -> None:
    registry = Registry()

    @registry.register(aten.mm.default)
    def first(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
        return OpFlops()

    with pytest.raises(ValueError, match=r"aten\.mm\.default already has a formula"):
        registry.register(aten.mm.default)(first)


def test_registry_refuses_a_packet_overlapping_a_registered_overload() -> None:
    registry = Registry()
    registry.add_all([aten.relu.default], lambda args, kwargs, out: OpFlops())
    with pytest.raises(ValueError, match="relu"):
        registry.add_all([aten.relu], lambda args, kwargs, out: OpFlops())


def test_frozen_registry_refuses_new_formulas() -> None:
    registry = Registry()
    registry.freeze()
    with pytest.raises(RuntimeError, match="frozen"):
        registry.add_all([aten.mm.default], lambda args, kwargs, out: OpFlops())


def test_formulas_mapping_is_read_only() -> None:
    with pytest.raises(TypeError):
        FORMULAS[aten.mm.default] = FORMULAS[aten.mm.default]  # type: ignore[index]


def test_builtin_formulas_cannot_be_registered_twice() -> None:
    from layerprof.formulas.registry import REGISTRY

    with pytest.raises(RuntimeError, match="frozen"):
        REGISTRY.register(aten.mm.default)(FORMULAS[aten.mm.default])


# -- conv_cost equals the counted row of one convolution layer -------------------------------------------


@dataclass(frozen=True)
class ConvSpec:
    rank: int
    kernel: int
    style: str  # plain, strided, dilated, grouped, depthwise, transposed
    bias: bool

    @property
    def id(self) -> str:
        return f"conv{self.rank}d-k{self.kernel}-{self.style}-{'bias' if self.bias else 'nobias'}"


CONV_GRID = [
    ConvSpec(rank, kernel, style, bias=(rank + kernel + i) % 2 == 0)
    for rank, kernel in itertools.product((1, 2, 3), (1, 3, 5, 7))
    for i, style in enumerate(("plain", "strided", "dilated", "grouped", "depthwise", "transposed"))
]
SPATIAL = {1: (23,), 2: (13, 11), 3: (9, 8, 7)}


def _conv_layer(spec: ConvSpec) -> tuple[nn.Module, dict[str, Any]]:
    in_channels, out_channels, groups, stride, dilation = 6, 12, 1, 1, 1
    if spec.style == "strided":
        stride = 2
    elif spec.style == "dilated":
        dilation = 2
    elif spec.style == "grouped":
        groups = 3
    elif spec.style == "depthwise":
        out_channels, groups = 6, 6
    padding = (spec.kernel // 2) * dilation
    options: dict[str, Any] = dict(
        in_channels=in_channels, out_channels=out_channels, kernel_size=spec.kernel, stride=stride,
        padding=padding, dilation=dilation, groups=groups, bias=spec.bias,
    )  # fmt: skip
    if spec.style == "transposed":
        options.update(stride=2, padding=spec.kernel // 2, output_padding=1)
        layer_class: type[nn.Module] = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}[
            spec.rank
        ]
    else:
        layer_class = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spec.rank]
    return layer_class(**options), options


@pytest.mark.parametrize("spec", CONV_GRID, ids=[s.id for s in CONV_GRID])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
def test_conv_cost_equals_the_counted_layer(spec: ConvSpec, dtype: torch.dtype) -> None:
    from models import Single

    layer, options = _conv_layer(spec)
    batch = 2
    report = layerprof.analyze(Single(layer), input_size=(batch, 6, *SPATIAL[spec.rank]), dtype=dtype)
    (row,) = report.layers
    cost = layerprof.conv_cost(
        options["in_channels"], options["out_channels"], SPATIAL[spec.rank], spec.kernel,
        stride=options["stride"], padding=options["padding"], dilation=options["dilation"],
        groups=options["groups"], batch=batch, dtype=dtype, bias=spec.bias,
        transposed=spec.style == "transposed", output_padding=options.get("output_padding", 0),
    )  # fmt: skip
    assert (cost.flops, cost.matrix_flops, cost.macs) == (row.flops, row.matrix_flops, row.macs)
    assert (cost.bytes_read, cost.bytes_written) == (row.bytes_read, row.bytes_written)
    assert cost.intensity == row.intensity
    assert cost.params == row.params
    assert cost.output_size == row.output_shapes[0][2:]
    assert cost.kernel_size == row.kernel_size == (spec.kernel,) * spec.rank


def test_conv_cost_by_hand() -> None:
    # ResNet's 3x3, 64 -> 64 convolution on 56 x 56, no bias.
    cost = layerprof.conv_cost(64, 64, (56, 56), 3, padding=1, bias=False)
    assert cost.matrix_flops == 2 * 1 * 64 * 56 * 56 * 64 * 3 * 3  # = 231_211_008
    assert cost.macs == 64 * 56 * 56 * 64 * 9
    assert cost.bytes_read == (64 * 56 * 56 + 64 * 64 * 9) * 4
    assert cost.bytes_written == 64 * 56 * 56 * 4
    assert cost.intensity == cost.flops / (cost.bytes_read + cost.bytes_written)
