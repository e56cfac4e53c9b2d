"""The device table as text: one line per device with its bandwidth, peaks, ridge points and sources (the
sites its figures cite, shortened); a first line for ``auto``, this machine; one line per interconnect
with its bandwidth and latency."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tabulate import tabulate

from layerprof.hardware.links import LinkSpec
from layerprof.hardware.specs import DeviceSpec

__all__ = ["AutoLine", "device_table", "full_sources", "link_table", "short_sources"]

_HEADERS = [
    "name", "device", "kind", "GB/s", "fp32 vec", "fp32 mat", "tf32", "fp16 mat", "bf16 mat",
    "int8 mat", "fp8 mat", "ridge fp32", "ridge fp16", "price $", "sources",
]  # fmt: skip
_HOST = re.compile(r"https?://([^/\s,;)]+)")
_MEASURED_ON = re.compile(r"measured by layerprof\.measure_device on (\d{4}-\d{2}-\d{2})")
_NOTE_WIDTH = 28


@dataclass(frozen=True, slots=True)
class AutoLine:
    """What ``--target auto`` stands for here: the name its measured spec gets (``local-cpu``, ``h100-sxm
    (measured)``), the machine's own name, and the cached measurement when there is one (else None)."""

    resolves_to: str
    full_name: str
    kind: str
    cached: DeviceSpec | None


def _tflops(device: DeviceSpec, unit: str, dtype: str) -> str:
    peaks = device.matrix_peak_flops_per_s if unit == "matrix" else device.vector_peak_flops_per_s
    value = peaks.get(dtype)
    return "" if value is None else f"{value / 1e12:.3g}"


def _ridge(device: DeviceSpec, unit: str, dtype: str) -> str:
    peaks = device.matrix_peak_flops_per_s if unit == "matrix" else device.vector_peak_flops_per_s
    value = peaks.get(dtype)
    return "" if value is None else f"{value / device.memory_bandwidth_bytes_per_s:.3g}"


def _site(host: str) -> str:
    """``nvidia.com`` for ``images.nvidia.com`` and ``www.nvidia.com``: the site, not the server."""
    labels = host.lower().split(".")
    return ".".join(labels[-2:]) if len(labels) > 2 else host.lower()


def short_sources(device: DeviceSpec) -> str:
    """The sources of a device's figures in a few words: the sites they cite (``nvidia.com``), ``measured
    <date>`` for a measured spec, and the start of the first figure whose source cites no URL."""
    parts: dict[str, None] = {}
    note = ""
    for source in device.sources.values():
        hosts = _HOST.findall(source)
        for host in hosts:
            parts.setdefault(_site(host), None)
        measured = _MEASURED_ON.search(source)
        if measured is not None:
            parts.setdefault(f"measured {measured.group(1)}", None)
        elif not hosts and not note:
            note = source if len(source) <= _NOTE_WIDTH else source[: _NOTE_WIDTH - 3].rstrip() + "..."
    if device.measured and not any(part.startswith("measured") for part in parts):
        parts.setdefault("measured", None)
    if note:
        parts.setdefault(note, None)
    return ", ".join(parts)


def full_sources(devices: Sequence[DeviceSpec]) -> str:
    """Every figure's source in full, device by device (``layerprof devices --sources``)."""
    lines = []
    for device in devices:
        lines.append(f"{device.name}:")
        if not device.sources:
            lines.append("  (no sources given)")
        lines += [f"  {figure}: {source}" for figure, source in device.sources.items()]
    return "\n".join(lines)


def _cells(d: DeviceSpec) -> list[str]:
    return [
        d.name + (" (measured)" if d.measured and "measured" not in d.name else ""),
        d.full_name,
        d.kind,
        f"{d.memory_bandwidth_bytes_per_s / 1e9:.4g}",
        _tflops(d, "vector", "float32"),
        _tflops(d, "matrix", "float32"),
        _tflops(d, "matrix", "tf32"),
        _tflops(d, "matrix", "float16"),
        _tflops(d, "matrix", "bfloat16"),
        _tflops(d, "matrix", "int8"),
        _tflops(d, "matrix", "float8"),
        _ridge(d, "matrix", "float32"),
        _ridge(d, "matrix", "float16"),
        "" if d.price_usd is None else f"{d.price_usd:,.0f}",
        short_sources(d),
    ]


def _auto_cells(auto: AutoLine) -> list[str]:
    if auto.cached is None:
        blank = [""] * (len(_HEADERS) - 4)
        return ["auto", _here(auto), auto.kind, *blank, "not measured yet: layerprof measure"]
    return ["auto", _here(auto), *_cells(auto.cached)[2:]]


def _here(auto: AutoLine) -> str:
    return f"this machine ({auto.resolves_to}): {auto.full_name}"


def device_table(devices: Sequence[DeviceSpec], fmt: str = "simple", *, auto: AutoLine | None = None) -> str:
    """Bandwidth (GB/s), peaks (TFLOP/s), ridge points (FLOP/B) and sources of each device; with ``auto``,
    a first line for target ``auto`` (this machine) and a note saying what it resolves to."""
    body = [_cells(d) for d in devices]
    if auto is not None:
        body.insert(0, _auto_cells(auto))
    notes = [
        "Peaks in TFLOP/s (dense, no sparsity); ridge point = peak / bandwidth in FLOP/byte.",
        "sources: the sites each device's figures cite (layerprof devices --sources prints them in full).",
    ]
    if auto is not None:
        state = "its cached measurement" if auto.cached is not None else "not measured yet"
        notes.append(
            f"auto: this machine, measured on first use and cached as {auto.resolves_to!r} ({state}); "
            "`layerprof measure` measures it now and prints its figures and sources."
        )
    table = tabulate(body, headers=_HEADERS, tablefmt=fmt, disable_numparse=True)
    return "\n".join([table, *notes])


def link_table(links: Sequence[LinkSpec], fmt: str = "simple") -> str:
    """Per-direction bandwidth (GB/s) and per-step latency (us) of each interconnect."""
    headers = ["link", "interconnect", "GB/s per direction", "latency us"]
    body = [
        [
            link.name,
            link.full_name,
            f"{link.bandwidth_bytes_per_s / 1e9:.4g}",
            f"{link.latency_s * 1e6:.3g}",
        ]
        for link in links
    ]
    note = "Links: bandwidth per GPU and per direction (what a ring all-reduce step uses); latency per step."
    return tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True) + "\n" + note
