"""``layerprof measure``: this machine's own ceilings (GEMM, FMA, copy), cached per device and torch."""

from __future__ import annotations

import argparse
from typing import Any

from layerprof.cli.device_table import device_table


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("measure", help="measure this machine's peak FLOP/s and bandwidth")
    parser.add_argument(
        "--device", default=None, help="torch device to measure (default: cuda if present, else cpu)"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="measure again even if a cached result exists"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and few repeats (seconds, less exact)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from layerprof.hardware.measure import measure_device

    spec = measure_device(args.device, cache=not args.no_cache, quick=args.quick)
    print(device_table([spec]))
    for figure, source in sorted(spec.sources.items()):
        print(f"  {figure}: {source}")
    return 0
