"""Cheaper meta kernels for shape-preserving ops, so that counting on meta costs less than a meta forward.

PyTorch's meta kernels for batch norm and several activations are Python decompositions that cost
up to 2 ms per call (more than the rest of a ResNet-50's meta forward together). Their output shapes
need no computation: an in-place op returns its input, an elementwise activation returns a tensor
like its input, batch norm returns a tensor like its input plus per-channel statistics. Counting only
reads shapes and dtypes, so the counts are the same; tests compare every row with and without this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch._ops import OpOverload

from layerprof.formulas.registry import overload_names

aten = torch.ops.aten

FastKernel = Callable[[tuple[Any, ...], Mapping[str, Any]], Any]

_UNARY = (
    "relu", "hardswish", "hardsigmoid", "silu", "sigmoid", "tanh", "gelu", "hardtanh", "leaky_relu",
    "elu", "mish", "threshold", "celu", "selu",
)  # fmt: skip


def _same_as_input(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    return args[0]


def _like_input(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    return torch.empty_like(args[0])


def _batch_norm(training_index: int | None) -> FastKernel:
    """``training_index``: where the op's ``training`` flag is; None for the inference-only variant."""

    def kernel(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
        x = args[0]
        training = training_index is not None and bool(args[training_index])
        # The saved statistics are per channel in training and placeholders in inference; low
        # precision inputs keep them in float32, as the real kernels do.
        stats_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
        stats = torch.empty((x.shape[1] if training else 0,), dtype=stats_dtype, device=x.device)
        return torch.empty_like(x), stats, torch.empty_like(stats)

    return kernel


def _build() -> dict[OpOverload, FastKernel]:
    table: dict[OpOverload, FastKernel] = {}
    for name in _UNARY:
        table[getattr(aten, name).default] = _like_input
        inplace = getattr(aten, name + "_", None)
        if inplace is not None and "default" in overload_names(inplace):
            table[inplace.default] = _same_as_input
    table[aten.native_batch_norm.default] = _batch_norm(5)
    table[aten._native_batch_norm_legit.default] = _batch_norm(5)
    table[aten._native_batch_norm_legit_no_training.default] = _batch_norm(None)
    return table


FAST_META: Mapping[OpOverload, FastKernel] = _build()


def fast_meta_kernel(func: OpOverload, args: tuple[Any, ...]) -> FastKernel | None:
    """The cheap kernel for ``func`` when its first argument is a meta tensor with a plain layout."""
    kernel = FAST_META.get(func)
    if kernel is None:
        return None
    first = args[0] if args else None
    if not isinstance(first, torch.Tensor) or not first.is_meta:
        return None
    return kernel
