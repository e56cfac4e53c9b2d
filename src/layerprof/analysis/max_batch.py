"""``layerprof.max_batch``: the largest batch whose peak memory fits in a target's memory.

Each probe is an ``analyze(..., input_size=(batch, ...))`` on the meta device (nothing allocated),
its peak read from ``report.memory_by_target``: the batch doubles from 1 until the peak no longer
fits, then a binary search between the last batch that fit and the first that did not. That assumes
the peak grows with the batch, which holds for every model whose tensors scale with it. Targets
that round alike share their probes (:func:`max_batches`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from layerprof.core.validate import as_int
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.targets import TargetArg, resolve_targets

__all__ = ["MAX_BATCH_LIMIT", "max_batch", "max_batches"]

logger = logging.getLogger(__name__)

#: The search stops here: a batch this large that still fits is reported as this.
MAX_BATCH_LIMIT = 1 << 24


def max_batch(
    model: nn.Module,
    input_size: Sequence[int] | Sequence[Sequence[int]],
    target: str | DeviceSpec,
    backward: bool = False,
    optimizer: object = None,
    dtype: torch.dtype | str | None = None,
) -> int:
    """The largest batch for which ``model``'s peak memory on ``target`` (its ``memory_bytes``) fits:
    inference, or with ``backward=True`` a training step (and ``optimizer``'s state and step, see
    ``layerprof.analyze``). ``input_size`` is batch first (its batch is replaced); several inputs are a
    sequence of sizes, all batch first. 0 when not even a batch of 1 fits."""
    specs = resolve_targets(target)
    if len(specs) != 1:
        raise InvalidArgumentError(f"max_batch takes one target, got {target!r}; use max_batches for several")
    return max_batches(model, input_size, specs, backward=backward, optimizer=optimizer, dtype=dtype)[
        specs[0].name
    ]


def max_batches(
    model: nn.Module,
    input_size: Sequence[int] | Sequence[Sequence[int]],
    targets: TargetArg,
    *,
    backward: bool = False,
    optimizer: object = None,
    dtype: torch.dtype | str | None = None,
) -> dict[str, int]:
    """:func:`max_batch` for each target (target name -> batch), probes shared between targets."""
    specs = resolve_targets(targets)
    if not specs:
        raise InvalidArgumentError("max_batch needs a target with memory_bytes; got no target")
    for spec in specs:
        if spec.memory_bytes is None:
            raise InvalidArgumentError(
                f"target {spec.name!r} has no memory capacity (memory_bytes is None): cannot say which "
                "batch fits; give a DeviceSpec with memory_bytes (dataclasses.replace(spec, memory_bytes=N))"
            )
    with_batch = _batched(input_size)
    probes: dict[int, dict[str, int]] = {}

    def peaks(batch: int) -> dict[str, int]:
        known = probes.get(batch)
        if known is None:
            from layerprof.api.analyzing import analyze

            report = analyze(
                model, input_size=with_batch(batch), dtype=dtype, target=list(specs), backward=backward,
                optimizer=optimizer,
            )  # fmt: skip
            known = probes[batch] = {name: m.peak_bytes for name, m in report.memory_by_target.items()}
        return known

    def peak_on(name: str) -> Callable[[int], int]:
        return lambda batch: peaks(batch)[name]

    return {spec.name: _search(peak_on(spec.name), spec.memory_bytes or 0) for spec in specs}


def _search(peak: Callable[[int], int], capacity: int) -> int:
    if peak(1) > capacity:
        return 0
    fits, batch = 1, 2
    while batch <= MAX_BATCH_LIMIT and peak(batch) <= capacity:
        fits, batch = batch, batch * 2
    if batch > MAX_BATCH_LIMIT:
        logger.info("batch %d still fits; max_batch stops there", fits)
        return fits
    too_big = batch
    while too_big - fits > 1:
        middle = (fits + too_big) // 2
        if peak(middle) <= capacity:
            fits = middle
        else:
            too_big = middle
    return fits


def _batched(input_size: Any) -> Callable[[int], Any]:
    """``batch -> input_size with that batch``, for one size or a sequence of them (batch first)."""

    def dims(size: Any) -> tuple[int, ...] | None:
        if isinstance(size, (tuple, list, torch.Size)) and size:
            values = [as_int(d) for d in size]
            if all(v is not None and v > 0 for v in values):
                return tuple(v for v in values if v is not None)
        return None

    one = dims(input_size)
    if one is not None:
        return lambda batch: (batch, *one[1:])
    many = [dims(s) for s in input_size] if isinstance(input_size, (tuple, list)) and input_size else [None]
    if any(m is None for m in many):
        raise InvalidArgumentError(
            f"max_batch needs input_size as a batch-first size such as (1, 3, 224, 224), or a sequence "
            f"of them; got {input_size!r:.80}"
        )
    return lambda batch: [(batch, *m[1:]) for m in many if m is not None]
