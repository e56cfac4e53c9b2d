"""``layerprof compare OLD.json NEW.json``: what changed between two saved reports.

Rows are matched by (phase, name); changed, added and removed rows are listed with their FLOPs,
bytes, time and bound changes, then the totals. ``--max-regression 5%`` (or ``0.05``) exits 1 when
the total FLOPs, bytes or (when both reports are timed) time grew by more than that.
Exit codes: 0 fine, 1 a regression past the limit, 2 a usage error (missing or unreadable report).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from layerprof.analysis.compare import compare, load_report, parse_fraction, render
from layerprof.errors import InvalidArgumentError

FORMATS = ("table", "markdown", "json")


def _fraction(text: str) -> float:
    try:
        return parse_fraction(text)
    except InvalidArgumentError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "compare",
        help="differences between two JSON reports; exit 1 on a regression past --max-regression",
        description="Compare two reports written by `layerprof audit --format json` or report.to_json().",
    )
    parser.add_argument("old", type=Path, metavar="OLD.json")
    parser.add_argument("new", type=Path, metavar="NEW.json")
    parser.add_argument(
        "--max-regression",
        type=_fraction,
        default=None,
        metavar="5%",
        help="fail (exit 1) when total FLOPs, bytes or time grew by more than this (5%% or 0.05)",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    parser.add_argument("--all", action="store_true", help="list unchanged rows too")
    parser.add_argument("--output", type=Path, default=None, metavar="FILE", help="write the comparison here")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    comparison = compare(load_report(args.old), load_report(args.new))
    if args.format == "json":
        text = json.dumps(comparison.to_dict(), indent=2) + "\n"
    else:
        text = (
            render(comparison, fmt="github" if args.format == "markdown" else "simple", show_all=args.all)
            + "\n"
        )
    if args.output is not None:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as error:
            raise InvalidArgumentError(f"cannot write --output {str(args.output)!r}: {error}") from error
    else:
        sys.stdout.write(text)
    if args.max_regression is None:
        return 0
    regressions = comparison.regressions(args.max_regression)
    for regression in regressions:
        print(regression.describe(), file=sys.stderr)
    return 1 if regressions else 0
