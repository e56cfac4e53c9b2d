"""Resolving the ``target`` argument: names, DeviceSpecs, ``"auto"`` (this machine, measured)."""

from __future__ import annotations

from collections.abc import Sequence

from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.table import get_device

TargetArg = str | DeviceSpec | Sequence[str | DeviceSpec] | None


def resolve_targets(target: TargetArg) -> tuple[DeviceSpec, ...]:
    """DeviceSpecs for a name, a spec, ``"auto"`` (this machine, measured) or a list of those."""
    if target is None:
        return ()
    if isinstance(target, (str, DeviceSpec)):
        items: list[object] = [target]
    elif isinstance(target, (list, tuple)):
        items = list(target)
        if not items:
            raise InvalidArgumentError("target is an empty list; pass None for no target")
    else:
        raise InvalidArgumentError(
            f"target must be a device name, a DeviceSpec, 'auto' or a list of them, got {target!r:.80}"
        )
    specs: list[DeviceSpec] = []
    for item in items:
        if isinstance(item, DeviceSpec):
            specs.append(item)
        elif isinstance(item, str) and item.strip().lower() == "auto":
            from layerprof.hardware.measure import measure_device  # measuring is slow: only when asked

            specs.append(measure_device())
        elif isinstance(item, str):
            specs.append(get_device(item))
        else:
            raise InvalidArgumentError(f"target must be a device name, a DeviceSpec or 'auto', got {item!r}")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise InvalidArgumentError(f"target lists a device twice: {names}")
    return tuple(specs)
