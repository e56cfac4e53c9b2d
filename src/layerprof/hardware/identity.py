"""Which machine a measurement is of: the torch device to measure, and the name its spec gets."""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.table import match_device_name

__all__ = ["Identity", "identify", "machine_id", "resolve_device", "slug"]


def slug(text: str) -> str:
    """Lower-case letters and digits joined by ``-``: a piece of a spec or file name."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The CPU or CUDA device to measure (the current CUDA device when there is one, by default)."""
    if device is None:
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise InvalidArgumentError(f"not a torch device: {device!r}") from error
    if resolved.type not in ("cpu", "cuda"):
        raise InvalidArgumentError(f"measure_device supports 'cpu' and 'cuda' devices, got {device!r}")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise InvalidArgumentError(f"device {device!r} asked for, but torch sees no CUDA device")
        if resolved.index is None:
            resolved = torch.device("cuda", torch.cuda.current_device())
    return resolved


def _cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


@dataclass(frozen=True, slots=True)
class Identity:
    """The names a measured spec gets, and the built-in entry of the same board, if any."""

    name: str
    full_name: str
    kind: str
    table_entry: DeviceSpec | None
    cache_tag: str  # what else, beyond name and torch version, changes the result: which machine, board


def identify(device: torch.device) -> Identity:
    """``"local-cpu"``, ``"<table name> (measured)"`` for a GPU in the table, else ``"local-<cuda name>"``."""
    if device.type == "cuda":
        cuda_name = torch.cuda.get_device_name(device)
        entry = match_device_name(cuda_name)
        name = f"{entry.name} (measured)" if entry is not None else f"local-{slug(cuda_name)}"
        return Identity(name, cuda_name, "gpu", entry, f"{machine_id()}/cuda{device.index}")
    return Identity("local-cpu", _cpu_model_name(), "cpu", None, machine_id())


def machine_id() -> str:
    """This machine: its host name and, where the OS has one, ``/etc/machine-id`` (so that a cache
    directory shared between machines, a home on NFS, keeps one measurement per machine)."""
    node = platform.node() or "host"
    try:
        return f"{node}:{Path('/etc/machine-id').read_text(encoding='utf-8').strip()}"
    except OSError:
        return node
