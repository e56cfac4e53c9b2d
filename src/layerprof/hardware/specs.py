"""DeviceSpec: the ceilings of one roofline target, peak FLOP/s per unit and dtype, memory bandwidth.

A :class:`DeviceSpec` has two compute ceilings, one per execution unit:

* ``matrix_peak_flops_per_s``: the matrix engines (tensor cores, AMX, or the plain FMA units when the
  device has no matrix engine) running dense GEMM/convolution. No structured-sparsity figures: where a
  datasheet quotes "with sparsity", the table holds half of it.
* ``vector_peak_flops_per_s``: the general-purpose FMA units (CUDA cores, SIMD lanes) running
  elementwise work, counting 2 FLOPs per fused multiply-add.

Both are keyed by dtype name: ``float32``, ``tf32`` (matrix only), ``float16``, ``bfloat16``, ``int8``,
``float8``, ``float64``. A device lists only the dtypes it really has a figure for; asking for another
falls back to its float32 figure with one :class:`PeakFallbackWarning`.

:meth:`DeviceSpec.to_dict` and :meth:`DeviceSpec.from_dict` are the one serialisation of a spec: the
device-file schema that the built-in table, user device files and measurement caches all use.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

import torch

from layerprof.core.dtypes import PEAK_KEYS, peak_key
from layerprof.errors import InvalidArgumentError, InvalidDeviceSpecError

__all__ = [
    "DTYPE_KEYS",
    "CacheLevel",
    "DeviceKind",
    "DeviceSpec",
    "DtypeLike",
    "PeakFallbackWarning",
    "lookup_key",
    "normalize_dtype",
    "positive_finite",
]

DeviceKind = Literal["gpu", "cpu"]
Unit = Literal["matrix", "vector"]
DtypeLike: TypeAlias = "torch.dtype | str"

#: Dtype keys a peak mapping may carry. ``tf32`` is a matrix-only compute mode of float32 tensors.
DTYPE_KEYS: tuple[str, ...] = PEAK_KEYS
_MATRIX_ONLY_KEYS = frozenset({"tf32"})
_UNITS: tuple[Unit, ...] = ("matrix", "vector")

_FIELDS = (
    "name",
    "full_name",
    "kind",
    "memory_bandwidth_bytes_per_s",
    "matrix_peak_flops_per_s",
    "vector_peak_flops_per_s",
    "aliases",
    "l2_cache_bytes",
    "cache_levels",
    "memory_bytes",
    "launch_overhead_s",
    "price_usd",
    "price_per_hour_usd",
    "sources",
    "measured",
)
_REQUIRED_FIELDS = (
    "name",
    "memory_bandwidth_bytes_per_s",
    "matrix_peak_flops_per_s",
    "vector_peak_flops_per_s",
)


class PeakFallbackWarning(UserWarning):
    """A device has no peak for the asked dtype and unit; its float32 peak was used instead."""


def normalize_dtype(dtype: DtypeLike) -> str:
    """Return the table key (``"float32"``, ``"float16"``, ...) for a torch dtype or a dtype name.

    Raises :class:`InvalidArgumentError` naming the value when it is no dtype layerprof knows.
    """
    return peak_key(dtype)


def lookup_key(name: str) -> str:
    """Case-insensitive key with ``-``, ``_`` and spaces ignored: "H100 SXM" == "h100-sxm"."""
    return re.sub(r"[-_\s]+", "", name.strip().lower())


def _check_unit(unit: str) -> Unit:
    if unit == "matrix":
        return "matrix"
    if unit == "vector":
        return "vector"
    raise InvalidArgumentError(f"unit must be 'matrix' or 'vector', got {unit!r}")


def positive_finite(value: object) -> bool:
    """An int or float (not a bool) that is finite and above zero."""
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def _frozen_peaks(device: str, field_name: str, peaks: Mapping[str, float]) -> Mapping[str, float]:
    if not isinstance(peaks, Mapping):
        raise InvalidDeviceSpecError(
            f"device {device!r}: {field_name} must be a mapping of dtype name to FLOP/s, got {peaks!r}"
        )
    frozen: dict[str, float] = {}
    for key, value in peaks.items():
        if key not in DTYPE_KEYS:
            raise InvalidDeviceSpecError(
                f"device {device!r}: {field_name} has unknown dtype key {key!r}; "
                f"use one of {', '.join(DTYPE_KEYS)}"
            )
        if field_name == "vector_peak_flops_per_s" and key in _MATRIX_ONLY_KEYS:
            raise InvalidDeviceSpecError(
                f"device {device!r}: {field_name} has key {key!r}, which is a matrix-only mode"
            )
        if not positive_finite(value):
            raise InvalidDeviceSpecError(
                f"device {device!r}: {field_name}[{key!r}] must be a positive finite number, got {value!r}"
            )
        frozen[key] = float(value)
    if "float32" not in frozen:
        raise InvalidDeviceSpecError(f"device {device!r}: {field_name} must have a 'float32' peak")
    return MappingProxyType(frozen)


@dataclass(frozen=True, slots=True)
class CacheLevel:
    """One cache level of a target's memory hierarchy: a name (``"L2"``, ``"LLC"``), how many bytes it
    holds, and the bandwidth it serves them at. DRAM is not a level: it is the device's
    ``memory_bandwidth_bytes_per_s`` and ``memory_bytes``."""

    name: str
    capacity_bytes: int
    bandwidth_bytes_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "capacity_bytes": self.capacity_bytes,
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
        }


def _cache_levels(device: str, levels: object) -> tuple[CacheLevel, ...]:
    """The levels of a device entry (CacheLevels or dicts), checked, innermost (smallest) first."""
    if isinstance(levels, (str, bytes, Mapping)) or not isinstance(levels, (list, tuple)):
        raise InvalidDeviceSpecError(
            f"device {device!r}: cache_levels must be a list of levels, got {levels!r}"
        )
    checked: list[CacheLevel] = []
    for index, level in enumerate(levels):
        if isinstance(level, CacheLevel):
            level = level.to_dict()
        if not isinstance(level, Mapping):
            raise InvalidDeviceSpecError(
                f"device {device!r}: cache_levels[{index}] must be a table with name, capacity_bytes "
                f"and bandwidth_bytes_per_s, got {level!r}"
            )
        name = level.get("name")
        if not isinstance(name, str) or not name.strip() or name.upper() == "DRAM":
            raise InvalidDeviceSpecError(
                f"device {device!r}: cache_levels[{index}].name must be a non-empty name other than "
                f"DRAM, got {name!r}"
            )
        unknown = sorted(set(level) - {"name", "capacity_bytes", "bandwidth_bytes_per_s"})
        if unknown:
            raise InvalidDeviceSpecError(
                f"device {device!r}: cache_levels[{name!r}] has unknown keys {unknown}"
            )
        for key in ("capacity_bytes", "bandwidth_bytes_per_s"):
            if key not in level:
                raise InvalidDeviceSpecError(f"device {device!r}: cache_levels[{name!r}] lacks {key}")
        capacity = level["capacity_bytes"]
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity <= 0:
            raise InvalidDeviceSpecError(
                f"device {device!r}: cache_levels[{name!r}].capacity_bytes must be a positive int, "
                f"got {capacity!r}"
            )
        bandwidth = level["bandwidth_bytes_per_s"]
        if not positive_finite(bandwidth):
            raise InvalidDeviceSpecError(
                f"device {device!r}: cache_levels[{name!r}].bandwidth_bytes_per_s must be a positive "
                f"finite number, got {bandwidth!r}"
            )
        if checked and capacity <= checked[-1].capacity_bytes:
            raise InvalidDeviceSpecError(
                f"device {device!r}: cache_levels[{name!r}].capacity_bytes = {capacity!r} is not above "
                f"the level inside it ({checked[-1].name}: {checked[-1].capacity_bytes!r}); list the "
                f"levels innermost first"
            )
        if any(c.name == name for c in checked):
            raise InvalidDeviceSpecError(f"device {device!r}: cache level {name!r} is listed twice")
        checked.append(CacheLevel(name, capacity, float(bandwidth)))
    return tuple(checked)


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """Ceilings of one device for the roofline model; every figure in base units (bytes/s, FLOP/s).

    ``sources`` maps a figure (``"memory_bandwidth_bytes_per_s"``,
    ``"matrix_peak_flops_per_s.float16"``, ``"l2_cache_bytes"``, ...) to where it comes from: a
    datasheet or whitepaper title and URL, or how it was derived or measured. The peak mappings are
    read-only and excluded from the hash (they are still compared by ``==``).
    """

    name: str
    full_name: str
    kind: DeviceKind
    memory_bandwidth_bytes_per_s: float
    matrix_peak_flops_per_s: Mapping[str, float] = field(hash=False)
    vector_peak_flops_per_s: Mapping[str, float] = field(hash=False)
    aliases: tuple[str, ...] = ()
    l2_cache_bytes: int | None = None
    #: The caches between the compute units and DRAM, innermost (smallest) first. Empty: DRAM only.
    cache_levels: tuple[CacheLevel, ...] = ()
    #: The device's memory capacity in bytes (HBM, GDDR, or the host's RAM); None when unknown.
    memory_bytes: int | None = None
    #: The launch/dispatch floor of one kernel in seconds: no kernel runs faster than this.
    launch_overhead_s: float | None = None
    price_usd: float | None = None
    #: A typical on-demand cloud price of one such device per hour, USD (its source names the
    #: provider, region and date); None when the table has no published figure.
    price_per_hour_usd: float | None = None
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    measured: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidDeviceSpecError(f"device name must be a non-empty string, got {self.name!r}")
        device = self.name
        if self.kind not in ("gpu", "cpu"):
            raise InvalidDeviceSpecError(f"device {device!r}: kind must be 'gpu' or 'cpu', got {self.kind!r}")
        if not positive_finite(self.memory_bandwidth_bytes_per_s):
            raise InvalidDeviceSpecError(
                f"device {device!r}: memory_bandwidth_bytes_per_s must be a positive finite number, "
                f"got {self.memory_bandwidth_bytes_per_s!r}"
            )
        matrix = _frozen_peaks(device, "matrix_peak_flops_per_s", self.matrix_peak_flops_per_s)
        vector = _frozen_peaks(device, "vector_peak_flops_per_s", self.vector_peak_flops_per_s)
        for key, vector_peak in vector.items():
            if key in matrix and matrix[key] < vector_peak:
                raise InvalidDeviceSpecError(
                    f"device {device!r}: matrix_peak_flops_per_s[{key!r}] = {matrix[key]!r} is below "
                    f"vector_peak_flops_per_s[{key!r}] = {vector_peak!r}; a matrix engine is never slower "
                    f"than the FMA units (they run GEMMs too)"
                )
        for name, value in (("l2_cache_bytes", self.l2_cache_bytes), ("memory_bytes", self.memory_bytes)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise InvalidDeviceSpecError(
                    f"device {device!r}: {name} must be a positive int or None, got {value!r}"
                )
        for name, optional in (
            ("launch_overhead_s", self.launch_overhead_s),
            ("price_usd", self.price_usd),
            ("price_per_hour_usd", self.price_per_hour_usd),
        ):
            if optional is not None and not positive_finite(optional):
                raise InvalidDeviceSpecError(
                    f"device {device!r}: {name} must be a positive finite number or None, got {optional!r}"
                )
        levels = _cache_levels(device, self.cache_levels)
        for level in levels:
            if self.memory_bytes is not None and level.capacity_bytes >= self.memory_bytes:
                raise InvalidDeviceSpecError(
                    f"device {device!r}: cache_levels[{level.name!r}].capacity_bytes = "
                    f"{level.capacity_bytes!r} is not below memory_bytes = {self.memory_bytes!r}; a cache "
                    f"is smaller than the memory it caches"
                )
        object.__setattr__(self, "cache_levels", levels)
        if isinstance(self.aliases, str) or not all(isinstance(a, str) and a for a in self.aliases):
            raise InvalidDeviceSpecError(
                f"device {device!r}: aliases must be a sequence of non-empty strings, got {self.aliases!r}"
            )
        if not isinstance(self.sources, Mapping):
            raise InvalidDeviceSpecError(
                f"device {device!r}: sources must be a mapping, got {self.sources!r}"
            )
        object.__setattr__(self, "memory_bandwidth_bytes_per_s", float(self.memory_bandwidth_bytes_per_s))
        object.__setattr__(self, "matrix_peak_flops_per_s", matrix)
        object.__setattr__(self, "vector_peak_flops_per_s", vector)
        object.__setattr__(self, "aliases", tuple(self.aliases))
        object.__setattr__(
            self, "sources", MappingProxyType({str(k): str(v) for k, v in self.sources.items()})
        )

    def peak_flops_per_s(self, dtype: DtypeLike, unit: str = "matrix", *, allow_tf32: bool = False) -> float:
        """Peak FLOP/s of ``unit`` (``"matrix"`` or ``"vector"``) for ``dtype`` on this device.

        float32 matrix work uses the ``tf32`` peak when ``allow_tf32`` is true and the device has one
        (TF32 is how tensor cores run float32 GEMMs and convolutions when torch allows it). A dtype the
        device has no figure for falls back to the float32 figure of the same unit, with one
        :class:`PeakFallbackWarning` naming the device and the dtype.
        """
        checked_unit = _check_unit(unit)
        key = normalize_dtype(dtype)
        peaks = self.matrix_peak_flops_per_s if checked_unit == "matrix" else self.vector_peak_flops_per_s
        if key == "tf32" and checked_unit == "vector":
            # TF32 only exists inside matrix engines; elementwise work on float32 tensors is float32.
            key = "float32"
        if key == "float32" and checked_unit == "matrix" and allow_tf32 and "tf32" in peaks:
            return peaks["tf32"]
        if key in peaks:
            return peaks[key]
        warnings.warn(
            f"{self.name} has no {key} {checked_unit} peak; using its float32 peak",
            PeakFallbackWarning,
            stacklevel=2,
        )
        return peaks["float32"]

    def ridge_point(self, dtype: DtypeLike, unit: str = "matrix", *, allow_tf32: bool = False) -> float:
        """Operational intensity (FLOPs per byte) where ``unit``'s peak meets the memory roof."""
        peak = self.peak_flops_per_s(dtype, unit, allow_tf32=allow_tf32)
        return peak / self.memory_bandwidth_bytes_per_s

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict in the device file schema (what :meth:`from_dict` reads back)."""
        return {
            "name": self.name,
            "full_name": self.full_name,
            "kind": self.kind,
            "memory_bandwidth_bytes_per_s": self.memory_bandwidth_bytes_per_s,
            "matrix_peak_flops_per_s": dict(self.matrix_peak_flops_per_s),
            "vector_peak_flops_per_s": dict(self.vector_peak_flops_per_s),
            "aliases": list(self.aliases),
            "l2_cache_bytes": self.l2_cache_bytes,
            "cache_levels": [level.to_dict() for level in self.cache_levels],
            "memory_bytes": self.memory_bytes,
            "launch_overhead_s": self.launch_overhead_s,
            "price_usd": self.price_usd,
            "price_per_hour_usd": self.price_per_hour_usd,
            "sources": dict(self.sources),
            "measured": self.measured,
        }

    @classmethod
    def from_dict(cls, entry: Mapping[str, Any], *, origin: str = "device entry") -> DeviceSpec:
        """Build a :class:`DeviceSpec` from one entry of a device file (JSON or TOML schema).

        Required keys: ``name``, ``memory_bandwidth_bytes_per_s``, ``matrix_peak_flops_per_s``,
        ``vector_peak_flops_per_s``. Optional: ``full_name`` (defaults to ``name``), ``kind`` (``"gpu"``),
        ``aliases``, ``l2_cache_bytes``, ``cache_levels``, ``memory_bytes``, ``launch_overhead_s``,
        ``price_usd``, ``price_per_hour_usd``, ``sources``, ``measured``.
        Unknown keys are refused so that a typo does not silently drop a figure.
        """
        if not isinstance(entry, Mapping):
            raise InvalidDeviceSpecError(f"{origin}: a device entry must be a table/object, got {entry!r}")
        label = entry.get("name", "?")
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise InvalidDeviceSpecError(
                f"{origin}: device {label!r} has unknown keys {unknown}; known keys: {', '.join(_FIELDS)}"
            )
        missing = [key for key in _REQUIRED_FIELDS if key not in entry]
        if missing:
            raise InvalidDeviceSpecError(f"{origin}: device {label!r} lacks {', '.join(missing)}")
        name = entry["name"]
        aliases = entry.get("aliases", ())
        if isinstance(aliases, str) or not isinstance(aliases, (list, tuple)):
            raise InvalidDeviceSpecError(
                f"{origin}: device {label!r}: aliases must be a list, got {aliases!r}"
            )
        measured = entry.get("measured", False)
        if not isinstance(measured, bool):
            raise InvalidDeviceSpecError(
                f"{origin}: device {label!r}: measured must be a bool, got {measured!r}"
            )
        return cls(
            name=name,
            full_name=str(entry.get("full_name", name)),
            kind=entry.get("kind", "gpu"),
            memory_bandwidth_bytes_per_s=entry["memory_bandwidth_bytes_per_s"],
            matrix_peak_flops_per_s=entry["matrix_peak_flops_per_s"],
            vector_peak_flops_per_s=entry["vector_peak_flops_per_s"],
            aliases=tuple(aliases),
            l2_cache_bytes=entry.get("l2_cache_bytes"),
            cache_levels=entry.get("cache_levels", ()),
            memory_bytes=entry.get("memory_bytes"),
            launch_overhead_s=entry.get("launch_overhead_s"),
            price_usd=entry.get("price_usd"),
            price_per_hour_usd=entry.get("price_per_hour_usd"),
            sources=entry.get("sources", {}),
            measured=measured,
        )
