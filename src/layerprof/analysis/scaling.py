"""Data-parallel scaling predicted from a per-layer report: how far do more GPUs cut training time?

The model (data parallelism: every GPU holds the whole model; DDP sums the gradients with ring
all-reduces, one per gradient bucket, during the backward)::

    forward, backward = the sums of the forward and backward rows' roofline times on the target
    optimizer         = params x 4 B x (tensors the update reads and writes) / DRAM bandwidth
                        (sgd 3: p, g -> p; sgd-momentum 5; adam/adamw 7: p, g, m, v -> p, m, v)
    all-reduce(N, b)  = 2 (N - 1) / N x b / link bandwidth + 2 (N - 1) x link latency  (b bytes)
    buckets           = DDP's (analysis/buckets.py): 25 MiB, the first 1 MiB, in the order the
                        backward rows make the gradients; each all-reduced once its last gradient
                        is ready and the link is free
    step(N)           = forward + max(backward, last bucket's all-reduce end) + optimizer
                        (overlap=False: forward + backward + all-reduce(N, every gradient) + optimizer)
    exposed(N)        = step(N) - step without communication
    speedup(N)        = N x step(1) / step(N) at a fixed per-GPU batch (weak scaling), or
                        step(1) / step(N) for a fixed global batch split over N GPUs (scaling_global)
    efficiency(N)     = speedup(N) / N

What the numbers are: the compute is a roofline lower bound (kernels back to back, each at its
device's peak or bandwidth), and the link runs at its peak per-direction bandwidth. A real step is
slower on both counts (NCCL reaches ~80% of a link's peak), so read the result as the best case of
each term. Left out: data loading, buffer broadcasts (batch-norm statistics), stragglers, and
topology (8 GPUs sharing one PCIe switch each get less than a full x16 link).

Memory per GPU is the report's peak on the target (``report.memory_by_target``) plus, on more than
one GPU, DDP's bucket buffers: one flat copy of every gradient (``gradient_bytes``), which DDP keeps
for the model's life beside ``param.grad`` unless ``gradient_as_bucket_view=True`` makes the
gradients views into it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from layerprof.analysis.buckets import (
    DEFAULT_BUCKET_MB,
    BucketTimes,
    assign_buckets,
    check_bucket_mb,
    gradient_tensors,
    schedule_buckets,
)
from layerprof.analysis.scaling_types import ScalingPrediction, ScalingRow
from layerprof.core.dtypes import dtype_name, parse_dtype
from layerprof.core.records import LayerRow, Verdict
from layerprof.core.validate import positive_int
from layerprof.distributed.allreduce import ALLREDUCE_ROW
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.links import LinkSpec
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.table import get_link, list_devices
from layerprof.hardware.targets import resolve_targets
from layerprof.report.facade import Report
from layerprof.roofline.verdicts import judge

__all__ = [
    "OPTIMIZER_TENSORS",
    "ScalingPrediction",
    "ScalingRow",
    "optimizer_step_ms",
    "predict_scaling",
    "ring_allreduce_s",
]

logger = logging.getLogger(__name__)

#: How much longer the backward pass is assumed to take than the forward when the report has no
#: backward rows: each layer computes the gradient of its input and of its weights, each about as
#: much work as its forward (the usual 1:2 split of a training step's FLOPs).
BACKWARD_TO_FORWARD = 2.0
DEFAULT_GPUS: tuple[int, ...] = (1, 2, 4, 8)
#: Tensors like the parameters an optimizer's update reads and writes (float32 each).
OPTIMIZER_TENSORS: Mapping[str, int] = {"sgd": 3, "sgd-momentum": 5, "adam": 7, "adamw": 7}


def ring_allreduce_s(gradient_bytes: float, gpus: int, link: str | LinkSpec) -> float:
    """Seconds one ring all-reduce of ``gradient_bytes`` over ``gpus`` GPUs takes on ``link``:
    ``2 (N - 1) / N x bytes / bandwidth + 2 (N - 1) x latency`` (0 on one GPU).

    Each of the N - 1 reduce-scatter steps and N - 1 all-gather steps sends 1/N of the buffer to the
    next GPU while receiving as much from the previous one, so the per-direction bandwidth counts.
    """
    spec = get_link(link)
    count = _check_gpu_count(gpus)
    if isinstance(gradient_bytes, bool) or not isinstance(gradient_bytes, (int, float)):
        raise InvalidArgumentError(f"gradient_bytes must be a number, got {gradient_bytes!r}")
    if not math.isfinite(gradient_bytes) or gradient_bytes < 0:
        raise InvalidArgumentError(f"gradient_bytes must be a finite number >= 0, got {gradient_bytes!r}")
    steps = 2 * (count - 1)
    return steps / count * gradient_bytes / spec.bandwidth_bytes_per_s + steps * spec.latency_s


def optimizer_step_ms(params: int, optimizer: str | None, device: DeviceSpec | None) -> float:
    """The optimizer step's roofline time: ``params x 4 B x OPTIMIZER_TENSORS[optimizer]`` over
    the device's DRAM bandwidth (an update is a few FLOPs per element: memory-bound). 0 for None."""
    if optimizer is None:
        return 0.0
    tensors = OPTIMIZER_TENSORS.get(optimizer) if isinstance(optimizer, str) else None
    if tensors is None:
        raise InvalidArgumentError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZER_TENSORS)}")
    if device is None:
        raise InvalidArgumentError(f"optimizer {optimizer!r} needs a target to price its step")
    return params * 4 * tensors / device.memory_bandwidth_bytes_per_s * 1e3


