"""The bandwidth sweep: four streaming kernels over working sets from a few KiB to well beyond the caches.

At every working-set size (geometric steps of 2, ``min_bytes`` to ``max_bytes``) five float32 kernels
run on views of one buffer allocated (and filled) once, each warmed up and timed as the best of its
repeats (:func:`~layerprof.hardware.steadiness.steady_timing`):

========== ====================================== =================== ==========================
kernel     call                                   working set         bytes counted per call
========== ====================================== =================== ==========================
``sum``    ``x.sum()``                            x: W                W (read)
``copy``   ``y.copy_(x)``                         x, y: W/2 each      W (W/2 read + W/2 written)
``mul_``   ``x.mul_(1.0)``                        x: W                2 W (read, then written)
``triad``  ``torch.add(b, c, alpha=s, out=a)``    a, b, c: W/3 each   W (2 read + 1 written)
``sum-x``  ``x.expand(r, n).sum()``               x: W                r W (x read r times)
========== ====================================== =================== ==========================

Bytes are counted as layerprof counts an op's traffic: each distinct tensor read plus each tensor
written, with **no** write-allocate (the cache line a store fetches before overwriting it is not
counted), so a level's rate is comparable with the bytes the roofline charges to it. ``sum-x`` reads
one cache-resident tensor ``r`` times through a stride-0 view within one call, so the per-call
dispatch floor (microseconds on a CPU) does not hide the bandwidth of the small, fast levels; it runs
only where ``r >= 2``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from layerprof.hardware.steadiness import Clock, Timing, steady_timing, synchronize

__all__ = [
    "KERNELS",
    "SweepPoint",
    "available_memory_bytes",
    "bandwidth_sweep",
    "best_by_size",
    "sweep_sizes",
]

KERNELS = ("sum", "copy", "mul_", "triad", "sum-x")
_ELEMENT = 4  # float32
_ALIGN = 16  # elements: views start on 64-byte boundaries
_REPEATED_READ_BYTES = 8 << 20  # what one sum-x call streams through the core


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One kernel at one working-set size: the bytes it moves per call and how long a call took."""

    kernel: str
    working_set_bytes: int
    bytes_per_call: int
    timing: Timing

    @property
    def rate_bytes_per_s(self) -> float:
        return self.bytes_per_call / self.timing.best_s

    def describe(self) -> str:
        """``triad on a 4 MiB working set, best of 5``: what a figure taken from this point came from."""
        return (
            f"{self.kernel} on a {format_bytes(self.working_set_bytes)} working set, {self.timing.describe()}"
        )


def format_bytes(size: int) -> str:
    """``16 KiB``, ``4 MiB``, ``1 GiB``: binary units, as cache sizes are given."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            value = size / (1 << shift)
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.3g} {unit}"
    return f"{size} B"


def available_memory_bytes(device: torch.device) -> int | None:
    """Free memory a sweep may use: ``MemAvailable`` (Linux) or free physical pages; CUDA's free memory."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (OSError, ValueError, AttributeError):
        return None


def sweep_sizes(min_bytes: int, max_bytes: int) -> list[int]:
    """Working-set sizes from ``min_bytes`` to ``max_bytes``, doubling."""
    sizes = []
    size = min_bytes
    while size <= max_bytes:
        sizes.append(size)
        size *= 2
    return sizes


def _elements(nbytes: int) -> int:
    return max(_ALIGN, nbytes // _ELEMENT // _ALIGN * _ALIGN)


def _kernels(buffer: torch.Tensor, size: int) -> Iterator[tuple[str, int, Callable[[], object]]]:
    """(name, bytes per call, closure) of each kernel on a ``size``-byte working set within ``buffer``."""
    n = _elements(size)
    x = buffer[:n]
    yield "sum", n * _ELEMENT, lambda: x.sum()
    half = _elements(size // 2)
    src, dst = buffer[:half], buffer[half : 2 * half]
    yield "copy", 2 * half * _ELEMENT, lambda: dst.copy_(src)
    yield "mul_", 2 * n * _ELEMENT, lambda: x.mul_(1.0)
    third = _elements(size // 3)
    a, b, c = buffer[:third], buffer[third : 2 * third], buffer[2 * third : 3 * third]
    yield "triad", 3 * third * _ELEMENT, lambda: torch.add(b, c, alpha=0.5, out=a)
    reps = _REPEATED_READ_BYTES // (n * _ELEMENT)
    if reps >= 2:
        view = x.view(1, n).expand(reps, n)
        yield "sum-x", reps * n * _ELEMENT, lambda: view.sum()


def _calls_per_sample(
    fn: Callable[[], object], device: torch.device, min_sample_s: float, clock: Clock
) -> int:
    """How many calls make one sample last ``min_sample_s`` (one call, timed once after a warm-up)."""
    fn()
    synchronize(device)
    begin = clock()
    fn()
    synchronize(device)
    once = max((clock() - begin) / 1e9, 1e-9)
    return max(1, min(10_000, math.ceil(min_sample_s / once)))


def bandwidth_sweep(
    device: torch.device,
    sizes: list[int],
    *,
    repeat: int,
    min_sample_s: float,
    kernels: tuple[str, ...] = KERNELS,
    clock: Clock | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[SweepPoint]:
    """Run ``kernels`` at every size of ``sizes`` (bytes, ascending) on ``device``; ``progress(size)`` is
    called before each size. The buffer (``max(sizes)`` bytes of ones) is freed before returning."""
    timer = clock if clock is not None else time.perf_counter_ns
    buffer = torch.ones(_elements(max(sizes)) + 3 * _ALIGN, device=device, dtype=torch.float32)
    points: list[SweepPoint] = []
    try:
        for size in sizes:
            if progress is not None:
                progress(size)
            for name, nbytes, fn in _kernels(buffer, size):
                if name not in kernels:
                    continue
                calls = _calls_per_sample(fn, device, min_sample_s, timer)
                timing = steady_timing(fn, device, warmup=1, repeat=repeat, calls=calls, clock=timer)
                points.append(SweepPoint(name, size, nbytes, timing))
    finally:
        del buffer
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return points


def best_by_size(points: list[SweepPoint]) -> list[SweepPoint]:
    """The fastest kernel at each working-set size, by size."""
    best: dict[int, SweepPoint] = {}
    for point in points:
        held = best.get(point.working_set_bytes)
        if held is None or point.rate_bytes_per_s > held.rate_bytes_per_s:
            best[point.working_set_bytes] = point
    return [best[size] for size in sorted(best)]
