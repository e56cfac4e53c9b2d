"""The micro-benchmarks behind :func:`~layerprof.hardware.measure.measure_device`, and how they are timed.

Every benchmark is timed by :func:`~layerprof.hardware.steadiness.steady_timing` (warm-up, then the
best of its repeats, repeated when the repeats spread) and returns a rate (FLOP/s) with the
:class:`~layerprof.hardware.steadiness.Timing` it came from; which dtypes and sizes to run is
:mod:`layerprof.hardware.ceilings`' business. The bandwidth kernels are in :mod:`layerprof.hardware.sweep`.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from layerprof.core.dtypes import parse_dtype
from layerprof.hardware.steadiness import Timing, steady_timing, synchronize

__all__ = [
    "CONV_PROBES",
    "FMA_CHAIN_LENGTH",
    "Sizes",
    "conv_flops_per_s",
    "cuda_has_tf32",
    "eager_fma_flops_per_s",
    "fused_fma_flops_per_s",
    "gemm_flops_per_s",
    "launch_overhead_s",
    "reduce_flops_per_s",
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
    sweep_min_bytes: int  # the bandwidth sweep's smallest working set
    sweep_max_bytes: int  # and its largest (bounded by free memory); must exceed the last cache
    sweep_sample_s: float  # a sweep sample runs a kernel this long (many calls for small sizes)
    warmup: int
    repeat: int


# --- timing ---------------------------------------------------------------------------------


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


def gemm_flops_per_s(key: str, device: torch.device, sizes: Sizes) -> tuple[float, int, Timing]:
    """Grow n until one GEMM takes ``gemm_target_s`` (or n hits the cap), then time that n and two
    smaller ones (3/4 and 1/2 of it) and keep the fastest: (FLOP/s, n, its timing)."""
    n = 256
    while True:
        elapsed = once_seconds(_gemm_operands(n, key, device), device)
        if elapsed >= sizes.gemm_target_s or n >= sizes.gemm_max_n:
            break
        grow = (sizes.gemm_target_s / elapsed) ** (1 / 3)
        n = min(sizes.gemm_max_n, max(n + 256, int(n * grow) // 256 * 256))
    best: tuple[float, int, Timing] | None = None
    for size in sorted({n, max(256, n * 3 // 4 // 64 * 64), max(256, n // 2 // 64 * 64)}, reverse=True):
        timing = steady_timing(
            _gemm_operands(size, key, device), device, warmup=sizes.warmup, repeat=sizes.repeat
        )
        rate = 2 * size**3 / timing.best_s
        if best is None or rate > best[0]:
            best = (rate, size, timing)
    assert best is not None
    return best


#: The convolution probe: a resnet-like 3x3 layer (layer3 of resnet50 at batch 8), and a 7x7 map one.
CONV_PROBES: tuple[tuple[int, int, int], ...] = ((8, 256, 14), (8, 512, 7))


def conv_flops_per_s(key: str, device: torch.device, sizes: Sizes) -> tuple[float, str, Timing]:
    """The fastest of the :data:`CONV_PROBES` 3x3 convolutions (padding 1), in FLOPs as layerprof counts
    them (the direct formula, ``2 * N * C_out * H * W * C_in * 9``): a convolution library may run an
    algorithm that does less work (Winograd), and a roof must hold for the FLOPs the rows are charged."""
    dtype = parse_dtype(key)
    best: tuple[float, str, Timing] | None = None
    for batch, channels, size in CONV_PROBES:
        x = torch.randn(batch, channels, size, size, device=device).to(dtype)
        w = torch.randn(channels, channels, 3, 3, device=device).to(dtype)
        run = functools.partial(torch.nn.functional.conv2d, x, w, padding=1)
        timing = steady_timing(run, device, warmup=sizes.warmup, repeat=sizes.repeat)
        rate = 2 * batch * channels * size * size * channels * 9 / timing.best_s
        label = f"{batch}x{channels}x{size}x{size} 3x3 {key} convolution"
        if best is None or rate > best[0]:
            best = (rate, label, timing)
    assert best is not None
    return best


def eager_fma_flops_per_s(key: str, device: torch.device, sizes: Sizes) -> tuple[float, Timing]:
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

    timing = steady_timing(chain, device, warmup=sizes.warmup, repeat=sizes.repeat)
    return 2 * elements * sizes.vector_chain / timing.best_s, timing


REDUCE_READS = 1 << 22  # elements one reduce call adds up (a cache-resident tensor read again and again)


def reduce_flops_per_s(key: str, device: torch.device, sizes: Sizes) -> tuple[float, Timing, int]:
    """``x.expand(r, n).sum()`` on a cache-resident ``x``: one add per element, read from cache through
    a stride-0 view, so neither DRAM nor the per-call dispatch floor limits it."""
    dtype = parse_dtype(key)
    elements = sizes.vector_elements if device.type == "cuda" else min(sizes.vector_elements, 1 << 12)
    x = torch.full((elements,), 1e-3, device=device, dtype=dtype)
    view = x.view(1, elements).expand(max(1, REDUCE_READS // elements), elements)
    timing = steady_timing(
        lambda: view.sum(dtype=torch.float32), device, warmup=sizes.warmup, repeat=sizes.repeat
    )
    return view.numel() / timing.best_s, timing, elements


_JITERATOR_FMA_CODE = f"""
template <typename T> T layerprof_fma_chain(T x, T a, T b) {{
  T y = x;
  for (int i = 0; i < {FMA_CHAIN_LENGTH}; ++i) {{ y = y * a + b; }}
  return y;
}}
"""


def fused_fma_flops_per_s(key: str, device: torch.device, sizes: Sizes) -> tuple[float, Timing]:
    """A single CUDA kernel doing ``FMA_CHAIN_LENGTH`` dependent FMAs per element (from registers)."""
    dtype = parse_dtype(key)
    kernel = torch.cuda.jiterator._create_jit_fn(_JITERATOR_FMA_CODE)
    elements = 1 << 24
    x = torch.rand(elements, device=device).to(dtype)
    a = torch.full((elements,), 0.999, device=device, dtype=dtype)
    b = torch.full((elements,), 1e-3, device=device, dtype=dtype)
    timing = steady_timing(lambda: kernel(x, a, b), device, warmup=sizes.warmup, repeat=sizes.repeat)
    return 2 * elements * FMA_CHAIN_LENGTH / timing.best_s, timing


def launch_overhead_s(device: torch.device, calls: int) -> float:
    """Host time per tiny op (dispatcher plus, on CUDA, kernel launch), the floor under every layer: the
    best of three batches of ``calls`` in-place adds on a 1-element tensor, per call."""
    tiny = torch.zeros(1, device=device)
    for _ in range(10):
        tiny.add_(1)
    synchronize(device)
    best = float("inf")
    for _ in range(3):
        begin = time.perf_counter_ns()
        for _ in range(calls):
            tiny.add_(1)
        synchronize(device)
        best = min(best, (time.perf_counter_ns() - begin) / 1e9 / calls)
    return max(best, 1e-9)


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
