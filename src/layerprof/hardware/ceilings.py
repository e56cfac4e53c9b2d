"""Running the micro-benchmarks of :mod:`layerprof.hardware.microbench` into one set of device ceilings.

For each dtype asked: the matrix peak (a GEMM; on CUDA float32 once with TF32 off and once with it on),
the vector peak (floating dtypes only), then the memory bandwidth and the launch overhead. A dtype the
device cannot run is skipped with a log message; float32 must run. What each benchmark measures is
described in :mod:`layerprof.hardware.measure`. Every figure comes with a note saying how it was
measured, for ``DeviceSpec.sources``.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from layerprof.errors import InvalidDeviceSpecError
from layerprof.hardware.microbench import (
    FMA_CHAIN_LENGTH,
    Sizes,
    copy_bytes_per_s,
    cuda_has_tf32,
    eager_fma_flops_per_s,
    fused_fma_flops_per_s,
    gemm_flops_per_s,
    launch_overhead_s,
    tf32_matmul,
)

__all__ = ["Ceilings", "measure_ceilings", "sizes_for"]

logger = logging.getLogger("layerprof.hardware.measure")  # one logger for everything measure_device does

_VECTOR_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})
_SKIPPED = (RuntimeError, TypeError, NotImplementedError)  # what a dtype the device cannot run raises


@dataclass(slots=True)
class Ceilings:
    """What the benchmarks found, with a note per figure for ``DeviceSpec.sources``."""

    matrix: dict[str, float] = field(default_factory=dict)
    vector: dict[str, float] = field(default_factory=dict)
    bandwidth_bytes_per_s: float = 0.0
    launch_overhead_s: float | None = None
    notes: dict[str, str] = field(default_factory=dict)


def sizes_for(device: torch.device, quick: bool) -> Sizes:
    """Problem sizes and repeats for ``device``: small and few with ``quick``."""
    if device.type == "cuda":
        if quick:
            return Sizes(0.002, 2048, 1 << 18, 8, 64 << 20, 2, 5)
        free_bytes, _ = torch.cuda.mem_get_info(device)
        copy_bytes = int(min(1 << 30, max(64 << 20, free_bytes // 8)))
        return Sizes(0.02, 16384, 1 << 20, 32, copy_bytes, 5, 20)
    if quick:
        return Sizes(0.002, 512, 1 << 13, 8, 8 << 20, 1, 3)
    return Sizes(0.05, 4096, 1 << 15, 32, 256 << 20, 3, 10)


def measure_ceilings(device: torch.device, dtype_keys: Sequence[str], quick: bool) -> Ceilings:
    """Run every benchmark on ``device``; dtypes that fail to run are skipped (and logged)."""
    sizes = sizes_for(device, quick)
    found = Ceilings()
    # Events record on the current stream of the current device: make ``device`` current.
    on_device = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with torch.inference_mode(), on_device:
        _matrix_peaks(found, device, dtype_keys, sizes)
        _vector_peaks(found, device, dtype_keys, sizes, quick)
        found.bandwidth_bytes_per_s = copy_bytes_per_s(device, sizes)
        found.notes["memory_bandwidth_bytes_per_s"] = (
            f"median of {sizes.repeat} copy_ calls of {sizes.copy_bytes} bytes, counting bytes read + written"
        )
        logger.info("memory bandwidth on %s: %.3g B/s", device, found.bandwidth_bytes_per_s)
        calls = 100 if quick else 1000
        found.launch_overhead_s = launch_overhead_s(device, calls)
        found.notes["launch_overhead_s"] = (
            f"mean host time of {calls} in-place add_ calls on a 1-element tensor"
        )
    if not all(math.isfinite(v) and v > 0 for v in (*found.matrix.values(), *found.vector.values())):
        raise InvalidDeviceSpecError(f"measurement on {device} produced a non-positive figure: {found}")
    return found


def _float32_gemm(device: torch.device, sizes: Sizes, *, tf32: bool) -> tuple[float, int]:
    """A float32 GEMM, on CUDA with TF32 switched as asked (and the user's switch put back after)."""
    if device.type != "cuda":
        return gemm_flops_per_s("float32", device, sizes)
    with tf32_matmul(tf32):
        return gemm_flops_per_s("float32", device, sizes)


def _matrix_peaks(found: Ceilings, device: torch.device, dtype_keys: Sequence[str], sizes: Sizes) -> None:
    for key in dtype_keys:
        try:
            if key == "float32":
                rate, n = _float32_gemm(device, sizes, tf32=False)
            else:
                rate, n = gemm_flops_per_s(key, device, sizes)
        except _SKIPPED as error:
            if key == "float32":
                raise
            logger.info("skipping %s GEMM on %s: %s", key, device, error)
            continue
        found.matrix[key] = rate
        found.notes[f"matrix_peak_flops_per_s.{key}"] = (
            f"median of {sizes.repeat} torch.mm calls, {n}x{n}x{n} {key} GEMM, 2*n^3 FLOPs"
        )
        logger.info("%s matrix peak on %s: %.3g FLOP/s", key, device, rate)
    if device.type == "cuda" and "float32" in dtype_keys and cuda_has_tf32(device):
        try:
            rate, n = _float32_gemm(device, sizes, tf32=True)
        except RuntimeError as error:
            logger.info("skipping tf32 GEMM on %s: %s", device, error)
        else:
            # TF32 never makes a GEMM slower than IEEE float32; keep the spec consistent if noise says so.
            found.matrix["tf32"] = max(rate, found.matrix["float32"])
            found.notes["matrix_peak_flops_per_s.tf32"] = (
                f"median of {sizes.repeat} torch.mm calls, {n}x{n}x{n} float32 GEMM with "
                f"torch.backends.cuda.matmul.allow_tf32 = True, 2*n^3 FLOPs"
            )


def _vector_peaks(
    found: Ceilings, device: torch.device, dtype_keys: Sequence[str], sizes: Sizes, quick: bool
) -> None:
    for key in dtype_keys:
        if key not in _VECTOR_DTYPES:
            continue
        try:
            rate = eager_fma_flops_per_s(key, device, sizes)
        except _SKIPPED as error:
            if key == "float32":
                raise
            logger.info("skipping %s FMA kernel on %s: %s", key, device, error)
            continue
        note = (
            f"median of {sizes.repeat} chains of {sizes.vector_chain} in-place addcmul_ on "
            f"{sizes.vector_elements} cache-resident {key} elements, 2 FLOPs per FMA"
        )
        if device.type == "cuda" and not quick:
            try:
                fused = fused_fma_flops_per_s(key, device, sizes)
            except Exception as error:  # jiterator needs NVRTC; any failure just keeps eager
                logger.info("fused FMA kernel unavailable for %s on %s: %s", key, device, error)
            else:
                if fused > rate:
                    rate = fused
                    note = (
                        f"median of {sizes.repeat} runs of a jiterator kernel doing "
                        f"{FMA_CHAIN_LENGTH} dependent FMAs per element on 2^24 {key} elements, "
                        "2 FLOPs per FMA"
                    )
        found.vector[key] = rate
        found.notes[f"vector_peak_flops_per_s.{key}"] = note
        logger.info("%s vector peak on %s: %.3g FLOP/s", key, device, rate)
