"""Measure this machine's roofline ceilings the empirical way (cf. the Empirical Roofline Toolkit).

A ceiling is the best sustained rate, not a median taken under load: every figure is the best of its
repeats after warm-up (:mod:`layerprof.hardware.steadiness`), and of several kernels or sizes:

* **matrix peak** per dtype: square GEMMs grown until one call is long enough to saturate the device,
  the fastest of three sizes, ``2 * n**3`` FLOPs. On CUDA float32 is timed twice: with TF32 off (the
  ``float32`` figure) and, on GPUs that have it, with TF32 on (the ``tf32`` figure).
* **vector peak** per floating dtype: the faster of a chain of in-place ``addcmul_`` on cache-resident
  tensors (2 FLOPs per FMA) and a sum over a stride-0 view of a cache-resident tensor (1 FLOP per
  element, read from cache, no dispatch floor per element); on CUDA also a fused FMA-chain kernel
  (jiterator, registers only).
* **DRAM bandwidth and the cache levels**: a sweep of working sets (16 KiB to 1 GiB on a CPU, at most
  a quarter of the free memory) with read-only, copy, in-place and triad kernels, counting bytes as
  layerprof counts them (no write-allocate) (:mod:`layerprof.hardware.sweep`); the levels are the
  plateaus of bandwidth against size, cross-checked with the OS (:mod:`layerprof.hardware.levels`).
* **launch overhead**: the host time of a tiny op, the floor under every kernel.

A figure whose repeats keep spreading (:data:`~layerprof.hardware.steadiness.UNSTEADY_SPREAD`) is kept
(its best) but marked ``UNSTEADY`` in its source, logged, warned about with
:class:`~layerprof.hardware.steadiness.UnsteadyMeasurementWarning`, and the result is not cached.
Results are cached as JSON (the device-file schema, so :func:`layerprof.hardware.files.load_devices`
reads them too) keyed by machine, device, torch version and thread count (:mod:`layerprof.hardware.cache`).
"""

from __future__ import annotations

import datetime
import logging
import warnings
from collections.abc import Iterable
from pathlib import Path

import torch

from layerprof.errors import InvalidArgumentError
from layerprof.hardware.cache import cache_file, default_cache_dir, read_cache, write_cache
from layerprof.hardware.ceilings import Ceilings, Progress, measure_ceilings
from layerprof.hardware.identity import Identity, identify, resolve_device
from layerprof.hardware.specs import DeviceSpec, normalize_dtype
from layerprof.hardware.steadiness import UNSTEADY_SPREAD, UnsteadyMeasurementWarning

__all__ = ["cache_path", "check_threads", "default_cache_dir", "measure_device"]

logger = logging.getLogger(__name__)

_DEFAULT_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)


def cache_path(
    device: str | torch.device | None = None,
    *,
    dtypes: Iterable[torch.dtype | str] = _DEFAULT_DTYPES,
    quick: bool = False,
    cache_dir: str | Path | None = None,
    threads: int | None = None,
) -> Path:
    """Where :func:`measure_device` caches (or would cache) the result for these arguments."""
    resolved = resolve_device(device)
    count = check_threads(threads)
    return cache_file(identify(resolved), _dtype_keys(dtypes), quick, cache_dir, threads=count)


def check_threads(threads: object) -> int:
    """``threads`` as a thread count (None: torch's current one); anything but an int >= 1 is refused."""
    if threads is None:
        return torch.get_num_threads()
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise InvalidArgumentError(f"threads must be an int of at least 1, got {threads!r}")
    return threads


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
    threads: int | None = None,
    refresh: bool = False,
    progress: Progress | None = None,
) -> DeviceSpec:
    """Measure a torch device's ceilings: matrix and vector peaks per dtype, DRAM bandwidth, the cache
    levels (capacity and bandwidth each), memory capacity and the launch overhead.

    ``device`` defaults to the current CUDA device when there is one, else the CPU. float32 is always
    measured; dtypes the device cannot run are skipped with a log message. ``threads`` (default:
    ``torch.get_num_threads()``) is the torch thread count to measure with: it is set for the
    measurement only and put back afterwards. With ``cache`` the result is read from / written to
    ``cache_dir`` (default: :func:`default_cache_dir`, ``$LAYERPROF_CACHE_DIR`` or
    ``~/.cache/layerprof``), keyed by machine, device, torch version, threads, dtypes and ``quick``;
    ``refresh`` measures again and rewrites the cached file. A result with an unsteady figure is not
    cached (a warning says so). ``quick`` uses small problems and few repeats (seconds, rough
    figures). ``progress(done, total, label)`` is called before each step of a measurement.

    The spec is named ``"local-cpu"`` or ``"local-<cuda name>"``; a GPU found in the built-in table by
    :func:`~layerprof.hardware.table.match_device_name` is named after it, e.g. ``"h100-sxm (measured)"``
    (without the table entry's aliases, so that it never shadows the datasheet entry).
    """
    resolved = resolve_device(device)
    count = check_threads(threads)
    dtype_keys = _dtype_keys(dtypes)
    identity = identify(resolved)
    path = cache_file(identity, dtype_keys, quick, cache_dir, threads=count)
    if cache and not refresh:
        cached = read_cache(path)
        if cached is not None:
            logger.info("device ceilings of %s read from %s", identity.name, path)
            return cached

    logger.info("measuring device ceilings of %s (%s), %d threads", identity.name, identity.full_name, count)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(count)
        ceilings = measure_ceilings(resolved, dtype_keys, quick, threads=count, progress=progress)
    finally:
        torch.set_num_threads(saved)
    spec = _build_spec(identity, resolved, ceilings)
    if ceilings.unsteady:
        kept = " (a file cached before is left as it was)" if cache else ""
        message = (
            f"{identity.name}: unsteady measurement of {', '.join(sorted(ceilings.unsteady))} (median over "
            f"{UNSTEADY_SPREAD:.0%} above the best after retries; is the machine busy?); the best figures "
            f"are used but not cached{kept}: measure again on a quieter machine (layerprof measure --refresh)"
        )
        logger.warning("%s", message)
        warnings.warn(message, UnsteadyMeasurementWarning, stacklevel=2)
    elif cache:
        write_cache(path, spec)
    return spec


def _build_spec(identity: Identity, device: torch.device, ceilings: Ceilings) -> DeviceSpec:
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
        cache_levels=tuple(
            level
            for level in ceilings.cache_levels
            if ceilings.memory_bytes is None or level.capacity_bytes < ceilings.memory_bytes
        ),
        memory_bytes=ceilings.memory_bytes,
        launch_overhead_s=ceilings.launch_overhead_s,
        price_usd=price,
        sources=sources,
        measured=True,
    )
