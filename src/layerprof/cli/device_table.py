"""The device table as text: one line per device with its bandwidth, peaks and ridge points; one line
per interconnect with its bandwidth and latency."""

from __future__ import annotations

from collections.abc import Sequence

from tabulate import tabulate

from layerprof.hardware.links import LinkSpec
from layerprof.hardware.specs import DeviceSpec


def _tflops(device: DeviceSpec, unit: str, dtype: str) -> str:
    peaks = device.matrix_peak_flops_per_s if unit == "matrix" else device.vector_peak_flops_per_s
    value = peaks.get(dtype)
    return "" if value is None else f"{value / 1e12:.3g}"


def _ridge(device: DeviceSpec, unit: str, dtype: str) -> str:
    peaks = device.matrix_peak_flops_per_s if unit == "matrix" else device.vector_peak_flops_per_s
    value = peaks.get(dtype)
    return "" if value is None else f"{value / device.memory_bandwidth_bytes_per_s:.3g}"


def device_table(devices: Sequence[DeviceSpec], fmt: str = "simple") -> str:
    """Bandwidth (GB/s), peaks (TFLOP/s) and ridge points (FLOP/B) of each device."""
    headers = [
        "name", "device", "kind", "GB/s", "fp32 vec", "fp32 mat", "tf32", "fp16 mat", "bf16 mat",
        "int8 mat", "fp8 mat", "ridge fp32", "ridge fp16", "price $",
    ]  # fmt: skip
    body = []
    for d in devices:
        body.append(
            [
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
            ]
        )
    note = "Peaks in TFLOP/s (dense, no sparsity); ridge point = peak / bandwidth in FLOP/byte."
    return tabulate(body, headers=headers, tablefmt=fmt, disable_numparse=True) + "\n" + note


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
