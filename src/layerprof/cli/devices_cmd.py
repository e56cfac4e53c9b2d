"""``layerprof devices``: target ``auto`` (this machine), the built-in device table (plus devices from a
file) and the interconnects.

``auto`` is not a table entry: it is this machine, measured by ``layerprof.measure_device`` on first use
and cached, under the name its spec gets (``local-cpu`` on a CPU, ``h100-sxm (measured)`` on a GPU of
the table, ``local-<cuda name>`` on another GPU; none of them is a name ``--target`` takes). Its line
shows the cached figures when this machine was measured already and says ``layerprof measure``
otherwise; nothing is measured here.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from tabulate import tabulate_formats

from layerprof.cli.device_table import AutoLine, device_table, full_sources, link_table
from layerprof.hardware.files import load_devices
from layerprof.hardware.table import list_devices, list_links

logger = logging.getLogger(__name__)


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "devices", help="print the device table: auto (this machine), the built-in devices, links"
    )
    parser.add_argument(
        "--file",
        action="append",
        default=[],
        metavar="PATH",
        help="also list devices from a JSON or TOML device file (repeatable)",
    )
    parser.add_argument(
        "--format",
        default="simple",
        choices=sorted(tabulate_formats),
        metavar="FMT",
        help="a tabulate format: simple, github, grid, plain, ... (default simple)",
    )
    parser.add_argument(
        "--sources", action="store_true", help="then print every figure's source in full, device by device"
    )
    parser.set_defaults(run=run)


def auto_line() -> AutoLine:
    """What target ``auto`` resolves to on this machine, with its cached measurement if there is one."""
    from layerprof.hardware.cache import read_cache
    from layerprof.hardware.identity import identify, resolve_device
    from layerprof.hardware.measure import cache_path

    device = resolve_device(None)  # what resolve_targets("auto") measures: measure_device()'s default
    identity = identify(device)
    cached = read_cache(cache_path(device))
    return AutoLine(identity.name, identity.full_name, identity.kind, cached)


def run(args: argparse.Namespace) -> int:
    extra = [spec for path in args.file for spec in load_devices(path)]
    devices = list_devices(extra)
    print(device_table(devices, fmt=args.format, auto=auto_line()))
    print()
    print(link_table(list_links(), fmt=args.format))
    if args.sources:
        print()
        print(full_sources(devices))
    return 0
