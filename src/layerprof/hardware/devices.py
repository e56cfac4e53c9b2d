"""Device specs: peak FLOP/s per unit and dtype, memory bandwidth, and where each figure comes from.

A :class:`DeviceSpec` describes one target of the roofline model. It has two compute ceilings, one per
execution unit:

* ``matrix_peak_flops_per_s``: the matrix engines (tensor cores, AMX, or the plain FMA units when the
  device has no matrix engine) running dense GEMM/convolution. No structured-sparsity figures: where a
  datasheet quotes "with sparsity", the table holds half of it.
* ``vector_peak_flops_per_s``: the general-purpose FMA units (CUDA cores, SIMD lanes) running
  elementwise work, counting 2 FLOPs per fused multiply-add.

Both are keyed by dtype name: ``float32``, ``tf32`` (matrix only), ``float16``, ``bfloat16``, ``int8``,
``float8``, ``float64``. A device lists only the dtypes it really has a figure for; asking for another
falls back to its float32 figure with one :class:`PeakFallbackWarning`.

The built-in table lives in ``data/devices.json`` and is loaded once, at import, into an immutable
tuple. There is no global registry to add to: functions that look devices up take an optional
``extra`` iterable of user :class:`DeviceSpec` objects (for example from :func:`load_devices`) that is
searched before the table. The same file lists the interconnects between devices
(:class:`LinkSpec`: PCIe, NVLink, Ethernet), read by :func:`get_link` and :func:`list_links`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeAlias

import torch

from layerprof.core.dtypes import PEAK_KEYS, peak_key
from layerprof.errors import InvalidArgumentError, InvalidDeviceSpecError, UnknownDeviceError

__all__ = [
    "DTYPE_KEYS",
    "DeviceKind",
    "DeviceSpec",
    "DtypeLike",
    "LinkSpec",
    "PeakFallbackWarning",
    "device_table",
    "get_device",
    "get_link",
    "list_devices",
    "list_links",
    "load_devices",
    "match_device_name",
    "normalize_dtype",
    "spec_from_dict",
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
    "launch_overhead_s",
    "price_usd",
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


def _check_unit(unit: str) -> Unit:
    if unit == "matrix":
        return "matrix"
    if unit == "vector":
        return "vector"
    raise InvalidArgumentError(f"unit must be 'matrix' or 'vector', got {unit!r}")


def _positive_finite(value: object) -> bool:
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
        if not _positive_finite(value):
            raise InvalidDeviceSpecError(
                f"device {device!r}: {field_name}[{key!r}] must be a positive finite number, got {value!r}"
            )
        frozen[key] = float(value)
    if "float32" not in frozen:
        raise InvalidDeviceSpecError(f"device {device!r}: {field_name} must have a 'float32' peak")
    return MappingProxyType(frozen)


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
    launch_overhead_s: float | None = None
    price_usd: float | None = None
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    measured: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InvalidDeviceSpecError(f"device name must be a non-empty string, got {self.name!r}")
        device = self.name
        if self.kind not in ("gpu", "cpu"):
            raise InvalidDeviceSpecError(f"device {device!r}: kind must be 'gpu' or 'cpu', got {self.kind!r}")
        if not _positive_finite(self.memory_bandwidth_bytes_per_s):
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
        for name, value in (("l2_cache_bytes", self.l2_cache_bytes),):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise InvalidDeviceSpecError(
                    f"device {device!r}: {name} must be a positive int or None, got {value!r}"
                )
        for name, optional in (("launch_overhead_s", self.launch_overhead_s), ("price_usd", self.price_usd)):
            if optional is not None and not _positive_finite(optional):
                raise InvalidDeviceSpecError(
                    f"device {device!r}: {name} must be a positive finite number or None, got {optional!r}"
                )
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
        """A JSON-ready dict in the device file schema (what :func:`spec_from_dict` reads back)."""
        return {
            "name": self.name,
            "full_name": self.full_name,
            "kind": self.kind,
            "memory_bandwidth_bytes_per_s": self.memory_bandwidth_bytes_per_s,
            "matrix_peak_flops_per_s": dict(self.matrix_peak_flops_per_s),
            "vector_peak_flops_per_s": dict(self.vector_peak_flops_per_s),
            "aliases": list(self.aliases),
            "l2_cache_bytes": self.l2_cache_bytes,
            "launch_overhead_s": self.launch_overhead_s,
            "price_usd": self.price_usd,
            "sources": dict(self.sources),
            "measured": self.measured,
        }


def spec_from_dict(entry: Mapping[str, Any], *, origin: str = "device entry") -> DeviceSpec:
    """Build a :class:`DeviceSpec` from one entry of a device file (JSON or TOML schema).

    Required keys: ``name``, ``memory_bandwidth_bytes_per_s``, ``matrix_peak_flops_per_s``,
    ``vector_peak_flops_per_s``. Optional: ``full_name`` (defaults to ``name``), ``kind`` (``"gpu"``),
    ``aliases``, ``l2_cache_bytes``, ``launch_overhead_s``, ``price_usd``, ``sources``, ``measured``.
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
        raise InvalidDeviceSpecError(f"{origin}: device {label!r}: aliases must be a list, got {aliases!r}")
    measured = entry.get("measured", False)
    if not isinstance(measured, bool):
        raise InvalidDeviceSpecError(f"{origin}: device {label!r}: measured must be a bool, got {measured!r}")
    return DeviceSpec(
        name=name,
        full_name=str(entry.get("full_name", name)),
        kind=entry.get("kind", "gpu"),
        memory_bandwidth_bytes_per_s=entry["memory_bandwidth_bytes_per_s"],
        matrix_peak_flops_per_s=entry["matrix_peak_flops_per_s"],
        vector_peak_flops_per_s=entry["vector_peak_flops_per_s"],
        aliases=tuple(aliases),
        l2_cache_bytes=entry.get("l2_cache_bytes"),
        launch_overhead_s=entry.get("launch_overhead_s"),
        price_usd=entry.get("price_usd"),
        sources=entry.get("sources", {}),
        measured=measured,
    )


