"""Data-parallel scaling predicted from a per-layer report: how far do more GPUs cut training time?

The model (data parallelism: every GPU holds the whole model and runs the report's batch; the
gradients are summed with one ring all-reduce per step)::

    compute         = forward + backward: the sum of the rows' roofline times on the target
    gradient bytes  = parameters x gradient element size (float32 by default: AMP keeps fp32 grads)
    all-reduce(N)   = 2 (N - 1) / N x gradient bytes / link bandwidth + 2 (N - 1) x link latency
    step(N)         = compute + all-reduce(N)                       (overlap=False)
                    = forward + max(backward, all-reduce(N))        (overlap=True)
    speedup(N)      = N x step(1) / step(N)  (throughput at a fixed per-GPU batch)
    efficiency(N)   = speedup(N) / N

A training run over a fixed data set takes ``1 / speedup`` of its one-GPU time.

What the numbers are: the compute is a roofline lower bound (kernels back to back, each at its
device's peak or bandwidth), and the link runs at its peak per-direction bandwidth. A real step is
slower on both counts (NCCL reaches ~80% of a link's peak), so read the result as the best case of
each term. What is left out: the optimizer step, data loading, buffer broadcasts (batch-norm
statistics), gradient bucketing (the last bucket's all-reduce cannot overlap anything), stragglers,
and topology (8 GPUs sharing one PCIe switch each get less than a full x16 link).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tabulate import tabulate, tabulate_formats

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

__all__ = ["ScalingPrediction", "ScalingRow", "predict_scaling", "ring_allreduce_s"]

logger = logging.getLogger(__name__)

#: How much longer the backward pass is assumed to take than the forward when the report has no
#: backward rows: each layer computes the gradient of its input and of its weights, each about as
#: much work as its forward (the usual 1:2 split of a training step's FLOPs).
BACKWARD_TO_FORWARD = 2.0
DEFAULT_GPUS: tuple[int, ...] = (1, 2, 4, 8)


@dataclass(frozen=True, slots=True)
class ScalingRow:
    """The predicted training step on ``gpus`` GPUs."""

    gpus: int
    compute_ms: float
    allreduce_ms: float
    step_ms: float
    speedup: float
    efficiency: float
    #: Samples per second over all GPUs; None when the report does not say its batch.
    samples_per_s: float | None

    @property
    def time_fraction(self) -> float:
        """The share of its one-GPU time a training run over a fixed data set takes: 1 / speedup."""
        return 1.0 / self.speedup


@dataclass(frozen=True, slots=True)
class ScalingPrediction:
    """Data-parallel scaling of one model's training step on one target over one link."""

    model_name: str
    target: str
    link: LinkSpec
    #: The report's batch, which every GPU runs (None when the report does not record its inputs).
    batch_per_gpu: int | None
    params: int
    grad_dtype: str
    gradient_bytes: int
    forward_ms: float
    backward_ms: float
    #: True when the report had no backward rows and the backward is 2 x the forward.
    backward_estimated: bool
    overlap: bool
    rows: tuple[ScalingRow, ...]

    @property
    def compute_ms(self) -> float:
        return self.forward_ms + self.backward_ms

    def row(self, gpus: int) -> ScalingRow:
        """The row for ``gpus`` GPUs (KeyError naming the GPU counts there are)."""
        for row in self.rows:
            if row.gpus == gpus:
                return row
        raise KeyError(f"no row for {gpus} GPUs; rows for {', '.join(str(r.gpus) for r in self.rows)}")

    def table(self, fmt: str = "simple") -> str:
        """The prediction as text: what was assumed, one line per GPU count, and the answer."""
        if fmt not in tabulate_formats:
            raise InvalidArgumentError(
                f"unknown table format {fmt!r}; tabulate knows {', '.join(tabulate_formats)}"
            )
        headers = [
            "GPUs", "compute ms", "all-reduce ms", "step ms", "speedup", "efficiency", "samples/s",
            "time vs 1 GPU",
        ]  # fmt: skip
        body = [
            [
                str(r.gpus),
                f"{r.compute_ms:.3f}",
                f"{r.allreduce_ms:.3f}",
                f"{r.step_ms:.3f}",
                f"{r.speedup:.2f}x",
                f"{r.efficiency:.0%}",
                "-" if r.samples_per_s is None else f"{r.samples_per_s:,.0f}",
                f"{r.time_fraction:.1%}",
            ]
            for r in self.rows
        ]
        table = tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True)
        return "\n".join([*self._header(), table, *self._footer()])

    def _header(self) -> list[str]:
        link = self.link
        batch = "batch ?" if self.batch_per_gpu is None else f"batch {self.batch_per_gpu}"
        backward = (
            f"backward {self.backward_ms:.3f} (estimated: {BACKWARD_TO_FORWARD:g} x forward)"
            if self.backward_estimated
            else f"backward {self.backward_ms:.3f}"
        )
        name = self.model_name or "model"
        return [
            f"Data-parallel training of {name} on {self.target} over {link.name} ({link.full_name}: "
            f"{link.bandwidth_bytes_per_s / 1e9:.4g} GB/s per direction, "
            f"{link.latency_s * 1e6:.3g} us per ring step), {batch} per GPU.",
            f"Compute per step {self.compute_ms:.3f} ms (forward {self.forward_ms:.3f} + {backward}; "
            f"roofline lower bound). Gradients {self.params:,} params x "
            f"{parse_dtype(self.grad_dtype).itemsize} B ({self.grad_dtype}) = "
            f"{self.gradient_bytes / 1e6:.4g} MB, ring all-reduce "
            f"{'overlapped with the backward' if self.overlap else 'after the backward'}.",
        ]

    def _footer(self) -> list[str]:
        lines = []
        if self.backward_estimated:
            lines.append("The report has no backward rows; count them with analyze(..., backward=True).")
        best = max(self.rows, key=lambda r: r.gpus)
        if best.gpus > 1:
            lines.append(
                f"{best.gpus} GPUs: {best.speedup:.2f}x the throughput of one ({best.efficiency:.0%} "
                f"efficiency); a training run takes {best.time_fraction:.1%} of its one-GPU time."
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the assumptions, the link and one entry per GPU count."""
        return {
            "model_name": self.model_name,
            "target": self.target,
            "link": self.link.to_dict(),
            "batch_per_gpu": self.batch_per_gpu,
            "params": self.params,
            "grad_dtype": self.grad_dtype,
            "gradient_bytes": self.gradient_bytes,
            "forward_ms": self.forward_ms,
            "backward_ms": self.backward_ms,
            "backward_estimated": self.backward_estimated,
            "overlap": self.overlap,
            "rows": [
                {
                    "gpus": r.gpus,
                    "compute_ms": r.compute_ms,
                    "allreduce_ms": r.allreduce_ms,
                    "step_ms": r.step_ms,
                    "speedup": r.speedup,
                    "efficiency": r.efficiency,
                    "samples_per_s": r.samples_per_s,
                }
                for r in self.rows
            ],
        }


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


def predict_scaling(
    report: Report,
    gpus: int | Iterable[int] = DEFAULT_GPUS,
    target: str | DeviceSpec | None = None,
    link: str | LinkSpec = "nvlink4",
    *,
    grad_dtype: torch.dtype | str | None = None,
    overlap: bool = False,
) -> ScalingPrediction:
    """Predict data-parallel training at the report's batch per GPU on 1, 2, 4, 8 (``gpus``) GPUs.

    ``report`` should count a training step (``analyze(..., backward=True)``); without backward rows
    the backward is estimated as 2 x the forward and ``backward_estimated`` says so. ``target`` is
    the device whose roofline prices each row (default: the report's first target); a device the
    report was not judged on is judged here from the rows' counts. ``link`` names an interconnect
    (:func:`layerprof.list_links`). Gradients are ``grad_dtype`` (default float32). With
    ``overlap=True`` the all-reduce runs during the backward. See the module docstring for the model
    and what it leaves out.
    """
    if not isinstance(report, Report):
        raise InvalidArgumentError(f"report must be a layerprof Report, got {type(report).__name__}")
    counts = _check_gpus(gpus)
    if not isinstance(overlap, bool):
        raise InvalidArgumentError(f"overlap must be True or False, got {overlap!r}")
    link_spec = get_link(link)
    element_dtype = _grad_dtype(grad_dtype)
    device = _resolve_target(report, target)

    # Rows carry verdicts for the report's own targets; another device (or another spec under the
    # same name) is judged here from the rows' counts.
    judged = any(spec == device for spec in report.targets)
    forward_ms, backward_ms = _phase_times_ms(report.layers, device, judged=judged)
    estimated = backward_ms is None
    if backward_ms is None:
        backward_ms = BACKWARD_TO_FORWARD * forward_ms
        logger.info("%s has no backward rows: backward estimated as 2 x forward", report.model_name)
    compute_ms = forward_ms + backward_ms
    if not compute_ms > 0:
        raise InvalidArgumentError(
            f"the report predicts {compute_ms!r} ms per step on {device.name}: nothing to scale"
        )
    params = report.total.params
    gradient_bytes = params * element_dtype.itemsize
    batch = _batch(report)

    one_gpu_ms = compute_ms  # one GPU has nothing to all-reduce
    rows = []
    for count in counts:
        allreduce_ms = ring_allreduce_s(gradient_bytes, count, link_spec) * 1e3
        # Overlapped, the all-reduce of a gradient starts as soon as the backward has made it.
        after_forward_ms = max(backward_ms, allreduce_ms) if overlap else backward_ms + allreduce_ms
        step_ms = forward_ms + after_forward_ms
        speedup = count * one_gpu_ms / step_ms
        rows.append(
            ScalingRow(
                gpus=count,
                compute_ms=compute_ms,
                allreduce_ms=allreduce_ms,
                step_ms=step_ms,
                speedup=speedup,
                efficiency=speedup / count,
                samples_per_s=None if batch is None else count * batch / (step_ms / 1e3),
            )
        )
    return ScalingPrediction(
        model_name=report.model_name,
        target=device.name,
        link=link_spec,
        batch_per_gpu=batch,
        params=params,
        grad_dtype=dtype_name(element_dtype),
        gradient_bytes=gradient_bytes,
        forward_ms=forward_ms,
        backward_ms=backward_ms,
        backward_estimated=estimated,
        overlap=overlap,
        rows=tuple(rows),
    )


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
    rows: Sequence[LayerRow], device: DeviceSpec, *, judged: bool
) -> tuple[float, float | None]:
    """Summed roofline times of the forward and the backward rows (None: no backward rows). A
    gathered DDP report's all-reduce row is left out: the prediction models its own all-reduce."""
    totals: dict[str, float] = {}
    for row in rows:
        if row.name == ALLREDUCE_ROW:
            continue
        verdicts: Mapping[str, Verdict] = row.roofline if judged else judge(row, [device]).roofline
        totals[row.phase] = totals.get(row.phase, 0.0) + verdicts[device.name].roofline_time_ms
    return totals.get("forward", 0.0), totals.get("backward")


def _batch(report: Report) -> int | None:
    """The first dimension of the report's first tensor input."""
    if report.inputs is None:
        return None
    specs = [*report.inputs.positional, *(spec for _, spec in report.inputs.keyword)]
    for spec in specs:
        if spec is not None and spec.shape:
            return spec.shape[0]
    return None
