"""The peak memory of one real forward on a CUDA device, for the run and per leaf module.

``torch.cuda.max_memory_allocated`` is the caching allocator's own high-water mark of allocated
blocks (rounded to 512 bytes, what :mod:`layerprof.walk.memory`'s ``"cuda"`` rule predicts). A leaf
module's peak is read around its call: the mark is reset in its forward pre-hook and read in its
forward hook (the run's peak is the highest of every reading, so no reset loses it). The figures are
absolute: everything allocated on the device during that forward, the model's parameters and inputs
included, as the prediction counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from layerprof.core import rownames
from layerprof.walk.hooks import remove_all

__all__ = ["measure_cuda_peaks"]


def measure_cuda_peaks(
    twin: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any], device: torch.device
) -> tuple[int, dict[str, int]]:
    """``(run peak, leaf row name -> peak)`` of one forward of ``twin`` on the inputs, under ``no_grad``."""
    run_peak = 0
    rows: dict[str, int] = {}
    handles: list[RemovableHandle] = []

    def before(module: nn.Module, args: Any) -> None:
        nonlocal run_peak
        run_peak = max(run_peak, torch.cuda.max_memory_allocated(device))
        torch.cuda.reset_peak_memory_stats(device)

    def after(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            nonlocal run_peak
            peak = torch.cuda.max_memory_allocated(device)
            rows[name] = max(rows.get(name, 0), peak)
            run_peak = max(run_peak, peak)

        return hook

    try:
        for name, module in twin.named_modules():
            if name and not module._modules:
                handles.append(module.register_forward_pre_hook(before))
                handles.append(module.register_forward_hook(after(rownames.row_name_of_module(name))))
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        with torch.no_grad():
            twin(*args, **kwargs)
        torch.cuda.synchronize(device)
        run_peak = max(run_peak, torch.cuda.max_memory_allocated(device))
    finally:
        remove_all(handles)
    return run_peak, rows
