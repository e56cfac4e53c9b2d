"""The formula registry, tested through itself: every registered formula gets a call with a known answer.

The cases are read off :data:`layerprof.formulas.FORMULAS`: one per op packet, or one per distinct
formula where a packet's overloads have different ones (``max.dim`` and ``max.default``). Each case
runs its op on meta tensors (shapes only) and feeds the output to the formula exactly as the counter
would; ops with no meta kernel (cuDNN, MKLDNN, quantized) get a hand-made output of the right shape.

The expected :class:`OpFlops` of every case is written here, as arithmetic on the concrete shapes of
the call, from the constants each formula module's docstring documents: never read back from the
formula's own constants, helpers or name. A registered formula with no expected value fails
:func:`test_every_registered_formula_matches_its_documented_cost`, so a new formula cannot go untested.
"""

from __future__ import annotations

import functools
import itertools
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

import pytest
import torch
from torch import nn
from torch._ops import OpOverload, OpOverloadPacket

import layerprof
from formula_cases_more import more_structured
from layerprof.formulas import FORMULAS, Formula, OpFlops
from layerprof.formulas.registry import Registry

aten = torch.ops.aten


def t(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def idx(*shape: int) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.int64, device="meta")


@dataclass(frozen=True)
class Call:
    """A call of one overload and the cost it must get; ``out`` only for ops that cannot run on meta."""

    op: OpOverload
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    _: KW_ONLY
    out: Any = None
    vector: int  # every call states its vector FLOPs, 0 included
    matrix: int = 0
    kernel_size: tuple[int, ...] | None = None
    written_outputs: int | None = None
    written_args: tuple[int, ...] = ()

    @property
    def expected(self) -> OpFlops:
        return OpFlops(
            matrix=self.matrix,
            vector=self.vector,
            kernel_size=self.kernel_size,
            written_outputs=self.written_outputs,
            written_args=self.written_args,
        )


# Shapes shared by the structured calls below.
B, H, L, S, E, EV = 2, 3, 5, 7, 8, 6  # attention: batch, heads, query len, key len, head dim, value dim
X = (2, 4, 8, 8)  # an NCHW activation
N_X = 2 * 4 * 8 * 8  # its element count: 512
RUNNING_STATS = (3, 4)  # batch norm in training updates running_mean and running_var, arguments 3 and 4