def _entries_of(document: object, origin: str) -> list[Any]:
    if isinstance(document, Mapping):
        entries = document.get("devices")
        if entries is None:
            raise InvalidDeviceSpecError(f"{origin}: expected a 'devices' list at the top level")
    else:
        entries = document
    if not isinstance(entries, list):
        raise InvalidDeviceSpecError(f"{origin}: 'devices' must be a list of device entries, got {entries!r}")
    return entries


def _specs_from_document(document: object, origin: str) -> tuple[DeviceSpec, ...]:
    entries = _entries_of(document, origin)
    specs = tuple(spec_from_dict(entry, origin=origin) for entry in entries)
    _check_unique(specs, origin)
    return specs


def _lookup_key(name: str) -> str:
    """Case-insensitive key with ``-``, ``_`` and spaces ignored: "H100 SXM" == "h100-sxm"."""
    return re.sub(r"[-_\s]+", "", name.strip().lower())


def _check_unique(specs: Iterable[DeviceSpec], origin: str) -> None:
    owner: dict[str, tuple[int, str]] = {}
    for position, spec in enumerate(specs):
        for label in (spec.name, *spec.aliases):
            key = _lookup_key(label)
            if key in owner and owner[key][0] != position:
                raise InvalidDeviceSpecError(
                    f"{origin}: name or alias {label!r} of device {spec.name!r} is already used by "
                    f"device {owner[key][1]!r}"
                )
            owner[key] = (position, spec.name)


def _builtin_document() -> object:
    text = (
        resources.files("layerprof.hardware")
        .joinpath("data")
        .joinpath("devices.json")
        .read_text(encoding="utf-8")
    )
    return json.loads(text)


_BUILTIN_ORIGIN = "layerprof/hardware/data/devices.json"
_TABLE: tuple[DeviceSpec, ...] = _specs_from_document(_builtin_document(), _BUILTIN_ORIGIN)
_TABLE_INDEX: Mapping[str, DeviceSpec] = MappingProxyType(
    {_lookup_key(label): spec for spec in _TABLE for label in (spec.name, *spec.aliases)}
)


def list_devices(extra: Iterable[DeviceSpec] = ()) -> tuple[DeviceSpec, ...]:
    """The built-in devices in table order, followed by ``extra``."""
    return _TABLE + tuple(extra)


def device_table(extra: Iterable[DeviceSpec] = ()) -> Mapping[str, DeviceSpec]:
    """Read-only mapping of canonical name to spec: the built-in table plus ``extra``.

    A spec in ``extra`` replaces a built-in spec of the same name (the user's figures win); two specs
    in ``extra`` with the same name or alias raise :class:`InvalidDeviceSpecError`.
    """
    extras = tuple(extra)
    _check_unique(extras, "extra devices")
    table = {spec.name: spec for spec in _TABLE}
    table.update({spec.name: spec for spec in extras})
    return MappingProxyType(table)


