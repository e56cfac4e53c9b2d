"""Pooling: max, average and adaptive, of rank 1 to 3 (vector FLOPs).

A window of ``K`` elements costs ``K - 1`` comparisons for a max and ``K`` FLOPs for an average
(``K - 1`` adds and one scale). Adaptive pooling's windows vary in size; their exact sizes are summed
(window ``i`` of ``out`` over ``size`` spans ``floor(i*size/out)`` to ``ceil((i+1)*size/out)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from layerprof.formulas.registry import OpFlops, first_output, numel, register

aten = torch.ops.aten


def _expand(value: Sequence[int] | int, rank: int) -> tuple[int, ...]:
    if isinstance(value, int):
        return (value,) * rank
    values = tuple(int(v) for v in value)
    return values * rank if len(values) == 1 else values


def max_pool_flops(outputs: int, kernel_size: Sequence[int]) -> int:
    return outputs * (numel(kernel_size) - 1)


def avg_pool_flops(outputs: int, kernel_size: Sequence[int]) -> int:
    return outputs * numel(kernel_size)


def adaptive_windows(in_size: int, out_size: int) -> list[int]:
    """The window lengths of adaptive pooling along one dimension: [floor(i*in/out), ceil((i+1)*in/out))."""
    return [-((-(i + 1) * in_size) // out_size) - (i * in_size) // out_size for i in range(out_size)]


def adaptive_window_elements(in_size: int, out_size: int) -> int:
    """Sum of the window lengths of adaptive pooling along one dimension."""
    return sum(adaptive_windows(in_size, out_size))


def _adaptive_elements(x: torch.Tensor, out: torch.Tensor, rank: int) -> tuple[int, tuple[int, ...]]:
    in_spatial = [int(s) for s in x.shape[-rank:]]
    out_spatial = [int(s) for s in out.shape[-rank:]]
    planes = numel(x.shape[:-rank])
    window_elements = planes
    for size_in, size_out in zip(in_spatial, out_spatial, strict=True):
        window_elements *= adaptive_window_elements(size_in, size_out)
    # The reported kernel is the largest window, the size a fixed pooling would need.
    kernel = tuple(
        max(adaptive_windows(i, o), default=0) for i, o in zip(in_spatial, out_spatial, strict=True)
    )
    return window_elements, kernel


def _pool(rank: int, is_max: bool) -> Any:
    def formula(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
        kernel = _expand(args[1], rank)
        outputs = int(first_output(out).numel())
        flops = max_pool_flops(outputs, kernel) if is_max else avg_pool_flops(outputs, kernel)
        return OpFlops(vector=flops, kernel_size=kernel)

    return formula


def _adaptive(rank: int, is_max: bool) -> Any:
    def formula(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
        result = first_output(out)
        elements, kernel = _adaptive_elements(args[0], result, rank)
        flops = elements - int(result.numel()) if is_max else elements
        return OpFlops(vector=flops, kernel_size=kernel)

    return formula


for _rank in (1, 2, 3):
    register(getattr(aten, f"max_pool{_rank}d_with_indices"))(_pool(_rank, True))
    register(getattr(aten, f"avg_pool{_rank}d"))(_pool(_rank, False))
    if _rank > 1:
        register(getattr(aten, f"_adaptive_avg_pool{_rank}d"))(_adaptive(_rank, False))
    register(getattr(aten, f"adaptive_max_pool{_rank}d"))(_adaptive(_rank, True))
    register(getattr(aten, f"max_pool{_rank}d"))(_pool(_rank, True))
register(aten.mkldnn_max_pool2d, aten.quantized_max_pool2d)(_pool(2, True))
