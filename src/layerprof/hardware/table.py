"""The built-in device table: the devices and links of ``data/devices.json``, looked up by name.

The table is loaded once, at import, into immutable tuples. There is no global registry to add to:
functions that look devices up take an optional ``extra`` iterable of user :class:`DeviceSpec` objects
(for example from :func:`~layerprof.hardware.files.load_devices`) that is searched before the table.
The same file lists the interconnects between devices (:class:`LinkSpec`: PCIe, NVLink, Ethernet),
read by :func:`get_link` and :func:`list_links`. Names compare case-insensitively, with ``-``, ``_``
and spaces ignored.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from types import MappingProxyType

from layerprof.errors import InvalidArgumentError, UnknownDeviceError
from layerprof.hardware.files import check_unique, devices_from_document, links_from_document
from layerprof.hardware.links import LinkSpec
from layerprof.hardware.specs import DeviceSpec, lookup_key

__all__ = ["device_table", "get_device", "get_link", "list_devices", "list_links", "match_device_name"]


def _builtin_document() -> object:
    text = (
        resources.files("layerprof.hardware")
        .joinpath("data")
        .joinpath("devices.json")
        .read_text(encoding="utf-8")
    )
    return json.loads(text)


_BUILTIN_ORIGIN = "layerprof/hardware/data/devices.json"
_DOCUMENT = _builtin_document()
_TABLE: tuple[DeviceSpec, ...] = devices_from_document(_DOCUMENT, _BUILTIN_ORIGIN)
_TABLE_INDEX: Mapping[str, DeviceSpec] = MappingProxyType(
    {lookup_key(label): spec for spec in _TABLE for label in (spec.name, *spec.aliases)}
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
    check_unique(extras, "extra devices")
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
    key = lookup_key(name)
    for spec in extras:
        if key in {lookup_key(label) for label in (spec.name, *spec.aliases)}:
            return spec
    found = _TABLE_INDEX.get(key)
    if found is not None:
        return found
    raise UnknownDeviceError(_unknown_message(name, extras))


def _unknown_message(name: str, extras: tuple[DeviceSpec, ...]) -> str:
    candidates: dict[str, str] = {}
    for spec in (*extras, *_TABLE):
        for label in (spec.name, *spec.aliases):
            candidates.setdefault(lookup_key(label), spec.name)
    matches = difflib.get_close_matches(lookup_key(name), list(candidates), n=len(candidates), cutoff=0.0)
    closest: list[str] = []
    for match in matches:
        canonical = candidates[match]
        if canonical not in closest:
            closest.append(canonical)
        if len(closest) == 3:
            break
    return (
        f"unknown device {name!r}; closest: {', '.join(closest)}. "
        "`layerprof devices` lists them all (layerprof.list_devices() in Python); 'auto' is this machine, "
        "measured; for others pass a DeviceSpec or use load_devices()"
    )


_LINKS: tuple[LinkSpec, ...] = links_from_document(_DOCUMENT, _BUILTIN_ORIGIN)
_LINK_INDEX: Mapping[str, LinkSpec] = MappingProxyType(
    {lookup_key(label): link for link in _LINKS for label in (link.name, *link.aliases)}
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
    found = _LINK_INDEX.get(lookup_key(name))
    if found is not None:
        return found
    matches = difflib.get_close_matches(lookup_key(name), list(_LINK_INDEX), n=len(_LINK_INDEX), cutoff=0.0)
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