def get_device(name: str | DeviceSpec, extra: Iterable[DeviceSpec] = ()) -> DeviceSpec:
    """Look a device up by name or alias (case-insensitive; ``-``, ``_`` and spaces ignored).

    ``extra`` specs are searched before the built-in table. A :class:`DeviceSpec` is returned as is.
    An unknown name raises :class:`UnknownDeviceError` listing the three closest names.
    """
    if isinstance(name, DeviceSpec):
        return name
    if not isinstance(name, str):
        raise InvalidArgumentError(f"device must be a name or a DeviceSpec, got {name!r}")
    extras = tuple(extra)
    key = _lookup_key(name)
    for spec in extras:
        if key in {_lookup_key(label) for label in (spec.name, *spec.aliases)}:
            return spec
    found = _TABLE_INDEX.get(key)
    if found is not None:
        return found
    raise UnknownDeviceError(_unknown_message(name, extras))


def _unknown_message(name: str, extras: tuple[DeviceSpec, ...]) -> str:
    candidates: dict[str, str] = {}
    for spec in (*extras, *_TABLE):
        for label in (spec.name, *spec.aliases):
            candidates.setdefault(_lookup_key(label), spec.name)
    matches = difflib.get_close_matches(_lookup_key(name), list(candidates), n=len(candidates), cutoff=0.0)
    closest: list[str] = []
    for match in matches:
        canonical = candidates[match]
        if canonical not in closest:
            closest.append(canonical)
        if len(closest) == 3:
            break
    return (
        f"unknown device {name!r}; closest: {', '.join(closest)}. "
        f"layerprof.list_devices() lists them all; pass a DeviceSpec or use load_devices() for others"
    )


def load_devices(path: str | Path) -> tuple[DeviceSpec, ...]:
    """Read user device specs from a JSON or TOML file with the built-in table's schema.

    JSON: ``{"devices": [{...}, ...]}`` or a bare list. TOML: ``[[devices]]`` tables, with the peak
    mappings as sub-tables (``[devices.matrix_peak_flops_per_s]``). The result can be passed as
    ``extra`` to :func:`get_device` / :func:`device_table`, or each spec used as a target directly.
    """
    file = Path(path)
    if not file.is_file():
        raise InvalidArgumentError(f"device file {str(file)!r} does not exist or is not a file")
    suffix = file.suffix.lower()
    origin = str(file)
    if suffix == ".json":
        try:
            document: object = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise InvalidDeviceSpecError(f"{origin}: not valid JSON: {error}") from error
    elif suffix == ".toml":
        document = _read_toml(file)
    else:
        raise InvalidArgumentError(f"device file {origin!r} must end in .json or .toml, got {suffix!r}")
    return _specs_from_document(document, origin)


def _read_toml(file: Path) -> object:
    if sys.version_info >= (3, 11):
        import tomllib as toml_reader
    else:  # pragma: no cover - exercised on Python 3.10 only
        try:
            import tomli as toml_reader
        except ImportError as error:
            raise InvalidArgumentError(
                f"reading {str(file)!r} needs a TOML parser: Python 3.11+ or `pip install tomli`"
            ) from error
    try:
        with file.open("rb") as handle:
            return toml_reader.load(handle)
    except toml_reader.TOMLDecodeError as error:
        raise InvalidDeviceSpecError(f"{file}: not valid TOML: {error}") from error


# -- interconnects -------------------------------------------------------------------------------

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
        if not _positive_finite(self.bandwidth_bytes_per_s):
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


def _link_from_dict(entry: object, origin: str) -> LinkSpec:
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
    return LinkSpec(
        name=entry["name"],
        full_name=str(entry.get("full_name", entry["name"])),
        bandwidth_bytes_per_s=entry["bandwidth_bytes_per_s"],
        latency_s=entry["latency_s"],
        aliases=tuple(aliases),
        sources=entry.get("sources", {}),
    )


def _links_from_document(document: object, origin: str) -> tuple[LinkSpec, ...]:
    entries = document.get("links", []) if isinstance(document, Mapping) else []
    if not isinstance(entries, list):
        raise InvalidDeviceSpecError(f"{origin}: 'links' must be a list of link entries, got {entries!r}")
    links = tuple(_link_from_dict(entry, origin) for entry in entries)
    owner: dict[str, str] = {}
    for link in links:
        for label in (link.name, *link.aliases):
            key = _lookup_key(label)
            if owner.get(key, link.name) != link.name:
                raise InvalidDeviceSpecError(
                    f"{origin}: name or alias {label!r} of link {link.name!r} is already used by "
                    f"link {owner[key]!r}"
                )
            owner[key] = link.name
    return links


