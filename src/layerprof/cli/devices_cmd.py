"""``layerprof devices``: the built-in device table (plus devices from a file) and the interconnects."""

from __future__ import annotations

import argparse
from typing import Any

from tabulate import tabulate_formats

from layerprof.cli.device_table import device_table, link_table
from layerprof.hardware.files import load_devices
from layerprof.hardware.table import list_devices, list_links


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("devices", help="print the built-in device table")
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
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    extra = [spec for path in args.file for spec in load_devices(path)]
    print(device_table(list_devices(extra), fmt=args.format))
    print()
    print(link_table(list_links(), fmt=args.format))
    return 0
