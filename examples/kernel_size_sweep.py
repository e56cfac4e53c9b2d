"""Kernel size sets a convolution's operational intensity: the seed's point, made visible.

One "same" convolution (C -> C channels, stride 1, padding "same", no bias) on a 56x56 map is swept
over kernel sizes 1, 3, 5, 7 and channel counts 16, 64, 256. Its FLOPs grow as C^2 * k^2 while the
bytes it must move (input + weights + output) grow much more slowly, so intensity (FLOP/byte) grows
with k and with C. layerprof's device table says where each point lands on the GTX 1080 (the seed's
example card), the T4 and the H100: below a device's ridge point the convolution is memory-bound,
above it compute-bound. The points come from ``layerprof.sweep`` (``layerprof sweep`` on the
command line), which prices each convolution through the counter itself. With a CUDA GPU the real
convolutions are timed with CUDA events and their achieved FLOP/s shown against this GPU's roof
(when it is in the device table).

    python examples/kernel_size_sweep.py                      # table, about a second on a CPU
    python examples/kernel_size_sweep.py --plot sweep.png     # and the points on three rooflines
    python examples/kernel_size_sweep.py --dtype float16 --json sweep.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from tabulate import tabulate

import layerprof
from layerprof.core.records import Bound
from layerprof.core.units import binary_bytes, si
from layerprof.hardware.specs import DeviceSpec, normalize_dtype
from layerprof.hardware.table import match_device_name
from layerprof.roofline import model as roofline

DEFAULT_DEVICES = ("gtx1080", "t4", "h100-sxm")
DEFAULT_CHANNELS = (16, 64, 256)
DEFAULT_KERNELS = (1, 3, 5, 7)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one point lands on one device's roofline."""

    device: str
    bound: Bound
    ridge_point: float
    roofline_time_ms: float
    attainable_flops_per_s: float


@dataclass(frozen=True, slots=True)
class Timing:
    device_name: str
    time_ms: float
    achieved_flops_per_s: float
    roof_flops_per_s: float | None  # this GPU's attainable FLOP/s, when it is in the device table


@dataclass(frozen=True, slots=True)
class SweepPoint:
    channels: int
    kernel_size: int
    flops: int
    bytes_moved: int
    intensity: float
    placements: tuple[Placement, ...]
    timing: Timing | None = None

    @property
    def label(self) -> str:
        return f"C={self.channels} {self.kernel_size}x{self.kernel_size}"


def sweep(
    channels: Sequence[int],
    kernels: Sequence[int],
    *,
    size: int = 56,
    batch: int = 1,
    dtype: str = "float32",
    devices: Sequence[DeviceSpec],
    cache_model: bool = False,
) -> list[SweepPoint]:
    """Cost and roofline verdict of every (channels, kernel) point: :func:`layerprof.sweep` does it,
    through the counter itself; nothing runs, nothing allocates. DRAM-only verdicts by default (the
    seed's picture: one ridge per device); ``cache_model=True`` for the cache-aware ones."""
    result = layerprof.sweep(
        channels=list(channels), kernel_size=list(kernels), input_size=size, batch=batch, dtype=dtype,
        targets=list(devices), cache_model=cache_model,
    )  # fmt: skip
    points = []
    for p in result.points:
        placements = tuple(
            Placement(
                device=device.name,
                bound=p.verdicts[device.name].bound,
                ridge_point=p.verdicts[device.name].ridge_point,
                roofline_time_ms=p.verdicts[device.name].roofline_time_ms,
                attainable_flops_per_s=p.flops / (p.verdicts[device.name].roofline_time_ms / 1e3),
            )
            for device in devices
        )
        c, k = p.params.in_channels, p.params.kernel_size[0]
        points.append(SweepPoint(c, k, p.flops, p.bytes_moved, p.intensity, placements))
    return points


def time_on_gpu(
    points: Sequence[SweepPoint], *, size: int, batch: int, dtype: str, repeat: int
) -> list[SweepPoint]:
    """The points with the real convolution timed on this CUDA GPU (median of ``repeat`` runs)."""
    torch_dtype = getattr(torch, normalize_dtype(dtype))
    gpu = torch.device("cuda")
    name = torch.cuda.get_device_name(gpu)
    spec = match_device_name(name)
    timed = []
    saved_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True  # let cuDNN pick its fastest algorithm, as a tuned model would
    try:
        for point in points:
            k = point.kernel_size
            conv = torch.nn.Conv2d(point.channels, point.channels, k, padding="same", bias=False)
            conv = conv.to(device=gpu, dtype=torch_dtype)
            x = torch.randn(batch, point.channels, size, size, device=gpu, dtype=torch_dtype)
            starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeat)]  # type: ignore[no-untyped-call]
            ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeat)]  # type: ignore[no-untyped-call]
            with torch.no_grad():
                for _ in range(10):
                    conv(x)
                torch.cuda.synchronize(gpu)
                for start, end in zip(starts, ends, strict=True):
                    start.record()
                    conv(x)
                    end.record()
                torch.cuda.synchronize(gpu)
            time_ms = statistics.median(s.elapsed_time(e) for s, e in zip(starts, ends, strict=True))
            roof = None
            if spec is not None:
                verdict = roofline.verdict(
                    spec.name,
                    spec,
                    flops=point.flops,
                    matrix_flops=point.flops,
                    bytes_moved=point.bytes_moved,
                    dtype=dtype,
                    allow_tf32=roofline.allow_tf32_for("gpu", "conv"),
                )
                roof = point.flops / (verdict.roofline_time_ms / 1e3)
            timing = Timing(name, time_ms, point.flops / (time_ms / 1e3), roof)
            timed.append(replace(point, timing=timing))
    finally:
        torch.backends.cudnn.benchmark = saved_benchmark
    return timed


