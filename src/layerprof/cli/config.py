"""Audit settings from TOML: ``[tool.layerprof]`` in a pyproject.toml, or a TOML file of its own.

So that CI needs no long command line::

    [tool.layerprof]
    target = ["t4", "jetson-orin-nano-8gb"]
    dtype = "fp16"
    input-size = [1, 3, 224, 224]
    max-gflops = 5.0
    max-latency-ms = 12.5
    max-memory-bound-share = 0.6
    max-peak-memory = "6GiB"          # bytes, or a size in KiB/MiB/GiB/KB/MB/GB

Keys may be spelt with dashes or underscores. A file named ``pyproject.toml`` is read from its
``[tool.layerprof]`` table; any other TOML file from that table when it has one, else from its top
level. Unknown keys are refused (a typo must not silently drop a budget). TOML is read with
``tomllib`` (Python 3.11+) or ``tomli`` when installed; without either, an error is raised only when
a TOML file actually has to be read.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from layerprof.analysis.budgets import BUDGET_NAMES
from layerprof.core import toml
from layerprof.core.units import parse_bytes
from layerprof.errors import InvalidArgumentError

__all__ = [
    "BUDGET_KEYS",
    "CONFIG_KEYS",
    "AuditConfig",
    "find_config",
    "parse_input_size",
    "read_config",
]

#: Budget keys, in the order results are reported; values are numbers.
BUDGET_KEYS: tuple[str, ...] = BUDGET_NAMES
CONFIG_KEYS: tuple[str, ...] = ("target", "dtype", "input_size", "device", "model_args", *BUDGET_KEYS)


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """Validated settings from one TOML file (every field None / empty when the file omits it)."""

    source: Path | None = None
    targets: tuple[str, ...] | None = None
    dtype: str | None = None
    input_sizes: tuple[tuple[int, ...], ...] | None = None
    device: str | None = None
    model_args: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    #: Budget name (one of :data:`BUDGET_KEYS`) -> limit.
    budgets: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


def parse_input_size(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` (also ``1x3x224x224``) -> ``(1, 3, 224, 224)``; the error names the text."""
    parts = [p.strip() for p in text.strip().replace("x", ",").split(",")]
    try:  # every part a number: "1,3,x" and "1,3,,64" are typos, not shorter sizes
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if not size or any(d <= 0 for d in size):
        raise InvalidArgumentError(f"input size {text!r} must be positive ints, batch first: 1,3,224,224")
    return size


def find_config(directory: Path) -> Path | None:
    """``directory/pyproject.toml`` when it exists (only that folder is looked in)."""
    candidate = directory / "pyproject.toml"
    return candidate if candidate.is_file() else None


def read_config(path: str | Path | None = None, *, directory: str | Path | None = None) -> AuditConfig:
    """Settings from ``path``, or from ``directory/pyproject.toml`` when no path is given.

    An explicit ``path`` must exist and parse. A pyproject.toml found on its own is used only when it
    has a ``[tool.layerprof]`` table; on Python 3.10 without ``tomli`` such a file is skipped unless
    it mentions ``tool.layerprof``, in which case the missing parser is an error.
    """
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise InvalidArgumentError(f"config file {str(file)!r} does not exist or is not a file")
        return _from_document(toml.read_toml(file), file, explicit=True)
    found = find_config(Path(directory) if directory is not None else Path.cwd())
    if found is None:
        return AuditConfig()
    if toml.toml_parser() is None and "tool.layerprof" not in found.read_text(
        encoding="utf-8", errors="replace"
    ):
        return AuditConfig()
    return _from_document(toml.read_toml(found), found, explicit=False)


def _from_document(document: Mapping[str, Any], file: Path, *, explicit: bool) -> AuditConfig:
    tool = document.get("tool")
    table = tool.get("layerprof") if isinstance(tool, Mapping) else None
    if table is None:
        if file.name == "pyproject.toml" or not explicit:
            return AuditConfig(source=file) if explicit else AuditConfig()
        table = document
    if not isinstance(table, Mapping):
        raise InvalidArgumentError(f"{file}: [tool.layerprof] must be a table, got {table!r}")
    return _validate(table, file)


def _validate(table: Mapping[str, Any], file: Path) -> AuditConfig:
    values = {str(key).replace("-", "_"): value for key, value in table.items()}
    unknown = sorted(set(values) - set(CONFIG_KEYS))
    if unknown:
        known = ", ".join(k.replace("_", "-") for k in CONFIG_KEYS)
        raise InvalidArgumentError(
            f"{file}: unknown layerprof setting(s) {', '.join(unknown)}; known: {known}"
        )
    budgets: dict[str, float] = {}
    for key in BUDGET_KEYS:
        if key == "max_peak_memory" and isinstance(values.get(key), str):
            budgets[key] = _size(values[key], file)
        elif key in values:
            budgets[key] = _number(values[key], key, file)
    return AuditConfig(
        source=file,
        targets=_targets(values["target"], file) if "target" in values else None,
        dtype=_string(values["dtype"], "dtype", file) if "dtype" in values else None,
        input_sizes=_input_sizes(values["input_size"], file) if "input_size" in values else None,
        device=_string(values["device"], "device", file) if "device" in values else None,
        model_args=MappingProxyType(_table(values.get("model_args", {}), "model-args", file)),
        budgets=MappingProxyType(budgets),
    )


def _number(value: object, key: str, file: Path) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidArgumentError(f"{file}: {key.replace('_', '-')} must be a number, got {value!r}")
    return float(value)


def _size(value: str, file: Path) -> float:
    try:
        return float(parse_bytes(value))
    except ValueError as error:
        raise InvalidArgumentError(f"{file}: max-peak-memory: {error}") from None


def _string(value: object, key: str, file: Path) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(f"{file}: {key} must be a non-empty string, got {value!r}")
    return value.strip()


def _table(value: object, key: str, file: Path) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidArgumentError(f"{file}: {key} must be a table of keyword arguments, got {value!r}")
    return {str(k): v for k, v in value.items()}


def _targets(value: object, file: Path) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(t, str) and t.strip() for t in items):
        raise InvalidArgumentError(f"{file}: target must be a device name or a list of them, got {value!r}")
    return tuple(t.strip() for t in items)


def _input_sizes(value: object, file: Path) -> tuple[tuple[int, ...], ...]:
    """``"1,3,224,224"``, ``[1, 3, 224, 224]``, or a list of either for several inputs."""
    try:
        if isinstance(value, str):
            return (parse_input_size(value),)
        if isinstance(value, Sequence) and value and all(_is_dim(d) for d in value):
            return (tuple(int(d) for d in value),)
        if isinstance(value, Sequence) and value:
            return tuple(_one_size(item) for item in value)
    except InvalidArgumentError as error:
        raise InvalidArgumentError(f"{file}: input-size: {error}") from error
    raise InvalidArgumentError(
        f"{file}: input-size must be like [1, 3, 224, 224] or '1,3,224,224', got {value!r}"
    )


def _one_size(item: object) -> tuple[int, ...]:
    if isinstance(item, str):
        return parse_input_size(item)
    if isinstance(item, Sequence) and item and all(_is_dim(d) for d in item):
        return tuple(int(d) for d in item)
    raise InvalidArgumentError(f"{item!r} is not a size like [1, 3, 224, 224]")


def _is_dim(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