def predict_scaling(
    report: Report,
    gpus: int | Iterable[int] = DEFAULT_GPUS,
    target: str | DeviceSpec | None = None,
    link: str | LinkSpec = "nvlink4",
    *,
    grad_dtype: torch.dtype | str | None = None,
    overlap: bool = True,
    bucket_mb: float = DEFAULT_BUCKET_MB,
    optimizer: str | None = None,
    model: nn.Module | None = None,
    gradient_as_bucket_view: bool = False,
    times: str = "roofline",
) -> ScalingPrediction:
    """Predict data-parallel training at the report's batch per GPU on 1, 2, 4, 8 (``gpus``) GPUs.

    ``report`` should count a training step (``analyze(..., backward=True)``); without backward rows
    the backward is estimated as 2 x the forward and ``backward_estimated`` says so. ``target`` is
    the device whose roofline prices each row (default: the report's first target); a device the
    report was not judged on is judged here from the rows' counts. ``link`` names an interconnect
    (:func:`layerprof.list_links`). Gradients are ``grad_dtype`` (default float32), all-reduced in
    DDP's buckets of ``bucket_mb`` MiB overlapped with the backward (``overlap=False``: one
    all-reduce after it). ``optimizer`` (``"sgd"``, ``"sgd-momentum"``, ``"adam"``, ``"adamw"``)
    adds its step's time; pass the same one to ``analyze`` for its memory. ``model`` (the report's)
    gives the parameter tensors DDP buckets; without it each row's parameters are one tensor.
    ``times="measured"`` prices each row by its measured ``time_ms`` (a report of ``watch`` or
    ``profile`` with backward rows) instead of the target's roofline; the target may then be None
    (this machine). See the module docstring for the model and what it leaves out.
    """
    if not isinstance(report, Report):
        raise InvalidArgumentError(f"report must be a layerprof Report, got {type(report).__name__}")
    counts = _check_gpus(gpus)
    options = _options(link, grad_dtype, overlap, bucket_mb, optimizer, model, gradient_as_bucket_view)
    if times not in ("roofline", "measured"):
        raise InvalidArgumentError(f"times must be 'roofline' or 'measured', got {times!r}")
    options.measured = times == "measured"
    device = None if options.measured and target is None else _resolve_target(report, target)
    one = _step(report, 1, device, options)
    rows = []
    for count in counts:
        step = one if count == 1 else _step(report, count, device, options)
        rows.append(_with_speedup(step, count * one.step_ms / step.step_ms, count))
    return _prediction(report, device, options, one, tuple(rows))


# -- one step ----------------------------------------------------------------------------------------
class _Options:
    """The checked options of one prediction."""

    def __init__(self, **values: Any) -> None:
        self.link: LinkSpec = values["link"]
        self.grad_dtype: torch.dtype = values["grad_dtype"]
        self.overlap: bool = values["overlap"]
        self.bucket_mb: float = values["bucket_mb"]
        self.optimizer: str | None = values["optimizer"]
        self.model: nn.Module | None = values["model"]
        self.bucket_view: bool = values["bucket_view"]
        self.measured = False


