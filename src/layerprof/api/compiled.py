"""A ``torch.compile``'d model is counted, and timed, through the eager module it wraps.

``torch.compile(model)`` returns an ``OptimizedModule`` whose only submodule is the model itself
(``_orig_mod``): walking it gives rows named ``_orig_mod.layer1.0.conv1`` and, with ``input_size``,
a meta forward that dynamo cannot compile. The counts of compiled code are the eager model's (the
same ops in the same shapes; fusion changes which kernels run, not what they compute), so layerprof
walks ``_orig_mod``, with rows named as the original module's. Times are another matter: compiled
kernels fuse across layers, so a compiled forward has no per-layer times at all. ``profile``,
``Profiler`` and ``watch`` time the wrapped module eagerly and say so in a warning.
"""

from __future__ import annotations

import logging
import sys
import warnings

from torch import nn

__all__ = ["COMPILED_TIMES_NOTE", "is_compiled", "unwrap_compiled"]

logger = logging.getLogger(__name__)

COMPILED_TIMES_NOTE = (
    "times of compiled code are not per layer (compiled kernels fuse across layers): layerprof counts "
    "and times the eager module that torch.compile wraps, so these times are of eager execution; time "
    "the compiled model as a whole for its end-to-end speed"
)


def is_compiled(model: object) -> bool:
    """Whether ``model`` is a ``torch.compile`` wrapper (an ``OptimizedModule``).

    Looked up without importing dynamo (a second's import): no OptimizedModule exists before it is."""
    eval_frame = sys.modules.get("torch._dynamo.eval_frame")
    wrapper = getattr(eval_frame, "OptimizedModule", None)
    return isinstance(wrapper, type) and isinstance(model, wrapper)


def unwrap_compiled(model: nn.Module, *, timed: bool = False, stacklevel: int = 3) -> nn.Module:
    """The eager module a ``torch.compile`` wrapper holds (through any number of them), else ``model``.

    Nothing is changed on either module. ``timed`` warns that times of compiled code are not per
    layer (for profile, Profiler and watch)."""
    inner = model
    while is_compiled(inner):
        wrapped = inner._orig_mod
        if not isinstance(wrapped, nn.Module):  # pragma: no cover - dynamo always wraps a module
            break
        inner = wrapped
    if inner is model:
        return model
    logger.info(
        "%s is a torch.compile'd module: counting the %s it wraps", type(model).__name__, type(inner).__name__
    )
    if timed:
        warnings.warn(
            f"{type(inner).__name__} is torch.compile'd: {COMPILED_TIMES_NOTE}", stacklevel=stacklevel
        )
    return inner
