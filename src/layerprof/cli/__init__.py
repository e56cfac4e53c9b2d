"""The ``layerprof`` command: ``demo``, ``devices``, ``measure`` (and more as subcommands grow).

Exit codes: 0 success, 1 a check failed (a budget, a regression), 2 a usage error (bad option, unknown
device, a model that cannot be loaded). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from layerprof.cli import (
    audit,
    cards_cmd,
    compare_cmd,
    demo,
    devices_cmd,
    measure_cmd,
    scale_cmd,
    sweep_cmd,
)
from layerprof.errors import LayerprofError
from layerprof.version import __version__

COMMANDS = (demo, audit, compare_cmd, devices_cmd, measure_cmd, scale_cmd, cards_cmd, sweep_cmd)


class _OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and a pointer to ``--help``, not the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(
        prog="layerprof",
        description="Layer-by-layer FLOPs, bytes, time and roofline verdicts for PyTorch CNNs.",
    )
    parser.add_argument("--version", action="version", version=f"layerprof {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on usage errors, 0 on --help
        return int(exit_.code or 0)
    try:
        return int(args.run(args))
    except (LayerprofError, OSError) as error:
        print(f"layerprof {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("layerprof: interrupted", file=sys.stderr)
        return 130
