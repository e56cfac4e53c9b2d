"""The micro-benchmarks behind :func:`~layerprof.hardware.measure.measure_device`, and how they are timed.

CUDA kernels are timed with events created up front and read after one synchronize; CPU work with
``time.perf_counter_ns``. Each benchmark returns a rate (FLOP/s or bytes/s) of one problem; which
dtypes and sizes to run is :mod:`layerprof.hardware.ceilings`' business.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from layerprof.core.dtypes import parse_dtype

__all__ = [
    "FMA_CHAIN_LENGTH",
    "Sizes",
    "copy_bytes_per_s",
    "cuda_has_tf32",
    "eager_fma_flops_per_s",
    "fused_fma_flops_per_s",
    "gemm_flops_per_s",
    "launch_overhead_s",
    "tf32_matmul",
]

FMA_CHAIN_LENGTH = 256  # FMAs per element in the fused CUDA kernel


@dataclass(frozen=True, slots=True)
class Sizes:
    """Problem sizes and repeat counts of one measurement run."""

    gemm_target_s: float  # wanted duration of one GEMM call; n is grown until a call takes this long
    gemm_max_n: int
    vector_elements: int  # per tensor; three tensors must stay in cache
    vector_chain: int  # addcmul_ calls per timed sample
    copy_bytes: int  # per tensor; must exceed the last-level cache
    warmup: int
    repeat: int


# --- timing -------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn: Callable[[], object], device: torch.device, warmup: int, repeat: int) -> float:
    """Median wall time of one ``fn()`` call after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    if device.type == "cuda":
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeat)]  # type: ignore[no-untyped-call]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeat)]  # type: ignore[no-untyped-call]
        torch.cuda.synchronize(device)
        for start, end in zip(starts, ends, strict=True):
            start.record()
            fn()
            end.record()
        torch.cuda.synchronize(device)
        samples = [float(start.elapsed_time(end)) / 1e3 for start, end in zip(starts, ends, strict=True)]
    else:
        samples = []
        for _ in range(repeat):
            begin = time.perf_counter_ns()
            fn()
            samples.append((time.perf_counter_ns() - begin) / 1e9)
    return max(float(statistics.median(samples)), 1e-9)


def once_seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Time of one call after one untimed call (which pays for library init and kernel selection)."""
    fn()
    synchronize(device)
    begin = time.perf_counter_ns()
    fn()
    synchronize(device)
    return max((time.perf_counter_ns() - begin) / 1e9, 1e-9)


# --- benchmarks ---------------------------------------------------------------------------------


def _gemm_operands(n: int, key: str, device: torch.device) -> Callable[[], object]:
    """A closure running one n x n x n GEMM of dtype ``key`` (2 n^3 FLOPs)."""
    if key == "int8":
        if device.type != "cuda":
            raise RuntimeError("int8 GEMM is only measured on CUDA (torch._int_mm)")
        a8 = torch.randint(-64, 64, (n, n), dtype=torch.int8, device=device)
        b8 = torch.randint(-64, 64, (n, n), dtype=torch.int8, device=device)
        return lambda: torch._int_mm(a8, b8)
    if key == "float8":
        if device.type != "cuda":
            raise RuntimeError("float8 GEMM is only measured on CUDA (torch._scaled_mm)")
        a = torch.randn(n, n, device=device).to(torch.float8_e4m3fn)
        b = torch.randn(n, n, device=device).to(torch.float8_e4m3fn).t()  # column-major operand
        one = torch.ones((), device=device)
        return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    dtype = parse_dtype(key)
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    return lambda: torch.mm(a, b, out=out)


def gemm_flops_per_s(key: str, device: torch.device, sizes: Sizes) -> tuple[float, int]:
    """Grow n until one GEMM takes ``gemm_target_s`` (or n hits the cap), then time it."""
    n = 256
    while True:
        elapsed = once_seconds(_gemm_operands(n, key, device), device)
        if elapsed >= sizes.gemm_target_s or n >= sizes.gemm_max_n:
            break
        grow = (sizes.gemm_target_s / elapsed) ** (1 / 3)
        n = min(sizes.gemm_max_n, max(n + 256, int(n * grow) // 256 * 256))
    seconds = median_seconds(_gemm_operands(n, key, device), device, sizes.warmup, sizes.repeat)
    return 2 * n**3 / seconds, n


def eager_fma_flops_per_s(key: str, device: torch.device, sizes: Sizes) -> float:
    """A chain of in-place ``addcmul_`` (``x += a * b``, 2 FLOPs per element) on cache-resident tensors."""
    dtype = parse_dtype(key)
    elements = sizes.vector_elements
    x = torch.zeros(elements, device=device, dtype=dtype)
    # Values near 1 and 0 keep x bounded over the chain (no overflow to inf in half precision).
    a = torch.full((elements,), 0.999, device=device, dtype=dtype)
    b = torch.full((elements,), 1e-3, device=device, dtype=dtype)

    def chain() -> None:
        for _ in range(sizes.vector_chain):
            x.addcmul_(a, b)

    seconds = median_seconds(chain, device, sizes.warmup, sizes.repeat)
    return 2 * elements * sizes.vector_chain / seconds


_JITERATOR_FMA_CODE = f"""
template <typename T> T layerprof_fma_chain(T x, T a, T b) {{
  T y = x;
  for (int i = 0; i < {FMA_CHAIN_LENGTH}; ++i) {{ y = y * a + b; }}
  return y;
}}
"""


def fused_fma_flops_per_s(key: str, device: torch.device, sizes: Sizes) -> float:
    """A single CUDA kernel doing ``FMA_CHAIN_LENGTH`` dependent FMAs per element (from registers)."""
    dtype = parse_dtype(key)
    kernel = torch.cuda.jiterator._create_jit_fn(_JITERATOR_FMA_CODE)
    elements = 1 << 24
    x = torch.rand(elements, device=device).to(dtype)
    a = torch.full((elements,), 0.999, device=device, dtype=dtype)
    b = torch.full((elements,), 1e-3, device=device, dtype=dtype)
    seconds = median_seconds(lambda: kernel(x, a, b), device, sizes.warmup, sizes.repeat)
    return 2 * elements * FMA_CHAIN_LENGTH / seconds


def copy_bytes_per_s(device: torch.device, sizes: Sizes) -> float:
    """A large float32 ``copy_``, counting the bytes read and the bytes written."""
    elements = sizes.copy_bytes // 4
    source = torch.ones(elements, device=device, dtype=torch.float32)
    target = torch.empty_like(source)
    seconds = median_seconds(lambda: target.copy_(source), device, sizes.warmup, sizes.repeat)
    return 2 * elements * 4 / seconds  # every byte is read once and written once


def launch_overhead_s(device: torch.device, calls: int) -> float:
    """Host time per tiny op: dispatcher plus (on CUDA) kernel launch, the floor under every layer."""
    tiny = torch.zeros(1, device=device)
    for _ in range(10):
        tiny.add_(1)
    synchronize(device)
    begin = time.perf_counter_ns()
    for _ in range(calls):
        tiny.add_(1)
    synchronize(device)
    return max((time.perf_counter_ns() - begin) / 1e9 / calls, 1e-9)


def cuda_has_tf32(device: torch.device) -> bool:
    """Whether the GPU's tensor cores run TF32 (compute capability 8.0, Ampere, and later)."""
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


@contextlib.contextmanager
def tf32_matmul(enabled: bool) -> Iterator[None]:
    """Set torch's process-wide ``torch.backends.cuda.matmul.allow_tf32`` for the body.

    The switch is the user's: whatever it was before is put back when the body ends, raises or not.
    """
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
