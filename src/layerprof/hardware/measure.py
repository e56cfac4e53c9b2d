"""Measure this machine's roofline ceilings the empirical way (cf. the Empirical Roofline Toolkit).

Three micro-benchmarks, each warmed up and then timed as the median of repeats:

* **matrix peak** per dtype: one large square GEMM, ``2 * n**3`` FLOPs (one multiply and one add per
  MAC). On CUDA float32 is timed twice: with TF32 off (the ``float32`` figure) and, on GPUs that have
  it, with TF32 on (the ``tf32`` figure).
* **vector peak** per floating dtype: a chain of in-place ``addcmul_`` (``x += a * b``: one FMA = 2 FLOPs
  per element) on tensors small enough to stay in cache, so DRAM does not limit it. On CUDA a fused
  FMA-chain kernel (jiterator) is also tried and the faster of the two kept. Eager elementwise ops
  are bounded by cache bandwidth, so the eager figure is below the datasheet FMA peak: it is the
  ceiling that eager elementwise layers can actually reach.
* **bandwidth**: a large ``copy_`` counting bytes read + bytes written.

CUDA kernels are timed with events created up front and read after one synchronize; CPU work with
``time.perf_counter_ns``. Results are cached as JSON (the device-file schema, so
:func:`layerprof.hardware.files.load_devices` reads them too) keyed by device name and torch version.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import logging
import math
import os
import platform
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from layerprof.errors import InvalidArgumentError, InvalidDeviceSpecError
from layerprof.hardware.files import load_devices
from layerprof.hardware.specs import DeviceSpec, normalize_dtype
from layerprof.hardware.table import match_device_name

__all__ = ["cache_path", "default_cache_dir", "measure_device"]

logger = logging.getLogger(__name__)

_DEFAULT_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)
_VECTOR_DTYPES = frozenset({"float32", "float16", "bfloat16", "float64"})
_TORCH_DTYPE: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int8": torch.int8,
    "float8": torch.float8_e4m3fn,
}
_CACHE_ENV = "LAYERPROF_CACHE_DIR"
_FMA_CHAIN_LENGTH = 256  # FMAs per element in the fused CUDA kernel


@dataclass(frozen=True, slots=True)
class _Sizes:
    """Problem sizes and repeat counts of one measurement run."""

    gemm_target_s: float  # wanted duration of one GEMM call; n is grown until a call takes this long
    gemm_max_n: int
    vector_elements: int  # per tensor; three tensors must stay in cache
    vector_chain: int  # addcmul_ calls per timed sample
    copy_bytes: int  # per tensor; must exceed the last-level cache
    warmup: int
    repeat: int


def _sizes(device: torch.device, quick: bool) -> _Sizes:
    if device.type == "cuda":
        if quick:
            return _Sizes(0.002, 2048, 1 << 18, 8, 64 << 20, 2, 5)
        free_bytes, _ = torch.cuda.mem_get_info(device)
        copy_bytes = int(min(1 << 30, max(64 << 20, free_bytes // 8)))
        return _Sizes(0.02, 16384, 1 << 20, 32, copy_bytes, 5, 20)
    if quick:
        return _Sizes(0.002, 512, 1 << 13, 8, 8 << 20, 1, 3)
    return _Sizes(0.05, 4096, 1 << 15, 32, 256 << 20, 3, 10)


@dataclass(slots=True)
class _Ceilings:
    """What the benchmarks found, with a note per figure for ``DeviceSpec.sources``."""

    matrix: dict[str, float] = field(default_factory=dict)
    vector: dict[str, float] = field(default_factory=dict)
    bandwidth_bytes_per_s: float = 0.0
    launch_overhead_s: float | None = None
    notes: dict[str, str] = field(default_factory=dict)


def default_cache_dir() -> Path:
    """``$LAYERPROF_CACHE_DIR`` if set, else ``~/.cache/layerprof``."""
    env = os.environ.get(_CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "layerprof"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "device"


def _resolve_device(device: str | torch.device | None) -> torch.device:
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
class _Identity:
    name: str
    full_name: str
    kind: str
    table_entry: DeviceSpec | None
    cache_tag: str  # what else, beyond name and torch version, changes the result


def _identify(device: torch.device) -> _Identity:
    if device.type == "cuda":
        cuda_name = torch.cuda.get_device_name(device)
        entry = match_device_name(cuda_name)
        name = f"{entry.name} (measured)" if entry is not None else f"local-{_slug(cuda_name)}"
        return _Identity(name, cuda_name, "gpu", entry, f"cuda{device.index}")
    return _Identity("local-cpu", _cpu_model_name(), "cpu", None, f"threads{torch.get_num_threads()}")


def cache_path(
    device: str | torch.device | None = None,
    *,
    dtypes: Iterable[torch.dtype | str] = _DEFAULT_DTYPES,
    quick: bool = False,
    cache_dir: str | Path | None = None,
) -> Path:
    """Where :func:`measure_device` caches (or would cache) the result for these arguments."""
    resolved = _resolve_device(device)
    return _cache_file(_identify(resolved), _dtype_keys(dtypes), quick, cache_dir)


def _cache_file(
    identity: _Identity, dtype_keys: Sequence[str], quick: bool, cache_dir: str | Path | None
) -> Path:
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    # The key names the device and torch version readably; the hash covers the rest of the setup.
    setup = json.dumps([identity.full_name, identity.cache_tag, list(dtype_keys), quick])
    digest = hashlib.sha1(setup.encode("utf-8")).hexdigest()[:10]
    stem = f"{_slug(identity.name)}__torch-{_slug(torch.__version__)}__{digest}"
    return directory / f"{stem}.json"


def _dtype_keys(dtypes: Iterable[torch.dtype | str]) -> tuple[str, ...]:
    keys = {normalize_dtype(dtype) for dtype in dtypes}
    if "tf32" in keys:
        raise InvalidArgumentError("tf32 is not a tensor dtype; it is measured with float32 on CUDA")
    keys.add("float32")  # every spec needs it
    return tuple(sorted(keys))


def measure_device(
    device: str | torch.device | None = None,
    *,
    dtypes: Iterable[torch.dtype | str] = _DEFAULT_DTYPES,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    quick: bool = False,
) -> DeviceSpec:
    """Measure the matrix and vector peaks (per dtype) and the memory bandwidth of a torch device.

    ``device`` defaults to the current CUDA device when there is one, else the CPU. float32 is always
    measured; dtypes the device cannot run are skipped with a log message. With ``cache`` the result
    is read from / written to ``cache_dir`` (default: :func:`default_cache_dir`), keyed by device name
    and torch version. ``quick`` uses small problems and few repeats (seconds, rough figures).

    The spec is named ``"local-cpu"`` or ``"local-<cuda name>"``; a GPU found in the built-in table by
    :func:`~layerprof.hardware.table.match_device_name` is named after it, e.g. ``"h100-sxm (measured)"``
    (without the table entry's aliases, so that it never shadows the datasheet entry).
    """
    resolved = _resolve_device(device)
    dtype_keys = _dtype_keys(dtypes)
    identity = _identify(resolved)
    path = _cache_file(identity, dtype_keys, quick, cache_dir)
    if cache:
        cached = _read_cache(path)
        if cached is not None:
            logger.info("device ceilings of %s read from %s", identity.name, path)
            return cached

    logger.info("measuring device ceilings of %s (%s)", identity.name, identity.full_name)
    ceilings = _measure_ceilings(resolved, dtype_keys, quick)
    spec = _build_spec(identity, resolved, ceilings)
    if cache:
        _write_cache(path, spec)
    return spec


def _read_cache(path: Path) -> DeviceSpec | None:
    if not path.is_file():
        return None
    try:
        specs = load_devices(path)
    except (InvalidDeviceSpecError, InvalidArgumentError, OSError, ValueError) as error:
        logger.warning("ignoring unreadable device cache %s: %s", path, error)
        return None
    if len(specs) != 1:
        logger.warning("ignoring device cache %s: expected one device, found %d", path, len(specs))
        return None
    return specs[0]


def _write_cache(path: Path, spec: DeviceSpec) -> None:
    document = {"schema_version": 1, "devices": [spec.to_dict()]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2)
        os.replace(temporary, path)  # atomic: a concurrent reader sees the old file or the new one
    except OSError as error:
        logger.warning("could not write device cache %s: %s", path, error)
    else:
        logger.info("device ceilings cached in %s", path)


def _build_spec(identity: _Identity, device: torch.device, ceilings: _Ceilings) -> DeviceSpec:
    today = datetime.date.today().isoformat()
    stamp = f"measured by layerprof.measure_device on {today}, torch {torch.__version__}"
    matrix = dict(ceilings.matrix)
    vector = dict(ceilings.vector)
    notes = dict(ceilings.notes)
    sources: dict[str, str] = {}
    for key in list(vector):
        if key in matrix and vector[key] > matrix[key]:
            logger.info("%s: measured %s GEMM slower than the FMA kernel; clamping", identity.name, key)
            vector[key] = matrix[key]
            notes[f"vector_peak_flops_per_s.{key}"] += (
                "; clamped to the matrix figure because the measured GEMM was slower than the FMA kernel"
            )
    for figure, note in notes.items():
        sources[figure] = f"{stamp}: {note}"
    l2_bytes: int | None = None
    if device.type == "cuda":
        l2 = int(getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 0) or 0)
        if l2 > 0:
            l2_bytes = l2
            sources["l2_cache_bytes"] = (
                f"torch.cuda.get_device_properties().L2_cache_size, torch {torch.__version__}"
            )
    price: float | None = None
    if identity.table_entry is not None and identity.table_entry.price_usd is not None:
        price = identity.table_entry.price_usd
        sources["price_usd"] = identity.table_entry.sources.get(
            "price_usd", f"table entry {identity.table_entry.name}"
        )
    return DeviceSpec(
        name=identity.name,
        full_name=identity.full_name,
        kind="gpu" if identity.kind == "gpu" else "cpu",
        memory_bandwidth_bytes_per_s=ceilings.bandwidth_bytes_per_s,
        matrix_peak_flops_per_s=matrix,
        vector_peak_flops_per_s=vector,
        aliases=(),
        l2_cache_bytes=l2_bytes,
        launch_overhead_s=ceilings.launch_overhead_s,
        price_usd=price,
        sources=sources,
        measured=True,
    )


# --- timing -------------------------------------------------------------------------------------


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn: Callable[[], object], device: torch.device, warmup: int, repeat: int) -> float:
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


def _once_seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Time of one call after one untimed call (which pays for library init and kernel selection)."""
    fn()
    _synchronize(device)
    begin = time.perf_counter_ns()
    fn()
    _synchronize(device)
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
    dtype = _TORCH_DTYPE[key]
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    return lambda: torch.mm(a, b, out=out)


def _gemm_flops_per_s(key: str, device: torch.device, sizes: _Sizes) -> tuple[float, int]:
    """Grow n until one GEMM takes ``gemm_target_s`` (or n hits the cap), then time it."""
    n = 256
    while True:
        elapsed = _once_seconds(_gemm_operands(n, key, device), device)
        if elapsed >= sizes.gemm_target_s or n >= sizes.gemm_max_n:
            break
        grow = (sizes.gemm_target_s / elapsed) ** (1 / 3)
        n = min(sizes.gemm_max_n, max(n + 256, int(n * grow) // 256 * 256))
    seconds = _median_seconds(_gemm_operands(n, key, device), device, sizes.warmup, sizes.repeat)
    return 2 * n**3 / seconds, n


def _eager_fma_flops_per_s(key: str, device: torch.device, sizes: _Sizes) -> float:
    dtype = _TORCH_DTYPE[key]
    elements = sizes.vector_elements
    x = torch.zeros(elements, device=device, dtype=dtype)
    # Values near 1 and 0 keep x bounded over the chain (no overflow to inf in half precision).
    a = torch.full((elements,), 0.999, device=device, dtype=dtype)
    b = torch.full((elements,), 1e-3, device=device, dtype=dtype)

    def chain() -> None:
        for _ in range(sizes.vector_chain):
            x.addcmul_(a, b)

    seconds = _median_seconds(chain, device, sizes.warmup, sizes.repeat)
    return 2 * elements * sizes.vector_chain / seconds


_JITERATOR_FMA_CODE = f"""
template <typename T> T layerprof_fma_chain(T x, T a, T b) {{
  T y = x;
  for (int i = 0; i < {_FMA_CHAIN_LENGTH}; ++i) {{ y = y * a + b; }}
  return y;
}}
"""


def _fused_fma_flops_per_s(key: str, device: torch.device, sizes: _Sizes) -> float:
    """A single CUDA kernel doing ``_FMA_CHAIN_LENGTH`` dependent FMAs per element (from registers)."""
    dtype = _TORCH_DTYPE[key]
    kernel = torch.cuda.jiterator._create_jit_fn(_JITERATOR_FMA_CODE)
    elements = 1 << 24
    x = torch.rand(elements, device=device).to(dtype)
    a = torch.full((elements,), 0.999, device=device, dtype=dtype)
    b = torch.full((elements,), 1e-3, device=device, dtype=dtype)
    seconds = _median_seconds(lambda: kernel(x, a, b), device, sizes.warmup, sizes.repeat)
    return 2 * elements * _FMA_CHAIN_LENGTH / seconds


def _copy_bytes_per_s(device: torch.device, sizes: _Sizes) -> float:
    elements = sizes.copy_bytes // 4
    source = torch.ones(elements, device=device, dtype=torch.float32)
    target = torch.empty_like(source)
    seconds = _median_seconds(lambda: target.copy_(source), device, sizes.warmup, sizes.repeat)
    return 2 * elements * 4 / seconds  # every byte is read once and written once


def _launch_overhead_s(device: torch.device, calls: int) -> float:
    """Host time per tiny op: dispatcher plus (on CUDA) kernel launch, the floor under every layer."""
    tiny = torch.zeros(1, device=device)
    for _ in range(10):
        tiny.add_(1)
    _synchronize(device)
    begin = time.perf_counter_ns()
    for _ in range(calls):
        tiny.add_(1)
    _synchronize(device)
    return max((time.perf_counter_ns() - begin) / 1e9 / calls, 1e-9)


def _cuda_has_tf32(device: torch.device) -> bool:
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


def _measure_tf32(device: torch.device, sizes: _Sizes) -> tuple[float, int]:
    # measure_device must switch TF32 on for this one GEMM; the user's setting is restored.
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        return _gemm_flops_per_s("float32", device, sizes)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def _measure_fp32_ieee(device: torch.device, sizes: _Sizes) -> tuple[float, int]:
    if device.type != "cuda":
        return _gemm_flops_per_s("float32", device, sizes)
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        return _gemm_flops_per_s("float32", device, sizes)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def _measure_ceilings(device: torch.device, dtype_keys: Sequence[str], quick: bool) -> _Ceilings:
    """Run every benchmark on ``device``; dtypes that fail to run are skipped (and logged)."""
    sizes = _sizes(device, quick)
    found = _Ceilings()
    # Events record on the current stream of the current device: make ``device`` current.
    on_device = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
    with torch.inference_mode(), on_device:
        for key in dtype_keys:
            try:
                if key == "float32":
                    rate, n = _measure_fp32_ieee(device, sizes)
                else:
                    rate, n = _gemm_flops_per_s(key, device, sizes)
            except (RuntimeError, TypeError, NotImplementedError) as error:
                if key == "float32":
                    raise
                logger.info("skipping %s GEMM on %s: %s", key, device, error)
                continue
            found.matrix[key] = rate
            found.notes[f"matrix_peak_flops_per_s.{key}"] = (
                f"median of {sizes.repeat} torch.mm calls, {n}x{n}x{n} {key} GEMM, 2*n^3 FLOPs"
            )
            logger.info("%s matrix peak on %s: %.3g FLOP/s", key, device, rate)
        if device.type == "cuda" and "float32" in dtype_keys and _cuda_has_tf32(device):
            try:
                rate, n = _measure_tf32(device, sizes)
            except RuntimeError as error:
                logger.info("skipping tf32 GEMM on %s: %s", device, error)
            else:
                # TF32 never makes a GEMM slower than IEEE float32; keep the spec consistent if noise says so.
                found.matrix["tf32"] = max(rate, found.matrix["float32"])
                found.notes["matrix_peak_flops_per_s.tf32"] = (
                    f"median of {sizes.repeat} torch.mm calls, {n}x{n}x{n} float32 GEMM with "
                    f"torch.backends.cuda.matmul.allow_tf32 = True, 2*n^3 FLOPs"
                )

        for key in dtype_keys:
            if key not in _VECTOR_DTYPES:
                continue
            try:
                rate = _eager_fma_flops_per_s(key, device, sizes)
            except (RuntimeError, TypeError, NotImplementedError) as error:
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
                    fused = _fused_fma_flops_per_s(key, device, sizes)
                except Exception as error:  # jiterator needs NVRTC; any failure just keeps eager
                    logger.info("fused FMA kernel unavailable for %s on %s: %s", key, device, error)
                else:
                    if fused > rate:
                        rate = fused
                        note = (
                            f"median of {sizes.repeat} runs of a jiterator kernel doing "
                            f"{_FMA_CHAIN_LENGTH} dependent FMAs per element on 2^24 {key} elements, "
                            "2 FLOPs per FMA"
                        )
            found.vector[key] = rate
            found.notes[f"vector_peak_flops_per_s.{key}"] = note
            logger.info("%s vector peak on %s: %.3g FLOP/s", key, device, rate)

        found.bandwidth_bytes_per_s = _copy_bytes_per_s(device, sizes)
        found.notes["memory_bandwidth_bytes_per_s"] = (
            f"median of {sizes.repeat} copy_ calls of {sizes.copy_bytes} bytes, counting bytes read + written"
        )
        logger.info("memory bandwidth on %s: %.3g B/s", device, found.bandwidth_bytes_per_s)
        calls = 100 if quick else 1000
        found.launch_overhead_s = _launch_overhead_s(device, calls)
        found.notes["launch_overhead_s"] = (
            f"mean host time of {calls} in-place add_ calls on a 1-element tensor"
        )
    if not all(math.isfinite(v) and v > 0 for v in (*found.matrix.values(), *found.vector.values())):
        raise InvalidDeviceSpecError(f"measurement on {device} produced a non-positive figure: {found}")
    return found