_LINKS: tuple[LinkSpec, ...] = _links_from_document(_builtin_document(), _BUILTIN_ORIGIN)
_LINK_INDEX: Mapping[str, LinkSpec] = MappingProxyType(
    {_lookup_key(label): link for link in _LINKS for label in (link.name, *link.aliases)}
)


def list_links() -> tuple[LinkSpec, ...]:
    """The built-in interconnects in table order (PCIe, NVLink, Ethernet)."""
    return _LINKS


def get_link(name: str | LinkSpec) -> LinkSpec:
    """Look a link up by name or alias (case-insensitive; ``-``, ``_`` and spaces ignored).

    A :class:`LinkSpec` is returned as is. An unknown name raises :class:`UnknownDeviceError` listing
    the three closest names.
    """
    if isinstance(name, LinkSpec):
        return name
    if not isinstance(name, str):
        raise InvalidArgumentError(f"link must be a name or a LinkSpec, got {name!r}")
    found = _LINK_INDEX.get(_lookup_key(name))
    if found is not None:
        return found
    matches = difflib.get_close_matches(_lookup_key(name), list(_LINK_INDEX), n=len(_LINK_INDEX), cutoff=0.0)
    closest = list(dict.fromkeys(_LINK_INDEX[match].name for match in matches))[:3]
    raise UnknownDeviceError(
        f"unknown link {name!r}; closest: {', '.join(closest)}. "
        f"layerprof.list_links() lists them all; pass a LinkSpec for others"
    )


# torch.cuda.get_device_name() patterns -> table names. Checked in order, on the upper-cased name; a
# name matching an exclusion is a different board (other clocks or memory) and gets no match.
_NAME_RULES: tuple[tuple[re.Pattern[str], re.Pattern[str] | None, str], ...] = tuple(
    (re.compile(pattern), re.compile(exclude) if exclude else None, name)
    for pattern, exclude, name in (
        (r"\bH100\b.*\bPCIE\b", None, "h100-pcie"),
        (r"\bH100\b", r"\bNVL\b|\bPCIE\b", "h100-sxm"),
        (r"\bH200\b", r"\bNVL\b", "h200"),
        (r"\bA100\b.*80\s*GB", r"\bPCIE\b", "a100-80gb"),
        (r"\bA100\b.*40\s*GB", None, "a100-40gb"),
        (r"\bV100\b.*\bSXM2\b", None, "v100-sxm2"),
        (r"\bP100\b.*\bSXM2\b", None, "p100-sxm2"),
        (r"\bL40S\b", None, "l40s"),
        (r"\bL4\b", None, "l4"),
        (r"\bA10\b", None, "a10"),
        (r"\bT4\b", None, "t4"),
        (r"\bRTX\s*3090\b", r"\bTI\b|LAPTOP|MOBILE", "rtx3090"),
        (r"\bRTX\s*4090\b", r"\bD\b|LAPTOP|MOBILE", "rtx4090"),
        (r"\bGTX\s*1080\b", r"\bTI\b|LAPTOP|MOBILE|MAX-Q", "gtx1080"),
        (r"\bAGX\s*ORIN\b", None, "jetson-agx-orin-64gb"),
        (r"\bORIN\s*NANO\b", None, "jetson-orin-nano-8gb"),
    )
)


def match_device_name(torch_device_name: str) -> DeviceSpec | None:
    """The table entry for a name as ``torch.cuda.get_device_name()`` reports it, or None.

    ``"NVIDIA H100 80GB HBM3"`` -> ``h100-sxm``, ``"NVIDIA H100 PCIe"`` -> ``h100-pcie``,
    ``"NVIDIA A100-SXM4-40GB"`` -> ``a100-40gb``, ``"Tesla T4"`` -> ``t4``. Boards whose figures differ
    from every entry (H100 NVL, A100 80GB PCIe, RTX 3090 Ti, ...) give None rather than a near miss.
    """
    text = re.sub(r"[-_]", " ", torch_device_name.upper())
    for pattern, exclude, name in _NAME_RULES:
        if pattern.search(text) and not (exclude is not None and exclude.search(text)):
            return get_device(name)
    return None