def _options(
    link: object,
    grad_dtype: object,
    overlap: object,
    bucket_mb: object,
    optimizer: object,
    model: object,
    bucket_view: object,
) -> _Options:
    if not isinstance(overlap, bool):
        raise InvalidArgumentError(f"overlap must be True or False, got {overlap!r}")
    if not isinstance(bucket_view, bool):
        raise InvalidArgumentError(f"gradient_as_bucket_view must be True or False, got {bucket_view!r}")
    if model is not None and not isinstance(model, nn.Module):
        raise InvalidArgumentError(f"model must be an nn.Module or None, got {type(model).__name__}")
    if optimizer is not None and optimizer not in OPTIMIZER_TENSORS:
        raise InvalidArgumentError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZER_TENSORS)}")
    return _Options(
        link=get_link(link),  # type: ignore[arg-type]
        grad_dtype=_grad_dtype(grad_dtype),  # type: ignore[arg-type]
        overlap=overlap,
        bucket_mb=check_bucket_mb(bucket_mb),
        optimizer=optimizer,
        model=model,
        bucket_view=bucket_view,
    )


def _step(report: Report, gpus: int, device: DeviceSpec | None, options: _Options) -> ScalingRow:
    """The step on ``gpus`` GPUs, speedup not yet known (1.0)."""
    judged = any(spec == device for spec in report.targets)
    priced = None if options.measured else device
    forward_ms, backward_rows = _phase_times_ms(report.layers, priced, judged=judged)
    name = "this machine" if device is None else device.name
    if backward_rows is None:
        backward_ms = BACKWARD_TO_FORWARD * forward_ms
        backward_rows = [("(estimated backward)", backward_ms)]
        logger.info("%s has no backward rows: backward estimated as 2 x forward", report.model_name)
    else:
        backward_ms = sum(ms for _, ms in backward_rows)
    params = report.total.params
    optimizer_ms = optimizer_step_ms(params, options.optimizer, device)
    if not forward_ms + backward_ms > 0:
        raise InvalidArgumentError(
            f"the report predicts {forward_ms + backward_ms!r} ms per step on {name}: nothing to scale"
        )
    itemsize = options.grad_dtype.itemsize
    buckets: list[BucketTimes] = []
    if gpus > 1:
        link = options.link

        def allreduce_ms(nbytes: int) -> float:
            return ring_allreduce_s(nbytes, gpus, link) * 1e3

        if options.overlap:
            param_rows = [(r.name, r.params) for r in report.layers if r.phase == "forward" and r.params]
            tensors = gradient_tensors(param_rows, backward_rows, itemsize, options.model)
            buckets = schedule_buckets(assign_buckets(tensors, options.bucket_mb), allreduce_ms)
        else:
            nbytes = params * itemsize
            buckets = [
                BucketTimes(0, 1, nbytes, backward_ms, backward_ms, backward_ms + allreduce_ms(nbytes))
            ]
    comm_end = max((b.end_ms for b in buckets), default=0.0)
    step_ms = forward_ms + max(backward_ms, comm_end) + optimizer_ms
    batch = _batch(report)
    return ScalingRow(
        gpus=gpus,
        batch_per_gpu=batch,
        forward_ms=forward_ms,
        backward_ms=backward_ms,
        optimizer_ms=optimizer_ms,
        allreduce_ms=sum(b.allreduce_ms for b in buckets),
        exposed_ms=max(0.0, comm_end - backward_ms),
        step_ms=step_ms,
        speedup=1.0,
        efficiency=1.0,
        samples_per_s=None if batch is None else gpus * batch / (step_ms / 1e3),
        peak_bytes=_peak(report, device, 0 if gpus == 1 or options.bucket_view else params * itemsize),
        buckets=tuple(buckets),
    )


def _with_speedup(row: ScalingRow, speedup: float, gpus: int) -> ScalingRow:
    from dataclasses import replace

    return replace(row, speedup=speedup, efficiency=speedup / gpus)


