"""Data movement and free ops.

Movement ops (cat, stack, pad, copy, clone, contiguous, gather, index, repeat, pixel shuffle, ...)
do no arithmetic: 0 FLOPs, but the counter still charges every byte they read and write.

Free ops move nothing and cost nothing: views (any op whose schema returns an alias of an input),
metadata-only in-place views (``as_strided_``, ``squeeze_``, ...), ``.item()``, and allocations
whose memory is not written (``empty``). :data:`WRITE_ONLY_DESTINATION` maps the ops that
overwrite an argument without reading it (``copy_``, ``fill_``, ``zero_``: the first; ``_copy_from``:
the second) to that argument's position.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch._ops import OpOverload

from layerprof.formulas.registry import OpFlops, overload_names, register

aten = torch.ops.aten


@register(
    aten.cat, aten.stack, aten.constant_pad_nd, aten.reflection_pad1d, aten.reflection_pad2d,
    aten.reflection_pad3d, aten.replication_pad1d, aten.replication_pad2d, aten.replication_pad3d,
    aten.copy, aten.copy_, aten._copy_from, aten.clone, aten._to_copy, aten.narrow_copy,
    aten.index_select, aten.gather, aten.index, aten._unsafe_index, aten.flip, aten.roll, aten.repeat,
    aten.pixel_shuffle, aten.pixel_unshuffle, aten.channel_shuffle, aten.embedding, aten.masked_select,
    aten.fill, aten.fill_, aten.zero_, aten.zeros_like, aten.ones_like, aten.full_like, aten.zeros,
    aten.ones, aten.full, aten.scalar_tensor, aten.new_zeros, aten.new_ones, aten.new_full,
    aten.arange, aten.tril, aten.triu, aten.slice_scatter, aten.select_scatter, aten.index_put,
    aten.index_put_, aten.scatter, aten.scatter_, aten.lift_fresh_copy, aten.select_backward,
    aten.slice_backward, aten.as_strided_scatter,
)  # fmt: skip
def movement(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops()


FREE_OPS: frozenset[OpOverload] = frozenset(
    getattr(packet, overload)
    for packet in (
        aten.empty,
        aten.empty_like,
        aten.empty_strided,
        aten.new_empty,
        aten.new_empty_strided,
        aten._unsafe_view,
        aten.lift_fresh,
        aten._reshape_alias,
        aten.resize_,
        aten.set_,
        aten._local_scalar_dense,  # .item(): one element to the host
        aten.item,  # the same, as inference_mode dispatches it (undecomposed)
    )
    for overload in overload_names(packet)
)

WRITE_ONLY_DESTINATION: Mapping[OpOverload, int] = MappingProxyType(
    {
        getattr(packet, overload): position
        for packet, position in ((aten.copy_, 0), (aten.fill_, 0), (aten.zero_, 0), (aten._copy_from, 1))
        for overload in overload_names(packet)
    }
)


def is_free(op: OpOverload) -> bool:
    """True for ops that neither compute nor move data: views and bare allocations."""
    if op in FREE_OPS or torch.Tag.inplace_view in op.tags:
        return True
    return any(ret.alias_info is not None and not ret.alias_info.is_write for ret in op._schema.returns)
