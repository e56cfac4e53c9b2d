"""Running the micro-benchmarks into one set of device ceilings, each with the kernel and size it came from.

For each dtype asked: the matrix peak (GEMMs; on CUDA float32 once with TF32 off and once with it on),
the vector peak (floating dtypes only); then the bandwidth sweep (:mod:`layerprof.hardware.sweep`),
which gives DRAM's bandwidth and the cache levels (:mod:`layerprof.hardware.levels`), and the launch
overhead. A dtype the device cannot run is skipped with a log message; float32 must run. Every figure
comes with a note saying how it was measured (for ``DeviceSpec.sources``), and a figure whose repeats
kept spreading is listed in ``Ceilings.unsteady``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from layerprof.errors import InvalidDeviceSpecError
from layerprof.hardware.levels import KnownCache, find_levels, sysfs_caches
from layerprof.hardware.microbench import (
    CONV_PROBES,
    FMA_CHAIN_LENGTH,
    Sizes,
    conv_flops_per_s,
    cuda_has_tf32,
    eager_fma_flops_per_s,
    fused_fma_flops_per_s,
    gemm_flops_per_s,
    launch_overhead_s,
    reduce_flops_per_s,
    tf32_matmul,
)
from layerprof.hardware.specs import CacheLevel
from layerprof.hardware.steadiness import Timing
from layerprof.hardware.sweep import available_memory_bytes, bandwidth_sweep, format_bytes, sweep_sizes

__all__ = ["Ceilings", "Progress", "measure_ceilings", "sizes_for"]

logger = logging.getLogger("layerprof.hardware.measure")  # one logger for everything measure_device does

_VECTOR_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})
_SKIPPED = (RuntimeError, TypeError, NotImplementedError)  # what a dtype the device cannot run raises

#: ``progress(done, total, label)``: called before each step of a measurement.
Progress = Callable[[int, int, str], None]


@dataclass(slots=True)
class Ceilings:
    """What the benchmarks found, with a note per figure for ``DeviceSpec.sources``."""

    matrix: dict[str, float] = field(default_factory=dict)
    vector: dict[str, float] = field(default_factory=dict)
    bandwidth_bytes_per_s: float = 0.0
    launch_overhead_s: float | None = None
    cache_levels: tuple[CacheLevel, ...] = ()
    memory_bytes: int | None = None
    notes: dict[str, str] = field(default_factory=dict)
    unsteady: set[str] = field(default_factory=set)  # figures whose repeats kept spreading


def sizes_for(device: torch.device, quick: bool) -> Sizes:
    """Problem sizes and repeats for ``device``: small and few with ``quick``. The sweep's largest
    working set is at most a quarter of the free memory."""
    free = available_memory_bytes(device)
    if device.type == "cuda":
        sizes = (
            Sizes(0.002, 2048, 1 << 18, 8, 1 << 16, 256 << 20, 1e-3, 2, 5)
            if quick
            else Sizes(0.02, 16384, 1 << 20, 32, 1 << 16, 2 << 30, 2e-3, 5, 10)
        )
    else:
        sizes = (
            Sizes(0.002, 512, 1 << 13, 8, 16 << 10, 64 << 20, 1e-4, 1, 3)
            if quick
            else Sizes(0.05, 4096, 1 << 15, 32, 16 << 10, 1 << 30, 2e-4, 2, 5)
        )
    if free is not None and sizes.sweep_max_bytes > free // 4:
        limit = sizes.sweep_min_bytes
        while limit * 2 <= free // 4:
            limit *= 2
        logger.info("bandwidth sweep capped at %s (a quarter of the free memory)", format_bytes(limit))
        sizes = dataclasses.replace(sizes, sweep_max_bytes=limit)
    return sizes


def _host_memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (OSError, ValueError, AttributeError):
        return None


def _known_caches(device: torch.device, threads: int) -> tuple[KnownCache, ...]:
    if device.type != "cuda":
        return sysfs_caches(threads)
    l2 = int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 0)
    origin = f"torch.cuda.get_device_properties().L2_cache_size = {format_bytes(l2)}"
    return (KnownCache(2, l2, l2, origin),) if l2 > 0 else ()


def measure_ceilings(
    device: torch.device,
    dtype_keys: Sequence[str],
    quick: bool,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
) -> Ceilings:
    """Run every benchmark on ``device`` with torch's current thread count (which ``threads`` names in
    the notes); dtypes that fail to run are skipped (and logged). ``progress`` hears of every step."""
    sizes = sizes_for(device, quick)
    threads = threads if threads is not None else torch.get_num_threads()
    found = Ceilings()
    steps = _Steps(
        progress, 2 * len(dtype_keys) + len(sweep_sizes(sizes.sweep_min_bytes, sizes.sweep_max_bytes)) + 1
    )
    # Events record on the current stream of the current device: make ``device`` current.
    on_device = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with torch.inference_mode(), on_device:
        _matrix_peaks(found, device, dtype_keys, sizes, steps)
        _vector_peaks(found, device, dtype_keys, sizes, quick, steps)
        _memory(found, device, sizes, threads, steps)
        steps.step("launch overhead")
        calls = 100 if quick else 1000
        found.launch_overhead_s = launch_overhead_s(device, calls)
        found.notes["launch_overhead_s"] = (
            f"best of 3 batches of {calls} in-place add_ calls on a 1-element tensor, host time per call"
        )
    if device.type == "cuda":
        found.memory_bytes = int(torch.cuda.get_device_properties(device).total_memory)
        found.notes["memory_bytes"] = "torch.cuda.get_device_properties().total_memory"
    else:
        found.memory_bytes = _host_memory_bytes()
        if found.memory_bytes is not None:
            found.notes["memory_bytes"] = "host RAM: os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')"
    for figure in list(found.notes):
        if figure != "memory_bytes":
            found.notes[figure] += f"; {threads} torch thread{'s' if threads != 1 else ''}"
    if not all(math.isfinite(v) and v > 0 for v in (*found.matrix.values(), *found.vector.values())):
        raise InvalidDeviceSpecError(f"measurement on {device} produced a non-positive figure: {found}")
    return found


class _Steps:
    def __init__(self, progress: Progress | None, total: int) -> None:
        self.progress, self.total, self.done = progress, total, 0

    def step(self, label: str) -> None:
        if self.progress is not None:
            self.progress(min(self.done, self.total - 1), self.total, label)
        self.done += 1
        logger.info("measuring: %s", label)


def _note(found: Ceilings, figure: str, text: str, timing: Timing) -> None:
    found.notes[figure] = text
    if not timing.steady:
        found.unsteady.add(figure)


def _memory(found: Ceilings, device: torch.device, sizes: Sizes, threads: int, steps: _Steps) -> None:
    points = bandwidth_sweep(
        device,
        sweep_sizes(sizes.sweep_min_bytes, sizes.sweep_max_bytes),
        repeat=sizes.repeat,
        min_sample_s=sizes.sweep_sample_s,
        progress=lambda size: steps.step(f"bandwidth at {format_bytes(size)}"),
    )
    levels = find_levels(
        points, kind="gpu" if device.type == "cuda" else "cpu", known=_known_caches(device, threads)
    )
    found.bandwidth_bytes_per_s = levels.dram_bytes_per_s
    found.cache_levels = levels.levels
    for figure, note in levels.notes.items():
        point = levels.points.get(figure)
        if point is None:
            found.notes[figure] = note
        else:
            _note(found, figure, note, point.timing)
    logger.info(
        "memory bandwidth on %s: %.3g B/s; levels %s", device, found.bandwidth_bytes_per_s, found.cache_levels
    )


def _float32_gemm(device: torch.device, sizes: Sizes, *, tf32: bool) -> tuple[float, int, Timing]:
    """A float32 GEMM, on CUDA with TF32 switched as asked (and the user's switch put back after)."""
    if device.type != "cuda":
        return gemm_flops_per_s("float32", device, sizes)
    with tf32_matmul(tf32):
        return gemm_flops_per_s("float32", device, sizes)


def _matrix_peaks(
    found: Ceilings, device: torch.device, dtype_keys: Sequence[str], sizes: Sizes, steps: _Steps
) -> None:
    for key in dtype_keys:
        steps.step(f"matrix peak {key}")
        try:
            if key == "float32":
                rate, n, timing = _float32_gemm(device, sizes, tf32=False)
            else:
                rate, n, timing = gemm_flops_per_s(key, device, sizes)
        except _SKIPPED as error:
            if key == "float32":
                raise
            logger.info("skipping %s GEMM on %s: %s", key, device, error)
            continue
        found.matrix[key] = rate
        text = f"torch.mm, {n}x{n}x{n} {key} GEMM (fastest of 3 sizes), {timing.describe()}, 2*n^3 FLOPs"
        if key in ("float32", "float16", "bfloat16") and (device.type == "cuda" or key == "float32"):
            conv_rate, label, conv_timing = conv_flops_per_s(key, device, sizes)
            if conv_rate > rate:  # the convolution library beats the GEMM, as layerprof counts its FLOPs
                found.matrix[key], timing = conv_rate, conv_timing
                text = (
                    f"{label} (fastest of {len(CONV_PROBES)}), {conv_timing.describe()}, counted as a "
                    f"direct convolution (2*N*C_out*H*W*C_in*9 FLOPs); faster than the {n}x{n}x{n} GEMM's "
                    f"{rate / 1e9:.3g} GFLOP/s"
                )
        _note(found, f"matrix_peak_flops_per_s.{key}", text, timing)
        logger.info("%s matrix peak on %s: %.3g FLOP/s", key, device, rate)
    if device.type == "cuda" and "float32" in dtype_keys and cuda_has_tf32(device):
        try:
            rate, n, timing = _float32_gemm(device, sizes, tf32=True)
        except RuntimeError as error:
            logger.info("skipping tf32 GEMM on %s: %s", device, error)
        else:
            # TF32 never makes a GEMM slower than IEEE float32; keep the spec consistent if noise says so.
            found.matrix["tf32"] = max(rate, found.matrix["float32"])
            text = (
                f"torch.mm, {n}x{n}x{n} float32 GEMM with torch.backends.cuda.matmul.allow_tf32 = True "
                f"(fastest of 3 sizes), {timing.describe()}, 2*n^3 FLOPs"
            )
            _note(found, "matrix_peak_flops_per_s.tf32", text, timing)


def _vector_peaks(
    found: Ceilings, device: torch.device, dtype_keys: Sequence[str], sizes: Sizes, quick: bool, steps: _Steps
) -> None:
    for key in dtype_keys:
        steps.step(f"vector peak {key}")
        if key not in _VECTOR_DTYPES:
            continue
        try:
            rate, timing = eager_fma_flops_per_s(key, device, sizes)
            reduce_rate, reduce_timing, reduced = reduce_flops_per_s(key, device, sizes)
        except _SKIPPED as error:
            if key == "float32":
                raise
            logger.info("skipping %s FMA kernel on %s: %s", key, device, error)
            continue
        text = (
            f"chains of {sizes.vector_chain} in-place addcmul_ on {sizes.vector_elements} cache-resident "
            f"{key} elements, {timing.describe()}, 2 FLOPs per FMA"
        )
        if reduce_rate > rate:
            rate, timing = reduce_rate, reduce_timing
            text = (
                f"sum of a stride-0 view repeating {reduced} cache-resident {key} elements, "
                f"{timing.describe()}, 1 FLOP per element added"
            )
        if device.type == "cuda" and not quick:
            try:
                fused, fused_timing = fused_fma_flops_per_s(key, device, sizes)
            except Exception as error:  # jiterator needs NVRTC; any failure just keeps eager
                logger.info("fused FMA kernel unavailable for %s on %s: %s", key, device, error)
            else:
                if fused > rate:
                    rate, timing = fused, fused_timing
                    text = (
                        f"a jiterator kernel doing {FMA_CHAIN_LENGTH} dependent FMAs per element on 2^24 "
                        f"{key} elements, {timing.describe()}, 2 FLOPs per FMA"
                    )
        found.vector[key] = rate
        _note(found, f"vector_peak_flops_per_s.{key}", text, timing)
        logger.info("%s vector peak on %s: %.3g FLOP/s", key, device, rate)
