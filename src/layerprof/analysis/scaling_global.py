"""Strong scaling (a fixed global batch split over the GPUs) and the largest per-GPU batch under DDP.

``predict_scaling_global(model, input_size, global_batch=256, gpus=(1, 2, 4, 8))`` counts one
training step at ``global_batch / N`` per GPU for each N (``analyze(..., backward=True)`` on the meta
device) and prices it as :func:`~layerprof.analysis.scaling.predict_scaling` does: the compute per
GPU shrinks with N while each GPU still all-reduces every gradient, so the all-reduce is hidden less
and less. A GPU count that does not divide the global batch is refused (DDP runs one per-GPU batch
on every rank; a remainder would need uneven inputs, ``DDP.join``). The speedup is
``step(1 GPU, global batch) / step(N)``: the same samples per step in less time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from layerprof.analysis import scaling
from layerprof.analysis.buckets import DEFAULT_BUCKET_MB
from layerprof.analysis.scaling_types import ScalingPrediction
from layerprof.core.validate import positive_int
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.links import LinkSpec
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.targets import resolve_targets

__all__ = ["ddp_max_batch", "predict_scaling_global"]


def predict_scaling_global(
    model: nn.Module,
    input_size: Sequence[int],
    global_batch: int,
    gpus: int | Iterable[int] = scaling.DEFAULT_GPUS,
    target: str | DeviceSpec = "h100-sxm",
    link: str | LinkSpec = "nvlink4",
    *,
    dtype: torch.dtype | str | None = None,
    grad_dtype: torch.dtype | str | None = None,
    overlap: bool = True,
    bucket_mb: float = DEFAULT_BUCKET_MB,
    optimizer: str | None = None,
    gradient_as_bucket_view: bool = False,
) -> ScalingPrediction:
    """Data-parallel training of ``model`` at a fixed ``global_batch`` split evenly over each GPU
    count (``input_size`` is one input's size, batch first; its batch is replaced)."""
    from layerprof.api.analyzing import analyze

    batch = positive_int("global_batch", global_batch)
    counts = scaling._check_gpus(gpus)
    uneven = [n for n in counts if batch % n]
    if uneven:
        raise InvalidArgumentError(
            f"global_batch {batch} does not split evenly over {', '.join(map(str, uneven))} GPUs; "
            f"DDP runs the same batch on every GPU: pick GPU counts that divide {batch}"
        )
    if not isinstance(input_size, (tuple, list, torch.Size)) or not input_size:
        raise InvalidArgumentError(f"input_size must be one batch-first size, got {input_size!r}")
    (device,) = resolve_targets(target)
    options = scaling._options(
        link, grad_dtype, overlap, bucket_mb, optimizer, model, gradient_as_bucket_view
    )

    def report_at(per_gpu: int) -> Any:
        return analyze(
            model, input_size=(per_gpu, *input_size[1:]), dtype=dtype, target=device, backward=True,
            optimizer=optimizer,
        )  # fmt: skip

    one_report = report_at(batch)
    one = scaling._step(one_report, 1, device, options)
    rows = []
    for count in counts:
        step = one if count == 1 else scaling._step(report_at(batch // count), count, device, options)
        step = replace(step, samples_per_s=batch / (step.step_ms / 1e3))
        rows.append(scaling._with_speedup(step, one.step_ms / step.step_ms, count))
    prediction = scaling._prediction(one_report, device, options, one, tuple(rows))
    return replace(prediction, global_batch=batch, batch_per_gpu=None)


def ddp_max_batch(
    model: nn.Module,
    input_size: Sequence[int] | Sequence[Sequence[int]],
    target: str | DeviceSpec,
    *,
    optimizer: str | None = None,
    dtype: torch.dtype | str | None = None,
    ddp_bytes: int = 0,
) -> int:
    """The largest per-GPU batch whose training-step peak plus ``ddp_bytes`` (DDP's bucket
    buffers, a constant) fits in ``target``'s memory: :func:`layerprof.max_batch` on a device with
    ``ddp_bytes`` less memory. 0 when not even a batch of 1 fits."""
    from layerprof.analysis.max_batch import max_batch

    (device,) = resolve_targets(target)
    if device.memory_bytes is None:
        raise InvalidArgumentError(f"target {device.name!r} has no memory capacity (memory_bytes is None)")
    left = device.memory_bytes - ddp_bytes
    if left <= 0:
        return 0
    return max_batch(
        model, input_size, replace(device, memory_bytes=left), backward=True, optimizer=optimizer, dtype=dtype
    )
