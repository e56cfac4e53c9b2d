"""Device files: user specs from JSON or TOML, in the schema of the built-in table (``data/devices.json``).

A device file holds a ``devices`` list (each entry read by :meth:`DeviceSpec.from_dict`) and, in the
built-in table, a ``links`` list (each entry read by :meth:`LinkSpec.from_dict`). Names and aliases
must be unique within a file, compared by :func:`~layerprof.hardware.specs.lookup_key`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from layerprof.core.toml import read_toml
from layerprof.core.validate import path_arg
from layerprof.errors import InvalidArgumentError, InvalidDeviceSpecError
from layerprof.hardware.links import LinkSpec
from layerprof.hardware.specs import DeviceSpec, lookup_key

__all__ = ["check_unique", "devices_from_document", "links_from_document", "load_devices"]


def load_devices(path: str | Path) -> tuple[DeviceSpec, ...]:
    """Read user device specs from a JSON or TOML file with the built-in table's schema.

    JSON: ``{"devices": [{...}, ...]}`` or a bare list. TOML: ``[[devices]]`` tables, with the peak
    mappings as sub-tables (``[devices.matrix_peak_flops_per_s]``). The result can be passed as
    ``extra`` to :func:`~layerprof.hardware.table.get_device` /
    :func:`~layerprof.hardware.table.device_table`, or each spec used as a target directly.
    """
    file = path_arg("path", path)
    if not file.is_file():
        raise InvalidArgumentError(f"device file {str(file)!r} does not exist or is not a file")
    suffix = file.suffix.lower()
    origin = str(file)
    if suffix == ".json":
        try:
            document: object = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvalidDeviceSpecError(f"{origin}: not valid JSON: {error}") from error
        except RecursionError:
            raise InvalidDeviceSpecError(f"{origin}: not a device file (JSON nested too deeply)") from None
    elif suffix == ".toml":
        document = read_toml(file, invalid=InvalidDeviceSpecError)
    else:
        raise InvalidArgumentError(f"device file {origin!r} must end in .json or .toml, got {suffix!r}")
    return devices_from_document(document, origin)


def devices_from_document(document: object, origin: str) -> tuple[DeviceSpec, ...]:
    """The specs of a parsed device file's ``devices`` list (or of a bare list), names unique."""
    entries = _entries_of(document, origin)
    specs = tuple(DeviceSpec.from_dict(entry, origin=origin) for entry in entries)
    check_unique(specs, origin)
    return specs


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


def check_unique(specs: Iterable[DeviceSpec], origin: str) -> None:
    """Refuse two specs sharing a name or alias (as :func:`lookup_key` compares them)."""
    owner: dict[str, tuple[int, str]] = {}
    for position, spec in enumerate(specs):
        for label in (spec.name, *spec.aliases):
            key = lookup_key(label)
            if key in owner and owner[key][0] != position:
                raise InvalidDeviceSpecError(
                    f"{origin}: name or alias {label!r} of device {spec.name!r} is already used by "
                    f"device {owner[key][1]!r}"
                )
            owner[key] = (position, spec.name)


def links_from_document(document: object, origin: str) -> tuple[LinkSpec, ...]:
    """The links of a parsed device file's ``links`` list (none when it has none), names unique."""
    entries = document.get("links", []) if isinstance(document, Mapping) else []
    if not isinstance(entries, list):
        raise InvalidDeviceSpecError(f"{origin}: 'links' must be a list of link entries, got {entries!r}")
    links = tuple(LinkSpec.from_dict(entry, origin=origin) for entry in entries)
    owner: dict[str, str] = {}
    for link in links:
        for label in (link.name, *link.aliases):
            key = lookup_key(label)
            if owner.get(key, link.name) != link.name:
                raise InvalidDeviceSpecError(
                    f"{origin}: name or alias {label!r} of link {link.name!r} is already used by "
                    f"link {owner[key]!r}"
                )
            owner[key] = link.name
    return links
