"""The memory side of ``analyze``: which allocator rules its targets need, and the optimizer to step."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec
from layerprof.report.memory import rule_of
from layerprof.walk.memory_optim import optimizer_spec
from layerprof.walk.memory_run import FootprintRun

__all__ = ["footprint_run"]


def footprint_run(
    model: nn.Module, targets: Sequence[DeviceSpec], *, optimizer: object, backward: bool, on_meta: bool
) -> FootprintRun:
    """A tracker for one counted run; ``optimizer`` (an instance or a name) needs ``backward=True``."""
    spec = optimizer_spec(optimizer, model)
    if spec is not None and not backward:
        raise InvalidArgumentError(
            f"optimizer={optimizer!r:.60} counts the optimizer step of a training step: "
            "pass backward=True too"
        )
    rules = {rule_of(t) for t in targets} or {rule_of(None)}
    return FootprintRun(optimizer=spec, rules=rules, on_meta=on_meta)
