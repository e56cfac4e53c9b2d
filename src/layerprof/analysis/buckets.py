"""DDP's gradient buckets and their all-reduces, overlapped bucket by bucket with the backward.

What DDP does (torch.nn.parallel.DistributedDataParallel, torch 2.x):

- Gradients are grouped into buckets of ``bucket_cap_mb`` MiB (25 by default; torch's "MB" is
  1024 x 1024 bytes). Tensors are taken in order and a bucket is closed as soon as its bytes reach its
  limit (``_compute_bucket_assignment_by_size``): the tensor that crosses the limit stays in it.
- With the default cap the first bucket's limit is ``dist._DEFAULT_FIRST_BUCKET_BYTES`` (1 MiB): the
  first gradients to be ready start their all-reduce early. A cap the user sets applies to every
  bucket, the first included.
- From the second iteration on, DDP rebuilds its buckets in the order the gradients became ready
  in the first backward, and it launches bucket i only after buckets 0..i-1 (in order).

What is modelled here: the order a gradient becomes ready is the order of the backward rows that
produce it (a parameter's gradient is ready when its module's backward row ends; the rows'
predicted roofline times, back to back, in the report's execution order). Within one row the
parameters are taken in reverse registration order (DDP's initial order; bias before weight). A
parameter whose module has no backward row is ready at the backward's end. Each bucket's ring
all-reduce starts when its last gradient is ready and the previous bucket's all-reduce has ended
(one link, collectives serialised), and takes :func:`~layerprof.analysis.scaling.ring_allreduce_s`
of its bytes. Left out: the bucket copy kernels, the all-reduce slowing the backward's kernels
(they share the GPU's memory bandwidth), and NCCL's pipelining of several buckets at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from layerprof.errors import InvalidArgumentError

__all__ = [
    "DEFAULT_BUCKET_MB",
    "FIRST_BUCKET_BYTES",
    "MIB",
    "BucketTimes",
    "GradTensor",
    "assign_buckets",
    "gradient_tensors",
    "schedule_buckets",
]

MIB = 1024 * 1024
#: DDP's default ``bucket_cap_mb`` (``torch.nn.parallel.distributed._DEFAULT_BUCKET_CAP_MB``).
DEFAULT_BUCKET_MB = 25.0
#: DDP's first bucket under the default cap (``torch.distributed._DEFAULT_FIRST_BUCKET_BYTES``).
FIRST_BUCKET_BYTES = 1 * MIB


@dataclass(frozen=True, slots=True)
class GradTensor:
    """One parameter's gradient: its name, bytes and when (ms after the backward starts) it is ready."""

    name: str
    nbytes: int
    ready_ms: float


@dataclass(frozen=True, slots=True)
class BucketTimes:
    """One bucket's all-reduce on the backward's time axis (ms after the backward starts)."""

    index: int
    tensors: int
    nbytes: int
    ready_ms: float
    start_ms: float
    end_ms: float

    @property
    def allreduce_ms(self) -> float:
        return self.end_ms - self.start_ms


def check_bucket_mb(bucket_mb: object) -> float:
    """``bucket_mb`` as a positive finite float; InvalidArgumentError naming it otherwise."""
    if isinstance(bucket_mb, bool) or not isinstance(bucket_mb, (int, float)):
        raise InvalidArgumentError(f"bucket_mb must be a number of MiB > 0, got {bucket_mb!r}")
    if not math.isfinite(bucket_mb) or bucket_mb <= 0:
        raise InvalidArgumentError(f"bucket_mb must be a finite number of MiB > 0, got {bucket_mb!r}")
    return float(bucket_mb)


def assign_buckets(
    tensors: Sequence[GradTensor],
    bucket_mb: float = DEFAULT_BUCKET_MB,
    *,
    first_bucket_bytes: int | None = None,
) -> list[list[GradTensor]]:
    """The tensors, in the order given, cut into DDP's buckets: each closed once its bytes reach its
    limit. The first bucket's limit is ``first_bucket_bytes`` (default: 1 MiB when ``bucket_mb`` is
    DDP's default 25, else ``bucket_mb`` like every other bucket, as DDP does)."""
    cap = int(check_bucket_mb(bucket_mb) * MIB)
    if first_bucket_bytes is None:
        first_bucket_bytes = FIRST_BUCKET_BYTES if bucket_mb == DEFAULT_BUCKET_MB else cap
    buckets: list[list[GradTensor]] = []
    current: list[GradTensor] = []
    size = 0
    for tensor in tensors:
        current.append(tensor)
        size += tensor.nbytes
        if size >= (first_bucket_bytes if not buckets else cap):
            buckets.append(current)
            current, size = [], 0
    if current:
        buckets.append(current)
    return buckets


def schedule_buckets(
    buckets: Sequence[Sequence[GradTensor]], allreduce_ms: Callable[[int], float]
) -> list[BucketTimes]:
    """Each bucket's all-reduce interval: it starts when its last gradient is ready and the previous
    bucket's all-reduce has ended, and lasts ``allreduce_ms(bucket bytes)``."""
    times: list[BucketTimes] = []
    link_free = 0.0
    ready_before = 0.0
    for index, bucket in enumerate(buckets):
        nbytes = sum(t.nbytes for t in bucket)
        ready = max([ready_before, *(t.ready_ms for t in bucket)])  # DDP launches buckets in order
        start = max(ready, link_free)
        end = start + allreduce_ms(nbytes)
        times.append(BucketTimes(index, len(bucket), nbytes, ready, start, end))
        link_free, ready_before = end, ready
    return times


def gradient_tensors(
    param_rows: Sequence[tuple[str, int]],
    backward_rows: Sequence[tuple[str, float]],
    grad_itemsize: int,
    model: nn.Module | None = None,
) -> list[GradTensor]:
    """The gradients in the order they become ready in the backward.

    ``param_rows`` is (row name, parameter count) for the forward rows that own parameters, in
    forward order; ``backward_rows`` is (row name, predicted ms) for the backward rows in execution
    order. With ``model``, each parameter tensor is one gradient (its module's row, or the closest
    enclosing row); without it, each row's parameters count as one tensor.
    """
    ends: dict[str, float] = {}
    order: dict[str, int] = {}
    clock = 0.0
    for position, (name, ms) in enumerate(backward_rows):
        clock += ms
        ends.setdefault(name, clock)
        order.setdefault(name, position)
    backward_end = clock

    named: list[tuple[str, str, int]] = []  # (tensor name, row name, numel)
    if model is not None:
        for pname, param in model.named_parameters():
            if param.requires_grad:
                named.append((pname, _owner(pname, ends), param.numel()))
    else:
        named = [(row, row, count) for row, count in param_rows if count > 0]

    # Ready order: by the position of the producing backward row, reverse registration within it.
    indexed = list(enumerate(named))
    indexed.sort(key=lambda item: (order.get(item[1][1], len(order)), -item[0]))
    return [
        GradTensor(tname, numel * grad_itemsize, ends.get(row, backward_end))
        for _, (tname, row, numel) in indexed
    ]


def _owner(param_name: str, rows: dict[str, float]) -> str:
    """The row of a parameter's module: its path, or the closest enclosing path that is a row."""
    path = param_name.rpartition(".")[0]
    while path:
        if path in rows:
            return path
        path = path.rpartition(".")[0]
    return "(root)" if "(root)" in rows else param_name
