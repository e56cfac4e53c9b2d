"""LinkSpec: an interconnect between devices (PCIe, NVLink, Ethernet), as a ring all-reduce sees it.

:meth:`LinkSpec.to_dict` and :meth:`LinkSpec.from_dict` are its serialisation: an entry of a device
file's ``links`` list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from layerprof.errors import InvalidDeviceSpecError
from layerprof.hardware.specs import positive_finite

__all__ = ["LinkSpec"]

_LINK_FIELDS = ("name", "full_name", "bandwidth_bytes_per_s", "latency_s", "aliases", "sources")


@dataclass(frozen=True, slots=True)
class LinkSpec:
    """An interconnect between devices, as a ring all-reduce sees it from one GPU.

    ``bandwidth_bytes_per_s`` is per direction and per GPU: what one GPU can send to its ring
    neighbour while it receives as much from the other (a ring all-reduce step uses both directions
    at once). Datasheets quote the two directions added up (NVLink 4 on H100: 900 GB/s total,
    450 GB/s per direction). ``latency_s`` is the fixed cost of one ring step. ``sources`` maps each
    figure to where it comes from or how it was derived.
    """

    name: str
    full_name: str
    bandwidth_bytes_per_s: float
    latency_s: float
    aliases: tuple[str, ...] = ()
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidDeviceSpecError(f"link name must be a non-empty string, got {self.name!r}")
        if not positive_finite(self.bandwidth_bytes_per_s):
            raise InvalidDeviceSpecError(
                f"link {self.name!r}: bandwidth_bytes_per_s must be a positive finite number, "
                f"got {self.bandwidth_bytes_per_s!r}"
            )
        latency = self.latency_s
        if (
            isinstance(latency, bool)
            or not isinstance(latency, (int, float))
            or not math.isfinite(latency)
            or latency < 0
        ):
            raise InvalidDeviceSpecError(
                f"link {self.name!r}: latency_s must be a finite number >= 0, got {latency!r}"
            )
        if isinstance(self.aliases, str) or not all(isinstance(a, str) and a for a in self.aliases):
            raise InvalidDeviceSpecError(
                f"link {self.name!r}: aliases must be a sequence of non-empty strings, got {self.aliases!r}"
            )
        if not isinstance(self.sources, Mapping):
            raise InvalidDeviceSpecError(
                f"link {self.name!r}: sources must be a mapping, got {self.sources!r}"
            )
        object.__setattr__(self, "bandwidth_bytes_per_s", float(self.bandwidth_bytes_per_s))
        object.__setattr__(self, "latency_s", float(latency))
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(
            self, "sources", MappingProxyType({str(k): str(v) for k, v in self.sources.items()})
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict in the device file's ``links`` schema."""
        return {
            "name": self.name,
            "full_name": self.full_name,
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "latency_s": self.latency_s,
            "aliases": list(self.aliases),
            "sources": dict(self.sources),
        }

    @classmethod
    def from_dict(cls, entry: object, *, origin: str = "link entry") -> LinkSpec:
        """A :class:`LinkSpec` from one entry of a device file's ``links`` list; unknown keys are refused."""
        if not isinstance(entry, Mapping):
            raise InvalidDeviceSpecError(f"{origin}: a link entry must be a table/object, got {entry!r}")
        label = entry.get("name", "?")
        unknown = sorted(set(entry) - set(_LINK_FIELDS))
        missing = [key for key in ("name", "bandwidth_bytes_per_s", "latency_s") if key not in entry]
        if unknown or missing:
            raise InvalidDeviceSpecError(
                f"{origin}: link {label!r} has unknown keys {unknown} / lacks {missing}; "
                f"known keys: {', '.join(_LINK_FIELDS)}"
            )
        aliases = entry.get("aliases", ())
        if isinstance(aliases, str) or not isinstance(aliases, (list, tuple)):
            raise InvalidDeviceSpecError(f"{origin}: link {label!r}: aliases must be a list, got {aliases!r}")
        return cls(
            name=entry["name"],
            full_name=str(entry.get("full_name", entry["name"])),
            bandwidth_bytes_per_s=entry["bandwidth_bytes_per_s"],
            latency_s=entry["latency_s"],
            aliases=tuple(aliases),
            sources=entry.get("sources", {}),
        )