def table(points: Sequence[SweepPoint], devices: Sequence[DeviceSpec], dtype: str) -> str:
    headers = ["C", "kernel", "FLOPs", "bytes", "FLOP/B"]
    for device, bound in zip(devices, points[0].placements, strict=True):
        headers.append(f"{device.name} (ridge {bound.ridge_point:.3g})")
    timed = any(p.timing is not None for p in points)
    if timed:
        headers += ["time ms", "achieved", "% of roof"]
    body = []
    for p in points:
        kernel = f"{p.kernel_size}x{p.kernel_size}"
        cells = [str(p.channels), kernel, si(p.flops), binary_bytes(p.bytes_moved), f"{p.intensity:.3g}"]
        cells += [b.bound for b in p.placements]
        if p.timing is not None:
            t = p.timing
            share = (
                "-" if t.roof_flops_per_s is None else f"{t.achieved_flops_per_s / t.roof_flops_per_s:.0%}"
            )
            cells += [f"{t.time_ms:.3f}", f"{si(t.achieved_flops_per_s)}FLOP/s", share]
        body.append(cells)
    return tabulate(body, headers=headers, disable_numparse=True)


def plot(
    points: Sequence[SweepPoint], devices: Sequence[DeviceSpec], dtype: str, path: Path, size: int
) -> Path:
    from layerprof.report.plot_draw import draw_rooflines
    from layerprof.report.plot_layout import RooflineDot, RooflinePanel

    panels = [
        RooflinePanel(
            target=device,
            dtype=dtype,
            dots=tuple(
                RooflineDot(
                    p.label,
                    p.intensity,
                    p.placements[i].attainable_flops_per_s,
                    float(p.flops),
                    p.placements[i].bound,
                    measured=False,
                )
                for p in points
            ),
        )
        for i, device in enumerate(devices)
    ]
    timed = [p for p in points if p.timing is not None]
    spec = match_device_name(timed[0].timing.device_name) if timed and timed[0].timing else None
    if spec is not None:
        dots = []
        for p in timed:
            assert p.timing is not None
            verdict = roofline.verdict(
                spec.name, spec, flops=p.flops, matrix_flops=p.flops, bytes_moved=p.bytes_moved, dtype=dtype,
                allow_tf32=roofline.allow_tf32_for("gpu", "conv"),
            )  # fmt: skip
            dots.append(
                RooflineDot(
                    p.label,
                    p.intensity,
                    p.timing.achieved_flops_per_s,
                    float(p.flops),
                    verdict.bound,
                    measured=True,
                )
            )
        panels.append(RooflinePanel(spec, dtype, tuple(dots), title=f"{spec.full_name} (this GPU, measured)"))
    title = f"Conv2d C->C, {size}x{size}, stride 1, same padding: kernel size vs roofline ({dtype})"
    return draw_rooflines(panels, path, title=title, label_top=len(points), weight_meaning="FLOPs")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--channels", type=int, nargs="+", default=list(DEFAULT_CHANNELS))
    parser.add_argument("--kernels", type=int, nargs="+", default=list(DEFAULT_KERNELS))
    parser.add_argument("--size", type=int, default=56, help="input height = width (default 56)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--dtype", default="float32", help="float32, float16, bfloat16 (default float32)")
    parser.add_argument(
        "--devices", nargs="+", default=list(DEFAULT_DEVICES), help="names from `layerprof devices`"
    )
    parser.add_argument("--no-time", action="store_true", help="do not time on the GPU even if there is one")
    parser.add_argument("--repeat", type=int, default=50, help="timed runs per point (median kept)")
    parser.add_argument("--plot", type=Path, help="write the points on each device's roofline (.png or .svg)")
    parser.add_argument("--json", type=Path, help="write the points as JSON")
    args = parser.parse_args(argv)

    try:
        dtype = normalize_dtype(args.dtype)
        devices = [layerprof.get_device(name) for name in args.devices]
        points = sweep(
            args.channels, args.kernels, size=args.size, batch=args.batch, dtype=dtype, devices=devices
        )
    except layerprof.LayerprofError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if torch.cuda.is_available() and not args.no_time:
        points = time_on_gpu(points, size=args.size, batch=args.batch, dtype=dtype, repeat=args.repeat)

    print(
        f"Conv2d C->C on a {args.batch}xCx{args.size}x{args.size} input, stride 1, padding same, no bias, "
        f"{dtype}. FLOPs = 2 * N * H * W * C * C * k * k; bytes = input + weights + output."
    )
    print(table(points, devices, dtype))
    if any(p.timing is not None for p in points):
        timing = next(p.timing for p in points if p.timing is not None)
        print(f"timed on {timing.device_name} with CUDA events, median of {args.repeat} runs")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(p) for p in points], indent=2))
    if args.plot is not None:
        print(f"wrote {plot(points, devices, dtype, args.plot, args.size)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
