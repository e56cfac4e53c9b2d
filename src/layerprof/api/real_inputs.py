"""Counting a model's real inputs on meta from their shapes, and on the real forward only when needed.

A meta forward costs the same at any batch and a fraction of a CPU forward; it counts what the real
forward does unless the model needs values or takes another path on meta (:mod:`layerprof.walk.meta_first`
says which). Then the real forward is counted, as before. Any other failure of the meta forward is
the model's own, and the real forward runs to raise it as it always has (with torch's CPU wording:
meta kernels word some shape errors differently, "Invalid channel dimensions" for a convolution);
should the real forward go through, its counts stand. A :class:`~layerprof.errors.LayerprofError`
(a formula failing) is raised as it comes.

Which way a model was counted is logged at INFO on ``layerprof.api.real_inputs``, with the reason
when it is the real forward.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from layerprof.api.counting import count
from layerprof.core.records import LayerRow
from layerprof.errors import ForwardError
from layerprof.walk.collect import Collector
from layerprof.walk.counter import Allocations, OpCounter
from layerprof.walk.memory_run import FootprintRun
from layerprof.walk.meta_first import ProbingCounter, meta_blocker, meta_copies

__all__ = ["Counted", "InputPair", "count_inputs", "count_with_fallback"]

logger = logging.getLogger(__name__)

InputPair = tuple[tuple[Any, ...], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Counted:
    """The rows of one count, and how it was made: ``reason`` is None on meta, else why the real
    forward was counted."""

    rows: list[LayerRow]
    unsupported: dict[str, int]
    kinds: dict[str, str]
    reason: str | None

    @property
    def on_meta(self) -> bool:
        return self.reason is None

    def parts(self) -> tuple[list[LayerRow], dict[str, int], dict[str, str]]:
        return self.rows, self.unsupported, self.kinds


def _meta_only(error: ForwardError) -> str | None:
    """A failure outside any op that only a meta tensor causes (``.numpy()``)."""
    inner: BaseException = error
    while inner.__cause__ is not None:
        inner = inner.__cause__
    if isinstance(inner, TypeError) and "meta device type tensor to numpy" in str(inner):
        return f"in layer {error.layer}, .numpy() needs the tensor's values"
    return None


def _on_meta(
    model: nn.Module, inputs: InputPair, memory: FootprintRun | None, cache_model: bool
) -> Counted | str:
    """The count on meta, or why it does not stand for the real forward's."""
    blocker = meta_blocker(model, *inputs)
    if blocker is not None:
        return blocker
    probes: list[ProbingCounter] = []

    def probing(collector: Collector, fast_meta: bool, tracker: Allocations | None) -> OpCounter:
        probes.append(ProbingCounter(collector, fast_meta=fast_meta, memory=tracker))
        return probes[-1]

    args, kwargs = meta_copies(*inputs)
    try:
        rows, unsupported, kinds = count(
            model,
            args,
            kwargs,
            to_meta_device=True,
            make_counter=probing,
            memory=memory,
            cache_model=cache_model,
        )
    except ForwardError as error:
        noted = probes[0].reason if probes else None
        return noted or _meta_only(error) or f"the forward failed on meta ({error})"
    if probes and probes[0].reason is not None:  # the model caught a meta failure and went on
        return probes[0].reason
    return Counted(rows, unsupported, kinds, None)


def count_inputs(
    model: nn.Module,
    inputs: InputPair,
    real: Callable[[], InputPair] | None = None,
    *,
    memory: FootprintRun | None = None,
    cache_model: bool = True,
) -> Counted:
    """Count ``model`` on ``inputs``: on meta copies of them first, on a real twin with ``real()`` (by
    default ``inputs`` themselves) when the meta forward does not stand for the real one. ``memory``
    tracks the storages of the count that stands (it starts over for the real forward)."""
    counted = _on_meta(model, inputs, memory, cache_model)
    if isinstance(counted, Counted):
        logger.info("counted %s on meta from the inputs' shapes", type(model).__name__)
        return counted
    logger.info("counted %s on the real forward: %s", type(model).__name__, counted)
    args, kwargs = real() if real is not None else inputs
    if memory is not None:
        memory.restart(on_meta=False)
    rows, unsupported, kinds = count(
        model, args, kwargs, to_meta_device=False, memory=memory, cache_model=cache_model
    )
    return Counted(rows, unsupported, kinds, counted)


def count_with_fallback(
    model: nn.Module,
    meta_inputs: InputPair,
    real_inputs: Callable[[], InputPair],
    memory: FootprintRun | None = None,
    *,
    cache_model: bool = True,
) -> tuple[list[LayerRow], dict[str, int], dict[str, str]]:
    """profile's and Profiler's count: :func:`count_inputs` from the inputs' shapes (``meta_inputs``),
    on a real twin with ``real_inputs()`` when needed."""
    counted = count_inputs(model, meta_inputs, real_inputs, memory=memory, cache_model=cache_model)
    return counted.parts()
