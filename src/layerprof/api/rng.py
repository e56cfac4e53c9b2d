"""The random streams a profiling call draws from, put back when it is done.

``analyze``, ``profile`` and ``Profiler.report`` run forwards of their own on real tensors (a twin of
a model in train mode draws dropout masks) and make random inputs; the user's next draw must be the
one it would have been without them, so that profiling never changes what the program computes
next. :func:`rng_kept` forks the CPU generator and the generator of every accelerator the model or
its inputs live on (and CUDA's current device, where a forward's ``device="cuda"`` tensors go);
:func:`keeps_rng` runs a whole ``function(model, inputs, ...)`` under it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ParamSpec, TypeVar

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

__all__ = ["keeps_rng", "rng_kept"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _devices(model: object, values: Iterable[Any]) -> dict[str, set[int]]:
    """Device type -> the indices of it that ``model`` or ``values`` use (CPU and meta left out)."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    if isinstance(model, nn.Module):
        tensors += [*model.parameters(), *model.buffers()]
    found: dict[str, set[int]] = {}
    for tensor in tensors:
        kind = tensor.device.type
        if kind not in ("cpu", "meta"):
            found.setdefault(kind, set()).add(tensor.device.index or 0)
    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        found.setdefault("cuda", set()).add(torch.cuda.current_device())
    return found


@contextlib.contextmanager
def rng_kept(model: object, *inputs: object) -> Iterator[None]:
    """Run the block with the RNG states of the CPU and of the devices of ``model`` and of the tensors
    in ``inputs`` (tensors, tuples, dicts of them) saved; put them back afterwards, also when it raises.
    A ``model`` that is not an ``nn.Module`` (the caller refuses it later) adds no device."""
    devices = _devices(model, tree_leaves(inputs))
    with contextlib.ExitStack() as forks:
        # fork_rng forks the CPU generator and one accelerator type's devices: one fork per type.
        forks.enter_context(torch.random.fork_rng(devices=[], device_type="cpu"))
        for kind, indices in sorted(devices.items()):
            if callable(getattr(getattr(torch, kind, None), "get_rng_state", None)):
                forks.enter_context(torch.random.fork_rng(devices=sorted(indices), device_type=kind))
        yield


def keeps_rng(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """``function(model, inputs, ...)`` (positional or by those names) run under :func:`rng_kept`."""

    @functools.wraps(function)
    def kept(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        model = args[0] if args else kwargs.get("model")
        inputs = args[1] if len(args) > 1 else kwargs.get("inputs")
        with rng_kept(model, inputs, kwargs.get("kwargs")):
            return function(*args, **kwargs)

    return kept
