"""The records of a data-parallel scaling prediction: one :class:`ScalingRow` per GPU count."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from layerprof.analysis.buckets import BucketTimes
from layerprof.hardware.links import LinkSpec

__all__ = ["ScalingPrediction", "ScalingRow"]


@dataclass(frozen=True, slots=True)
class ScalingRow:
    """The predicted training step on ``gpus`` GPUs.

    ``allreduce_ms`` is the time the link is busy (the buckets' all-reduces added up);
    ``exposed_ms`` the part of it the backward does not hide: ``step - (forward + backward +
    optimizer)``. ``peak_bytes`` is one GPU's peak memory, DDP's gradient buckets included on more
    than one GPU (None when the report has no memory footprint)."""

    gpus: int
    batch_per_gpu: int | None
    forward_ms: float
    backward_ms: float
    optimizer_ms: float
    allreduce_ms: float
    exposed_ms: float
    step_ms: float
    speedup: float
    efficiency: float
    #: Samples per second over all GPUs; None when the report does not say its batch.
    samples_per_s: float | None
    peak_bytes: int | None = None
    buckets: tuple[BucketTimes, ...] = ()

    @property
    def compute_ms(self) -> float:
        """Forward + backward + the optimizer step: the step with nothing to all-reduce."""
        return self.forward_ms + self.backward_ms + self.optimizer_ms

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
    #: The one-GPU report's batch (None when the report does not record its inputs).
    batch_per_gpu: int | None
    params: int
    grad_dtype: str
    gradient_bytes: int
    forward_ms: float
    backward_ms: float
    #: True when the report had no backward rows and the backward is 2 x the forward.
    backward_estimated: bool
    #: True: DDP's buckets, each all-reduced as soon as its gradients are ready; False: one
    #: all-reduce of every gradient after the whole backward.
    overlap: bool
    rows: tuple[ScalingRow, ...]
    bucket_mb: float = 25.0
    optimizer: str | None = None
    #: Fixed total batch split over the GPUs (None: every GPU runs ``batch_per_gpu``).
    global_batch: int | None = None
    #: One GPU's memory (the target's ``memory_bytes``) and the largest per-GPU batch that fits
    #: there with DDP's buckets (None: not searched).
    capacity_bytes: int | None = None
    max_batch_per_gpu: int | None = None

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
        from layerprof.analysis.scaling_text import prediction_table

        return prediction_table(self, fmt)

    def paragraph(self) -> str:
        """The answer in plain words, built from the rows (printed under the table)."""
        from layerprof.analysis.scaling_text import paragraph

        return paragraph(self)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the assumptions, the link and one entry per GPU count."""
        return {
            "model_name": self.model_name,
            "target": self.target,
            "link": self.link.to_dict(),
            "batch_per_gpu": self.batch_per_gpu,
            "global_batch": self.global_batch,
            "params": self.params,
            "grad_dtype": self.grad_dtype,
            "gradient_bytes": self.gradient_bytes,
            "forward_ms": self.forward_ms,
            "backward_ms": self.backward_ms,
            "backward_estimated": self.backward_estimated,
            "overlap": self.overlap,
            "bucket_mb": self.bucket_mb,
            "optimizer": self.optimizer,
            "capacity_bytes": self.capacity_bytes,
            "max_batch_per_gpu": self.max_batch_per_gpu,
            "rows": [
                {
                    "gpus": r.gpus,
                    "batch_per_gpu": r.batch_per_gpu,
                    "forward_ms": r.forward_ms,
                    "backward_ms": r.backward_ms,
                    "optimizer_ms": r.optimizer_ms,
                    "compute_ms": r.compute_ms,
                    "allreduce_ms": r.allreduce_ms,
                    "exposed_ms": r.exposed_ms,
                    "step_ms": r.step_ms,
                    "speedup": r.speedup,
                    "efficiency": r.efficiency,
                    "samples_per_s": r.samples_per_s,
                    "peak_bytes": r.peak_bytes,
                    "buckets": [
                        {
                            "bytes": b.nbytes,
                            "tensors": b.tensors,
                            "ready_ms": b.ready_ms,
                            "start_ms": b.start_ms,
                            "end_ms": b.end_ms,
                        }
                        for b in r.buckets
                    ],
                }
                for r in self.rows
            ],
        }
