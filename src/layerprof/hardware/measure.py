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

This module is the entry point and builds the spec; the benchmarks are in
:mod:`layerprof.hardware.microbench`, running them per dtype in :mod:`layerprof.hardware.ceilings`, the
cache in :mod:`layerprof.hardware.cache`, naming the machine in :mod:`layerprof.hardware.identity`.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable
from pathlib import Path

import torch

from layerprof.errors import InvalidArgumentError
from layerprof.hardware.cache import cache_file, default_cache_dir, read_cache, write_cache
from layerprof.hardware.ceilings import Ceilings, measure_ceilings
from layerprof.hardware.identity import Identity, identify, resolve_device
from layerprof.hardware.specs import DeviceSpec, normalize_dtype

__all__ = ["cache_path", "default_cache_dir", "measure_device"]

logger = logging.getLogger(__name__)

_DEFAULT_DTYPES: tuple[torch.dtype, ...] = (torch.float32, torch.float16, torch.bfloat16)


def cache_path(
    device: str | torch.device | None = None,
    *,
    dtypes: Iterable[torch.dtype | str] = _DEFAULT_DTYPES,
    quick: bool = False,
    cache_dir: str | Path | None = None,
) -> Path:
    """Where :func:`measure_device` caches (or would cache) the result for these arguments."""
    resolved = resolve_device(device)
    return cache_file(identify(resolved), _dtype_keys(dtypes), quick, cache_dir)


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
    resolved = resolve_device(device)
    dtype_keys = _dtype_keys(dtypes)
    identity = identify(resolved)
    path = cache_file(identity, dtype_keys, quick, cache_dir)
    if cache:
        cached = read_cache(path)
        if cached is not None:
            logger.info("device ceilings of %s read from %s", identity.name, path)
            return cached

    logger.info("measuring device ceilings of %s (%s)", identity.name, identity.full_name)
    ceilings = measure_ceilings(resolved, dtype_keys, quick)
    spec = _build_spec(identity, resolved, ceilings)
    if cache:
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
        launch_overhead_s=ceilings.launch_overhead_s,
        price_usd=price,
        sources=sources,
        measured=True,
    )