def _structured() -> dict[str, Callable[[], Call]]:
    """Calls for ops whose arguments need structure (2-D matrices, index tensors, kernel sizes)."""
    return {
        # -- matrix products: 2 * M * N * K ----------------------------------------------------------
        "mm": lambda: Call(aten.mm.default, (t(5, 8), t(8, 6)), matrix=2 * 5 * 6 * 8, vector=0),
        "addmm": lambda: Call(
            aten.addmm.default, (t(6), t(5, 8), t(8, 6)), matrix=2 * 5 * 6 * 8, vector=5 * 6
        ),
        "_addmm_activation": lambda: Call(
            aten._addmm_activation.default, (t(6), t(5, 8), t(8, 6)), matrix=2 * 5 * 6 * 8, vector=2 * 5 * 6
        ),
        "bmm": lambda: Call(aten.bmm.default, (t(3, 5, 8), t(3, 8, 6)), matrix=2 * 3 * 5 * 6 * 8, vector=0),
        "baddbmm": lambda: Call(
            aten.baddbmm.default,
            (t(3, 5, 6), t(3, 5, 8), t(3, 8, 6)),
            matrix=2 * 3 * 5 * 6 * 8,
            vector=3 * 5 * 6,
        ),
        "mv": lambda: Call(aten.mv.default, (t(5, 8), t(8)), matrix=2 * 5 * 8, vector=0),
        "dot": lambda: Call(aten.dot.default, (t(8), t(8)), matrix=2 * 8, vector=0),
        "vdot": lambda: Call(aten.vdot.default, (t(8), t(8)), matrix=2 * 8, vector=0),
        # -- convolution: 2 * N * Cout * prod(out) * Cin/g * prod(k); bias N * Cout * prod(out) -----------
        "convolution": lambda: Call(
            aten.convolution.default,
            (t(2, 4, 8, 8), t(6, 2, 3, 3), t(6), [1, 1], [1, 1], [1, 1], False, [0, 0], 2),
            matrix=2 * 2 * 6 * 8 * 8 * 2 * 9,
            vector=2 * 6 * 8 * 8,
            kernel_size=(3, 3),
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
            vector=0,  # no bias
            kernel_size=(2, 2),
        ),
        "convolution_overrideable": lambda: Call(
            aten.convolution_overrideable.default,
            (t(1, 4, 8, 8), t(6, 4, 3, 3), None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1),
            out=t(1, 6, 6, 6),
            matrix=2 * 1 * 6 * 6 * 6 * 4 * 9,
            vector=0,  # no bias
            kernel_size=(3, 3),
        ),
        "cudnn_convolution": lambda: Call(
            aten.cudnn_convolution.default,
            (t(1, 4, 8, 8), t(6, 4, 3, 3), [0, 0], [1, 1], [1, 1], 1, False, False, True),
            out=t(1, 6, 6, 6),
            matrix=2 * 1 * 6 * 6 * 6 * 4 * 9,
            vector=0,  # no bias
            kernel_size=(3, 3),
        ),
        "cudnn_convolution_transpose": lambda: Call(
            aten.cudnn_convolution_transpose.default,
            (t(1, 4, 5, 5), t(4, 3, 2, 2), [0, 0], [0, 0], [2, 2], [1, 1], 1, False, False, True),
            out=t(1, 3, 10, 10),
            matrix=2 * 1 * 3 * 5 * 5 * 4 * 4,
            vector=0,  # cudnn_convolution_transpose takes no bias
            kernel_size=(2, 2),
        ),
        "mkldnn_convolution": lambda: Call(
            aten.mkldnn_convolution.default,
            (t(1, 4, 8, 8), t(6, 4, 3, 3), t(6), [0, 0], [1, 1], [1, 1], 1),
            out=t(1, 6, 6, 6),
            matrix=2 * 1 * 6 * 6 * 6 * 4 * 9,
            vector=1 * 6 * 6 * 6,
            kernel_size=(3, 3),
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
            aten.native_batch_norm.default,
            (t(*X), t(4), t(4), t(4), t(4), True, 0.1, 1e-5),
            vector=7 * N_X,
            written_args=RUNNING_STATS,
        ),
        "_native_batch_norm_legit.default": lambda: Call(
            aten._native_batch_norm_legit.default,
            (t(*X), t(4), t(4), t(4), t(4), False, 0.1, 1e-5),
            vector=2 * N_X,  # inference: folded into one scale and one shift
            written_outputs=1,  # the saved statistics are placeholders
        ),
        "_native_batch_norm_legit.no_stats": lambda: Call(
            aten._native_batch_norm_legit.no_stats,
            (t(*X), t(4), t(4), True, 0.1, 1e-5),
            vector=(3 + 2 + 2) * N_X,  # no running statistics: always computes its own, nothing else written
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
            written_outputs=1,
        ),
        "cudnn_batch_norm": lambda: Call(
            aten.cudnn_batch_norm.default,
            (t(*X), t(4), t(4), t(4), t(4), False, 0.1, 1e-5),
            out=(t(*X), t(0), t(0), t(0, dtype=torch.uint8)),
            vector=2 * N_X,
            written_outputs=1,
        ),
        "miopen_batch_norm": lambda: Call(
            aten.miopen_batch_norm.default,
            (t(*X), t(4), t(4), t(4), t(4), True, 0.1, 1e-5),
            out=(t(*X), t(4), t(4)),
            vector=7 * N_X,
            written_args=RUNNING_STATS,
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
            vector=(3 + 1) * 2 * 5 * 8 + 2 * 2 * 5,  # and eps add + rsqrt per normalized row
        ),
        "native_dropout": lambda: Call(aten.native_dropout.default, (t(*X), 0.5, True), vector=3 * N_X),
        # -- pooling: K - 1 per max window, K per average window; the kernel is reported --------------
        "max_pool1d": lambda: Call(
            aten.max_pool1d.default, (t(2, 4, 9), [3], [3]), vector=2 * 4 * 3 * (3 - 1), kernel_size=(3,)
        ),
        "max_pool1d_with_indices": lambda: Call(
            aten.max_pool1d_with_indices.default,
            (t(2, 4, 9), [3], [3]),
            vector=2 * 4 * 3 * (3 - 1),
            kernel_size=(3,),
        ),
        "max_pool2d": lambda: Call(
            aten.max_pool2d.default,
            (t(*X), [2, 2], [2, 2]),
            vector=2 * 4 * 4 * 4 * (4 - 1),
            kernel_size=(2, 2),
        ),
        "max_pool2d_with_indices": lambda: Call(
            aten.max_pool2d_with_indices.default,
            (t(*X), 2, 2),  # an int kernel stands for a square one
            vector=2 * 4 * 4 * 4 * (4 - 1),
            kernel_size=(2, 2),
        ),
        "max_pool3d": lambda: Call(
            aten.max_pool3d.default,
            (t(1, 2, 4, 4, 4), [2, 2, 2], [2, 2, 2]),
            vector=1 * 2 * 2 * 2 * 2 * (8 - 1),
            kernel_size=(2, 2, 2),
        ),
        "max_pool3d_with_indices": lambda: Call(
            aten.max_pool3d_with_indices.default,
            (t(1, 2, 4, 4, 4), [2], [2]),  # a one-element list stands for a cube
            vector=1 * 2 * 2 * 2 * 2 * (8 - 1),
            kernel_size=(2, 2, 2),
        ),
        "mkldnn_max_pool2d": lambda: Call(
            aten.mkldnn_max_pool2d.default,
            (t(*X), [2, 2], [2, 2]),
            out=t(2, 4, 4, 4),
            vector=2 * 4 * 4 * 4 * (4 - 1),
            kernel_size=(2, 2),
        ),
        "quantized_max_pool2d": lambda: Call(
            aten.quantized_max_pool2d.default,
            (t(*X), [2, 2], [2, 2]),
            out=t(2, 4, 4, 4),
            vector=2 * 4 * 4 * 4 * (4 - 1),
            kernel_size=(2, 2),
        ),
        "avg_pool1d": lambda: Call(
            aten.avg_pool1d.default, (t(2, 4, 9), [3], [3]), vector=2 * 4 * 3 * 3, kernel_size=(3,)
        ),
        "avg_pool2d": lambda: Call(
            aten.avg_pool2d.default,
            (t(*X), [2, 4], [2, 4]),
            vector=2 * 4 * 4 * 2 * (2 * 4),
            kernel_size=(2, 4),
        ),
        "avg_pool3d": lambda: Call(
            aten.avg_pool3d.default,
            (t(1, 2, 4, 4, 4), [2, 2, 2], [2, 2, 2]),
            vector=1 * 2 * 2 * 2 * 2 * 8,
            kernel_size=(2, 2, 2),
        ),
        # Adaptive 8 -> 3: windows [0, 3), [2, 6), [5, 8): 3 + 4 + 3 = 10 elements per dimension. The
        # kernel reported is the largest window, 4 wide.
        "_adaptive_avg_pool2d": lambda: Call(
            aten._adaptive_avg_pool2d.default, (t(*X), [3, 3]), vector=2 * 4 * 10 * 10, kernel_size=(4, 4)
        ),
        "_adaptive_avg_pool3d": lambda: Call(
            aten._adaptive_avg_pool3d.default,
            (t(1, 2, 8, 8, 8), [3, 3, 3]),
            vector=1 * 2 * 10 * 10 * 10,
            kernel_size=(4, 4, 4),
        ),
        "adaptive_max_pool1d": lambda: Call(
            aten.adaptive_max_pool1d.default,
            (t(2, 4, 8), [3]),
            vector=2 * 4 * 10 - 2 * 4 * 3,
            kernel_size=(4,),
        ),
        # 8 -> 3 rows (10 elements) by 8 -> 2 columns (windows [0, 4), [4, 8): 8 elements); the kernel
        # reported is the largest window each way: (4, 4).
        "adaptive_max_pool2d": lambda: Call(
            aten.adaptive_max_pool2d.default,
            (t(*X), [3, 2]),
            vector=2 * 4 * 10 * 8 - 2 * 4 * 3 * 2,
            kernel_size=(4, 4),
        ),
        "adaptive_max_pool3d": lambda: Call(
            aten.adaptive_max_pool3d.default,
            (t(1, 2, 8, 8, 8), [3, 3, 3]),
            vector=1 * 2 * 10 * 10 * 10 - 1 * 2 * 3 * 3 * 3,
            kernel_size=(4, 4, 4),
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
        # -- elementwise with structure: 1 per output element, 2 for add/sub with alpha != 1 and for clamp
        # with both bounds, 3 for lerp; gelu 5 (exact erf form) --------------------------------------
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
        # Broadcast (2, 4, 1, 1) into X: the output's 512 elements count, not the 8 of the second input.
        "add_": lambda: Call(aten.add_.Tensor, (t(*X), t(2, 4, 1, 1)), vector=1 * N_X),
        "sub": lambda: Call(aten.sub.Tensor, (t(*X), t(*X)), vector=1 * N_X),
        "sub_": lambda: Call(aten.sub_.Tensor, (t(*X), t(*X)), {"alpha": 0.5}, vector=2 * N_X),
        "lerp": lambda: Call(aten.lerp.Scalar, (t(*X), t(*X), 0.5), vector=3 * N_X),
        "gelu": lambda: Call(aten.gelu.default, (t(*X),), vector=5 * N_X),
        "gelu_": lambda: Call(aten.gelu_.default, (t(*X),), {"approximate": "none"}, vector=5 * N_X),
        # -- softmax 5 per element; a reduction of n inputs to m outputs n - m; mean n; var/std 4 n;
        # vector norm 2 n. X has n = 512. ---------------------------------------------------------------
        "_softmax": lambda: Call(aten._softmax.default, (t(*X), -1, False), vector=5 * N_X),
        "_log_softmax": lambda: Call(aten._log_softmax.default, (t(*X), -1, False), vector=5 * N_X),
        "_safe_softmax": lambda: Call(aten._safe_softmax.default, (t(*X), -1), vector=5 * N_X),
        "sum": lambda: Call(aten.sum.dim_IntList, (t(*X), [-1]), vector=N_X - 2 * 4 * 8),  # 512 - 64
        "mean": lambda: Call(aten.mean.dim, (t(*X), [-1, -2], True), vector=N_X),
        "max.dim": lambda: Call(aten.max.dim, (t(*X), 1), vector=N_X - 2 * 8 * 8),  # 512 - 128
        "max.default": lambda: Call(aten.max.default, (t(*X),), vector=N_X - 1),  # to one element
        "min.dim": lambda: Call(aten.min.dim, (t(*X), 2, True), vector=N_X - 2 * 4 * 8),  # 512 - 64
        "min.default": lambda: Call(aten.min.default, (t(*X),), vector=N_X - 1),
        "amax": lambda: Call(aten.amax.default, (t(*X), [1]), vector=N_X - 2 * 8 * 8),  # 512 - 128
        "amin": lambda: Call(aten.amin.default, (t(*X), [2, 3]), vector=N_X - 2 * 4),  # 512 - 8
        "argmax": lambda: Call(aten.argmax.default, (t(*X), 3), vector=N_X - 2 * 4 * 8),  # 512 - 64
        "argmin": lambda: Call(aten.argmin.default, (t(*X),), vector=N_X - 1),  # dim=None: all of it
        "prod": lambda: Call(aten.prod.dim_int, (t(*X), 0), vector=N_X - 4 * 8 * 8),  # 512 - 256
        "var": lambda: Call(aten.var.correction, (t(*X), [1]), vector=4 * N_X),
        "std": lambda: Call(aten.std.correction, (t(*X), [1]), vector=4 * N_X),
        "var_mean": lambda: Call(aten.var_mean.correction, (t(*X), [0]), vector=4 * N_X),
        "std_mean": lambda: Call(aten.std_mean.correction, (t(*X), [2, 3]), vector=4 * N_X),
        "linalg_vector_norm": lambda: Call(aten.linalg_vector_norm.default, (t(*X),), vector=2 * N_X),
        "norm": lambda: Call(aten.norm.ScalarOpt_dim, (t(*X), 2, [1]), vector=2 * N_X),
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
            kernel_size=(3, 3),
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
        # cuDNN's and MIOpen's batch norm backward: (input, grad_output, weight, running_mean, running_var,
        # save_mean, save_var, eps, ...) have no training flag: they run in training, 9 per input element.
        "cudnn_batch_norm_backward": lambda: Call(
            aten.cudnn_batch_norm_backward.default,
            (t(*X), t(*X), t(4), t(4), t(4), t(4), t(4), 1e-5, t(0, dtype=torch.uint8)),
            out=(t(*X), t(4), t(4)),
            vector=9 * N_X,  # 9 * 512 = 4608
        ),
        "miopen_batch_norm_backward": lambda: Call(
            aten.miopen_batch_norm_backward.default,
            (t(*X), t(*X), t(4), t(4), t(4), t(4), t(4), 1e-5),
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
            kernel_size=(2, 2),
        ),
        "avg_pool3d_backward": lambda: Call(
            aten.avg_pool3d_backward.default,
            (t(1, 2, 2, 2, 2), t(1, 2, 4, 4, 4), [2], [2], [0], False, True, None),  # [2]: a 2x2x2 cube
            out=t(1, 2, 4, 4, 4),
            vector=1 * 2 * 2 * 2 * 2 * 8,
            kernel_size=(2, 2, 2),
        ),
        # Adaptive max pooling: one add per output-gradient element, through the saved indices.
        "adaptive_max_pool2d_backward": lambda: Call(
            aten.adaptive_max_pool2d_backward.default,
            (t(2, 4, 3, 3), t(*X), idx(2, 4, 3, 3)),  # X pooled to 3 x 3
            out=t(*X),
            vector=2 * 4 * 3 * 3,  # 72, not X's 512
        ),
        "adaptive_max_pool3d_backward": lambda: Call(
            aten.adaptive_max_pool3d_backward.default,
            (t(1, 2, 3, 3, 3), t(1, 2, 8, 8, 8), idx(1, 2, 3, 3, 3)),
            out=t(1, 2, 8, 8, 8),
            vector=1 * 2 * 3 * 3 * 3,
        ),
        # Adaptive average pooling: each output-gradient element spread over its window, the windows'
        # exact sizes summed. 8 -> 3: windows [0, 3), [2, 6), [5, 8): 10 elements per dimension;
        # 8 -> 2: [0, 4), [4, 8): 8 elements.
        "_adaptive_avg_pool2d_backward": lambda: Call(
            aten._adaptive_avg_pool2d_backward.default,
            (t(2, 4, 3, 2), t(*X)),
            out=t(*X),
            vector=2 * 4 * 10 * 8,  # 640
        ),
        "_adaptive_avg_pool3d_backward": lambda: Call(
            aten._adaptive_avg_pool3d_backward.default,
            (t(1, 2, 3, 3, 3), t(1, 2, 8, 8, 8)),
            out=t(1, 2, 8, 8, 8),
            vector=1 * 2 * 10 * 10 * 10,  # 2000
        ),
        # Embedding: each output-gradient element is added into its weight row (not documented in
        # layerprof.formulas.backward; the scatter formula's one add per gradient element).
        "embedding_dense_backward": lambda: Call(
            aten.embedding_dense_backward.default,
            (t(2, 5, 8), idx(2, 5), 12, -1, False),
            vector=2 * 5 * 8,  # 80, not the 12 x 8 = 96 weight gradient
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


STRUCTURED = {**_structured(), **more_structured(Call, t)}  # more: tests/formula_cases_more.py


# Ops whose every tensor argument can be the activation X (N_X = 2 * 4 * 8 * 8 = 512 elements), called
# with the leading arguments their schema asks for (see _schema_call) and writing an X-shaped output:
# the FLOPs per output element each module's docstring documents. Expected: constant * 512.
PER_ELEMENT: dict[str, int] = {
    # layerprof.formulas.elementwise: binary ops, comparisons and unary math cost 1 per output element;
    # so does drawing a random number (bernoulli).
    **dict.fromkeys(
        (
            "abs", "abs_", "acos", "acos_", "asin", "asin_", "atan", "atan_", "atan2", "atan2_",
            "bernoulli", "bernoulli_", "bitwise_and", "bitwise_and_", "ceil", "ceil_", "clamp_max",
            "clamp_max_", "clamp_min", "clamp_min_", "copysign", "copysign_", "cos", "cos_", "cosh",
            "cosh_", "div", "div_", "eq", "eq_", "erf", "erf_", "erfc", "erfc_", "exp", "exp_", "exp2",
            "exp2_", "expm1", "expm1_", "floor", "floor_", "fmax", "fmin", "fmod", "fmod_", "frac",
            "frac_", "ge", "ge_", "gt", "gt_", "le", "le_", "log", "log_", "log10", "log10_", "log1p",
            "log1p_", "log2", "log2_", "logical_and", "logical_and_", "logical_not", "logical_not_",
            "logical_or", "logical_or_", "logit", "logit_", "lt", "lt_", "maximum", "minimum", "mul",
            "mul_", "nan_to_num", "nan_to_num_", "ne", "ne_", "neg", "neg_", "pow", "pow_",
            "reciprocal", "reciprocal_", "remainder", "remainder_", "round", "round_", "rsqrt",
            "rsqrt_", "rsub", "sgn", "sgn_", "sign", "sign_", "sin", "sin_", "sinh", "sinh_", "sqrt",
            "sqrt_", "square", "square_", "tan", "tan_", "trunc", "trunc_",
        ),
        1,
    ),
    # layerprof.formulas.elementwise: addcmul, addcdiv and lerp cost 3 (two multiplies or a divide, an add).
    **dict.fromkeys(("addcdiv", "addcdiv_", "addcmul", "addcmul_", "lerp_"), 3),
    # layerprof.formulas.activation's table.
    **dict.fromkeys(("relu", "relu_", "threshold", "threshold_", "tanh", "tanh_"), 1),
    **dict.fromkeys(("leaky_relu", "leaky_relu_", "hardtanh", "hardtanh_", "_prelu_kernel"), 2),
    "softplus": 3,
    **dict.fromkeys(("hardsigmoid", "hardsigmoid_", "sigmoid", "sigmoid_"), 4),
    **dict.fromkeys(("elu", "elu_", "celu", "celu_", "selu", "selu_"), 4),
    **dict.fromkeys(("hardswish", "hardswish_", "silu", "silu_", "mish", "mish_"), 5),
    # layerprof.formulas.backward's table, per element of the gradient.
    "threshold_backward": 1,
    **dict.fromkeys(("leaky_relu_backward", "hardtanh_backward", "hardsigmoid_backward"), 2),
    "native_dropout_backward": 2,
    **dict.fromkeys(("sigmoid_backward", "tanh_backward"), 3),
    **dict.fromkeys(("hardswish_backward", "elu_backward", "softplus_backward"), 4),
    **dict.fromkeys(("_softmax_backward_data", "_log_softmax_backward_data"), 4),
    "silu_backward": 7,
    "gelu_backward": 8,
    "mish_backward": 10,
    # layerprof.formulas.movement: copies and fills do no arithmetic.
    **dict.fromkeys(
        (
            "_to_copy", "clone", "copy", "copy_", "full_like", "lift_fresh_copy", "new_full", "new_ones",
            "new_zeros", "ones_like", "zero_", "zeros_like",
        ),
        0,
    ),
}  # fmt: skip

_PREFERRED_OVERLOADS = ("default", "Tensor", "self", "input", "int", "dim", "Scalar")


def _pick(ops: list[OpOverload]) -> OpOverload:
    functional = [op for op in ops if not any(a.is_out for a in op._schema.arguments)] or ops
    by_name = {op._overloadname: op for op in functional}
    for name in _PREFERRED_OVERLOADS:
        if name in by_name:
            return by_name[name]
    return functional[0]


@dataclass(frozen=True)
class Case:
    """One registered formula of one op packet, and the overload a schema-built call would use."""

    id: str
    packet: OpOverloadPacket
    formula: Formula
    overload: OpOverload


def _cases() -> list[Case]:
    by_packet: dict[OpOverloadPacket, dict[Formula, list[OpOverload]]] = defaultdict(dict)
    for op in FORMULAS:
        by_packet[op.overloadpacket].setdefault(FORMULAS[op], []).append(op)
    cases = []
    for packet, formulas in sorted(by_packet.items(), key=lambda item: item[0].__name__):
        for formula, ops in formulas.items():
            overload = _pick(ops)
            # A packet whose overloads have different formulas gets a case per formula.
            name = packet.__name__ if len(formulas) == 1 else f"{packet.__name__}.{overload._overloadname}"
            namespace = packet._qualified_op_name.partition("::")[0]
            name = name if namespace == "aten" else f"{namespace}.{name}"  # quantized.add beside aten.add
            cases.append(Case(name, packet, formula, overload))
    return cases


CASES = _cases()


def _schema_call(op: OpOverload, *, vector: int) -> Call:
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
    return Call(op, tuple(args), vector=vector)


def _expected_call(case: Case) -> Call:
    if case.id in STRUCTURED:
        return STRUCTURED[case.id]()
    if case.id in PER_ELEMENT:
        return _schema_call(case.overload, vector=PER_ELEMENT[case.id] * N_X)
    pytest.fail(
        f"{case.id} has a formula ({case.formula.__qualname__}) but no expected cost: add a call with its "
        "cost, worked out from the formula's docstring, to STRUCTURED or PER_ELEMENT in this file"
    )


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out  # type: ignore[no-any-return]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_every_registered_formula_matches_its_documented_cost(case: Case) -> None:
    call = _expected_call(case)
    assert call.op.overloadpacket is case.packet and FORMULAS.get(call.op) is case.formula, (
        f"the call for {case.id} runs {call.op}, which another formula prices"
    )
    out = call.out if call.out is not None else call.op(*call.args, **call.kwargs)
    if PER_ELEMENT.get(case.id):
        assert tuple(_first(out).shape) == X, "PER_ELEMENT's arithmetic assumes an X-shaped output"

    assert FORMULAS[call.op](call.args, dict(call.kwargs), out) == call.expected


def test_every_expected_cost_names_a_registered_formula() -> None:
    # A stale or misspelt entry would otherwise sit unused; a case in both tables would be ambiguous.
    ids = {case.id for case in CASES}
    assert set(STRUCTURED) <= ids, sorted(set(STRUCTURED) - ids)
    assert set(PER_ELEMENT) <= ids, sorted(set(PER_ELEMENT) - ids)
    assert not set(STRUCTURED) & set(PER_ELEMENT), sorted(set(STRUCTURED) & set(PER_ELEMENT))


def test_the_cases_cover_every_registered_overload() -> None:
    # Every overload in FORMULAS shares its packet and formula with exactly one case.
    covered = {(case.packet, case.formula) for case in CASES}
    assert all((op.overloadpacket, formula) in covered for op, formula in FORMULAS.items())
    assert len(covered) == len(CASES)


def test_only_tensor_overloads_are_registered() -> None:
    # TorchScript overloads on scalars and lists (aten.add.int, aten.eq.str) return no tensor: a formula
    # reading shapes would crash on them, so none may be registered.
    scalar_only = [str(op) for op in FORMULAS if not any("Tensor" in str(r.type) for r in op._schema.returns)]
    assert scalar_only == []


# -- per output element: the tensor written counts, not an input ----------------------------------------

OUT = (3, 5, 7)  # the broadcast output of the calls below: 3 * 5 * 7 = 105 elements
N_OUT = 3 * 5 * 7

PER_OUTPUT_ELEMENT = [
    # (op, argument shapes, extra kwargs, expected vector FLOPs); inputs read 21, 5 or 7 elements each.
    pytest.param(aten.relu.default, [OUT], {}, 1 * N_OUT, id="relu"),
    pytest.param(aten.leaky_relu.default, [OUT], {}, 2 * N_OUT, id="leaky_relu"),
    pytest.param(aten.sigmoid.default, [OUT], {}, 4 * N_OUT, id="sigmoid"),
    pytest.param(aten.gelu.default, [OUT], {}, 5 * N_OUT, id="gelu"),
    pytest.param(aten.exp.default, [OUT], {}, 1 * N_OUT, id="exp"),
    pytest.param(aten.mul.Tensor, [(3, 1, 7), (1, 5, 1)], {}, 1 * N_OUT, id="mul"),
    pytest.param(aten.div.Tensor, [(3, 1, 7), (1, 5, 1)], {}, 1 * N_OUT, id="div"),
    pytest.param(aten.maximum.default, [(3, 1, 7), (1, 5, 1)], {}, 1 * N_OUT, id="maximum"),
    pytest.param(aten.eq.Tensor, [(3, 1, 7), (1, 5, 1)], {}, 1 * N_OUT, id="eq"),
    pytest.param(aten.pow.Tensor_Tensor, [(3, 1, 7), (1, 5, 1)], {}, 1 * N_OUT, id="pow"),
    pytest.param(aten.atan2.default, [(3, 1, 7), (1, 5, 1)], {}, 1 * N_OUT, id="atan2"),
    pytest.param(aten.add.Tensor, [(1, 5, 1), (3, 1, 7)], {"alpha": 2}, 2 * N_OUT, id="add-alpha"),
    pytest.param(aten.sub.Tensor, [(1, 5, 1), (3, 1, 7)], {}, 1 * N_OUT, id="sub"),
    pytest.param(aten.addcmul.default, [(3, 1, 7), (1, 5, 1), (1, 1, 7)], {}, 3 * N_OUT, id="addcmul"),
    pytest.param(aten.addcdiv.default, [(3, 1, 7), (1, 5, 1), (1, 1, 7)], {}, 3 * N_OUT, id="addcdiv"),
    pytest.param(aten.lerp.Tensor, [(3, 1, 7), (1, 5, 1), (1, 1, 7)], {}, 3 * N_OUT, id="lerp"),
    pytest.param(aten.clamp.Tensor, [(3, 1, 7), (1, 5, 1), (1, 1, 7)], {}, 2 * N_OUT, id="clamp-both"),
]


@pytest.mark.parametrize(("op", "shapes", "kwargs", "vector"), PER_OUTPUT_ELEMENT)
def test_per_element_formulas_count_the_broadcast_output(
    op: OpOverload, shapes: list[tuple[int, ...]], kwargs: dict[str, Any], vector: int
) -> None:
    args = tuple(t(*shape) for shape in shapes)
    out = op(*args, **kwargs)
    assert tuple(out.shape) == OUT
    assert FORMULAS[op](args, kwargs, out) == OpFlops(vector=vector)


def test_adaptive_pooling_reports_its_largest_window() -> None:
    # 8 -> 3 has windows [0, 3), [2, 6), [5, 8): the largest is 4 wide (ceil(8 / 3) = 3 would be wrong)
    x = t(*X)
    out = aten._adaptive_avg_pool2d.default(x, [3, 3])
    assert FORMULAS[aten._adaptive_avg_pool2d.default]((x, [3, 3]), {}, out).kernel_size == (4, 4)


def test_gelu_tanh_costs_nine_per_element() -> None:
    x = t(*X)
    out = aten.gelu.default(x, approximate="tanh")
    assert FORMULAS[aten.gelu.default]((x,), {"approximate": "tanh"}, out) == OpFlops(vector=9 * N_X)


def test_add_alpha_given_positionally() -> None:
    # add.Scalar(self, other, alpha) takes alpha as its third positional argument: an add and a multiply.
    x = t(*X)
    args = (x, 2.0, 3)
    assert FORMULAS[aten.add.Scalar](args, {}, aten.add.Scalar(*args)) == OpFlops(vector=2 * N_X)


NORM_VARIANTS = [
    # Without a weight there is no affine step: 3 (statistics) + 2 (normalise) per element.
    pytest.param(
        aten.native_layer_norm.default, (t(2, 5, 8), [8], None, None, 1e-5), OpFlops(vector=5 * 2 * 5 * 8),
        id="layer_norm-no-affine",
    ),
    pytest.param(
        aten.native_group_norm.default, (t(*X), None, None, 2, 4, 64, 2, 1e-5), OpFlops(vector=5 * N_X),
        id="group_norm-no-affine",
    ),
    # RMS norm: mean of squares (2), multiply by 1/rms (1), and 1 more with a weight.
    pytest.param(
        aten._fused_rms_norm.default, (t(2, 5, 8), [8], None, 1e-5), OpFlops(vector=3 * 2 * 5 * 8 + 2 * 10),
        id="rms_norm-no-weight",
    ),
    # Batch norm in inference folds statistics and affine into one scale and shift: 2 per element, and
    # only the normalised output is written.
    pytest.param(
        aten.native_batch_norm.default, (t(*X), t(4), t(4), t(4), t(4), False, 0.1, 1e-5),
        OpFlops(vector=2 * N_X, written_outputs=1), id="batch_norm-inference",
    ),
    pytest.param(
        aten.native_batch_norm.default, (t(*X), None, None, t(4), t(4), True, 0.1, 1e-5),
        OpFlops(vector=5 * N_X, written_args=RUNNING_STATS), id="batch_norm-training-no-affine",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("op", "args", "expected"), NORM_VARIANTS)
def test_norm_variants(op: OpOverload, args: tuple[Any, ...], expected: OpFlops) -> None:
    out = aten._fused_rms_norm.default(*args) if op is aten._fused_rms_norm.default else op(*args)
    assert FORMULAS[op](args, {}, out) == expected


# Forward MACs of a 3x3, 4 -> 6, groups 2 convolution on X: N * C_out * H * W * C_in/g * k * k.
CONV_MACS = 2 * 6 * 8 * 8 * 2 * 3 * 3  # 13824


@pytest.mark.parametrize(
    ("mask", "matrix", "vector"),
    [
        pytest.param([True, False, False], 2 * CONV_MACS, 0, id="input-grad"),
        pytest.param([False, True, False], 2 * CONV_MACS, 0, id="weight-grad"),
        pytest.param([False, False, True], 0, 2 * 6 * 8 * 8, id="bias-grad"),
    ],
)
def test_convolution_backward_prices_only_the_requested_gradients(
    mask: list[bool], matrix: int, vector: int
) -> None:
    args = (t(2, 6, 8, 8), t(*X), t(6, 2, 3, 3), [6], [1, 1], [1, 1], [1, 1], False, [0, 0], 2, mask)
    out = (t(*X), t(6, 2, 3, 3), t(6))
    expected = OpFlops(matrix=matrix, vector=vector, kernel_size=(3, 3))
    assert FORMULAS[aten.convolution_backward.default](args, {}, out) == expected


def test_transposed_convolution_backward_uses_the_input_spatial_size() -> None:
    # conv_transpose2d 4 -> 3, 2x2 kernel, stride 2, on a 5x5 input (10x10 output). Forward MACs:
    # N * C_out * prod(input spatial) * C_in * k * k = 1 * 3 * 5 * 5 * 4 * 2 * 2 = 1200.
    args = (t(1, 3, 10, 10), t(1, 4, 5, 5), t(4, 3, 2, 2), [3], [2, 2], [0, 0], [1, 1], True, [0, 0], 1,
            [True, True, True])  # fmt: skip
    out = (t(1, 4, 5, 5), t(4, 3, 2, 2), t(3))
    expected = OpFlops(matrix=2 * 1200 + 2 * 1200, vector=1 * 3 * 10 * 10, kernel_size=(2, 2))
    assert FORMULAS[aten.convolution_backward.default](args, {}, out) == expected


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
    # conv_cost and the counter share one formula: check it against the docstring's arithmetic too.
    # 2 * N * C_out * prod(out spatial; the input's if transposed) * C_in / groups * k ** rank.
    out_spatial = row.output_shapes[0][2:]
    spatial = SPATIAL[spec.rank] if spec.style == "transposed" else out_spatial
    positions = 1
    for size in spatial:
        positions *= size
    per_position = (options["in_channels"] // options["groups"]) * spec.kernel**spec.rank
    assert row.matrix_flops == 2 * batch * options["out_channels"] * positions * per_position
    outputs = 1
    for size in out_spatial:
        outputs *= size
    assert row.flops - row.matrix_flops == (batch * options["out_channels"] * outputs if spec.bias else 0)


def test_conv_cost_by_hand() -> None:
    # ResNet's 3x3, 64 -> 64 convolution on 56 x 56, no bias.
    cost = layerprof.conv_cost(64, 64, (56, 56), 3, padding=1, bias=False)
    assert cost.matrix_flops == 2 * 1 * 64 * 56 * 56 * 64 * 3 * 3  # = 231_211_008
    assert cost.macs == 64 * 56 * 56 * 64 * 9
    assert cost.bytes_read == (64 * 56 * 56 + 64 * 64 * 9) * 4
    assert cost.bytes_written == 64 * 56 * 56 * 4
    assert cost.intensity == cost.flops / (cost.bytes_read + cost.bytes_written)