def _prediction(
    report: Report,
    device: DeviceSpec | None,
    options: _Options,
    one: ScalingRow,
    rows: tuple[ScalingRow, ...],
) -> ScalingPrediction:
    return ScalingPrediction(
        model_name=report.model_name,
        target="this machine (measured)" if device is None else device.name,
        link=options.link,
        batch_per_gpu=one.batch_per_gpu,
        params=report.total.params,
        grad_dtype=dtype_name(options.grad_dtype),
        gradient_bytes=report.total.params * options.grad_dtype.itemsize,
        forward_ms=one.forward_ms,
        backward_ms=one.backward_ms,
        backward_estimated=not any(r.phase == "backward" for r in report.layers),
        overlap=options.overlap,
        rows=rows,
        bucket_mb=options.bucket_mb,
        optimizer=options.optimizer,
        capacity_bytes=None if device is None else device.memory_bytes,
    )


def _peak(report: Report, device: DeviceSpec | None, ddp_bytes: int) -> int | None:
    if device is None or not report.memory_by_target:
        return None
    memory = report.memory_by_target.get(device.name)
    return None if memory is None else memory.peak_bytes + ddp_bytes


# -- checks and report reading -------------------------------------------------------------------------
def _check_gpu_count(value: object) -> int:
    return positive_int("a GPU count", value)


def _check_gpus(gpus: object) -> tuple[int, ...]:
    if isinstance(gpus, int) and not isinstance(gpus, bool):
        return (_check_gpu_count(gpus),)
    if isinstance(gpus, (str, bytes)) or not isinstance(gpus, Iterable):
        raise InvalidArgumentError(f"gpus must be a positive int or a sequence of them, got {gpus!r}")
    counts = tuple(_check_gpu_count(value) for value in gpus)
    if not counts:
        raise InvalidArgumentError("gpus is empty; give at least one GPU count, e.g. (1, 2, 4, 8)")
    if len(set(counts)) != len(counts):
        raise InvalidArgumentError(f"gpus lists a count twice: {counts}")
    return counts


def _grad_dtype(grad_dtype: torch.dtype | str | None) -> torch.dtype:
    if grad_dtype is None:
        return torch.float32
    dtype = parse_dtype(grad_dtype)
    if not dtype.is_floating_point:
        raise InvalidArgumentError(f"grad_dtype must be a floating dtype, got {grad_dtype!r}")
    return dtype


def _resolve_target(report: Report, target: str | DeviceSpec | None) -> DeviceSpec:
    if target is None:
        if not report.targets:
            names = ", ".join(spec.name for spec in list_devices())
            raise InvalidArgumentError(f"the report was judged on no target; pass target=, one of: {names}")
        return report.targets[0]
    if not isinstance(target, (str, DeviceSpec)):
        raise InvalidArgumentError(f"target must be a device name or a DeviceSpec, got {target!r}")
    (device,) = resolve_targets(target)
    return device


def _phase_times_ms(
    rows: Sequence[LayerRow], device: DeviceSpec | None, *, judged: bool
) -> tuple[float, list[tuple[str, float]] | None]:
    """The forward rows' summed roofline time and the backward rows' (name, time) in execution
    order (None: no backward rows); with ``device`` None, the rows' measured times. A gathered
    DDP report's all-reduce row is left out: the prediction models its own all-reduce."""
    forward = 0.0
    backward: list[tuple[str, float]] = []
    for row in rows:
        if row.name == ALLREDUCE_ROW or row.phase not in ("forward", "backward"):
            continue
        if device is None:
            if row.time_ms is None:
                raise InvalidArgumentError(f"row {row.name!r} ({row.phase}) has no measured time_ms")
            ms = row.time_ms
        else:
            verdicts: Mapping[str, Verdict] = row.roofline if judged else judge(row, [device]).roofline
            ms = verdicts[device.name].roofline_time_ms
        if row.phase == "forward":
            forward += ms
        else:
            backward.append((row.name, ms))
    return forward, (backward or None)


def _batch(report: Report) -> int | None:
    """The first dimension of the report's first tensor input."""
    if report.inputs is None:
        return None
    specs = [*report.inputs.positional, *(spec for _, spec in report.inputs.keyword)]
    for spec in specs:
        if spec is not None and spec.shape:
            return spec.shape[0]
    return None
