"""``layerprof measure``: this machine's own ceilings (GEMM, FMA, the bandwidth sweep and the cache levels
it finds), cached per machine, device, torch version and thread count.

A CPU's figures print in GFLOP/s and GB/s, a GPU's in TFLOP/s and GB/s (TB/s from 1000 GB/s); then one
line per memory level (the caches found, then DRAM) and every figure's source. A first measurement
shows its progress on stderr: a bar on a terminal, one line per step otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

from tabulate import tabulate

from layerprof.cli.progress import Progress
from layerprof.hardware.specs import DeviceSpec

__all__ = ["StderrProgress", "add_parser", "measure_report", "quiet_unsteady_warning", "run", "threads_type"]


def threads_type(text: str) -> int:
    """``--threads``: a whole number of at least 1 (argparse exits 2 naming anything else)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != text.strip():
        raise argparse.ArgumentTypeError(f"--threads must be a whole number of at least 1, got {text!r}")
    return value


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "measure", help="measure this machine's peak FLOP/s, bandwidth and cache levels"
    )
    parser.add_argument(
        "--device", default=None, help="torch device to measure (default: cuda if present, else cpu)"
    )
    parser.add_argument(
        "--threads",
        type=threads_type,
        default=None,
        help="torch threads to measure with (default: torch's current count); part of the cache key",
    )
    parser.add_argument("--refresh", action="store_true", help="measure again and rewrite the cached result")
    parser.add_argument(
        "--no-cache", action="store_true", help="measure again; neither read nor write the cache"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and few repeats (seconds, less exact)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.set_defaults(run=run)


class StderrProgress:
    """A ``progress(done, total, label)`` callback for :func:`~layerprof.measure_device`: a bar on a
    terminal, else one ``layerprof measure: [3/25] bandwidth at 4 MiB`` line per step."""

    def __init__(
        self, stream: TextIO | None = None, *, prefix: str = "layerprof measure", enabled: bool = True
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.prefix = prefix
        self.enabled = enabled
        self._bar: Progress | None = None
        self.calls = 0  # counted even when silent: zero calls means nothing was measured

    def __call__(self, done: int, total: int, label: str) -> None:
        self.calls += 1
        if not self.enabled:
            return
        if _is_terminal(self.stream):
            if self._bar is None:
                self._bar = Progress(total, stream=self.stream, prefix=self.prefix)
            self._bar.step(label)
        else:
            print(f"{self.prefix}: [{done + 1}/{total}] {label}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def quiet_unsteady_warning() -> Iterator[None]:
    """The CLI says an unsteady result is not cached in its output (and the library's log line on
    stderr says why): the Python warning would say it a third time, pointing at CLI code."""
    from layerprof.hardware.steadiness import UnsteadyMeasurementWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsteadyMeasurementWarning)
        yield


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def run(args: argparse.Namespace) -> int:
    from layerprof.hardware.measure import cache_path, measure_device

    progress = StderrProgress(enabled=not args.quiet)
    try:
        with quiet_unsteady_warning():
            spec = measure_device(
                args.device,
                cache=not args.no_cache,
                quick=args.quick,
                threads=args.threads,
                refresh=args.refresh,
                progress=progress,
            )
    finally:
        progress.close()
    path = cache_path(args.device, quick=args.quick, threads=args.threads)
    if args.no_cache:
        where = f"not cached (--no-cache; the cache file would be {path})"
    elif progress.calls == 0:
        where = f"read from the cache {path} (--refresh measures again)"
    elif any("UNSTEADY" in source for source in spec.sources.values()):
        where = "NOT cached: some figures are unsteady (marked UNSTEADY below); measure again when quieter"
    else:
        where = f"cached in {path}"
    print(measure_report(spec, where))
    return 0


def _scale(spec: DeviceSpec) -> tuple[float, str]:
    return (1e12, "TFLOP/s") if spec.kind == "gpu" else (1e9, "GFLOP/s")


def _bandwidth(value: float, spec: DeviceSpec) -> str:
    if spec.kind == "gpu" and value >= 1e12:
        return f"{value / 1e12:.3g} TB/s"
    return f"{value / 1e9:.3g} GB/s"


def _bytes(size: int | None) -> str:
    from layerprof.hardware.sweep import format_bytes

    return "?" if size is None else format_bytes(size)


def _threads_of(spec: DeviceSpec) -> str:
    source = spec.sources.get("memory_bandwidth_bytes_per_s", "")
    tail = source.rsplit("; ", 1)[-1]
    return tail if "torch thread" in tail else "torch threads unknown"


def measure_report(spec: DeviceSpec, where: str) -> str:
    """What ``layerprof measure`` prints: the peaks, the memory levels, the launch floor, the sources."""
    scale, unit = _scale(spec)
    lines = [f"{spec.name}: {spec.full_name}, measured ({_threads_of(spec)}); {where}"]
    dtypes = sorted(set(spec.matrix_peak_flops_per_s) | set(spec.vector_peak_flops_per_s))
    peaks = [
        [
            dtype,
            _rate(spec.matrix_peak_flops_per_s.get(dtype), scale),
            _rate(spec.vector_peak_flops_per_s.get(dtype), scale),
        ]
        for dtype in dtypes
    ]
    lines += ["", tabulate(peaks, headers=["dtype", f"matrix {unit}", f"vector {unit}"], tablefmt="plain")]
    levels = [
        [lvl.name, _bytes(lvl.capacity_bytes), _bandwidth(lvl.bandwidth_bytes_per_s, spec)]
        for lvl in spec.cache_levels
    ]
    levels.append(["DRAM", _bytes(spec.memory_bytes), _bandwidth(spec.memory_bandwidth_bytes_per_s, spec)])
    lines += ["", tabulate(levels, headers=["level", "capacity", "bandwidth"], tablefmt="plain")]
    if spec.launch_overhead_s is not None:
        lines += ["", f"launch/dispatch floor: {spec.launch_overhead_s * 1e6:.3g} us per kernel"]
    lines += ["", "sources:"]
    lines += [f"  {figure}: {source}" for figure, source in sorted(spec.sources.items())]
    return "\n".join(lines)


def _rate(value: float | None, scale: float) -> str:
    return "" if value is None else f"{value / scale:.3g}"
