"""``layerprof demo``: the CNN shipped in the package, profiled: a per-layer table and a roofline plot."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import torch

from layerprof.api.analyzing import analyze
from layerprof.api.profiling import profile
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec
from layerprof.models.demonet import DEMO_INPUT_SIZE, demo_model


def add_parser(commands: Any) -> None:
    parser = commands.add_parser("demo", help="profile the CNN shipped in the package: table + roofline.png")
    parser.add_argument(
        "--target",
        action="append",
        default=None,
        metavar="NAME",
        help="device to judge layers on (repeatable; default: auto, this machine measured, and t4)",
    )
    parser.add_argument("--batch", type=int, default=DEMO_INPUT_SIZE[0], help="batch size (default 1)")
    parser.add_argument("--output-dir", type=Path, default=Path("."), help="where roofline.png goes")
    parser.add_argument("--no-plot", action="store_true", help="skip the roofline plot")
    parser.add_argument("--no-crosscheck", action="store_true", help="skip the fvcore second opinion")
    parser.add_argument("--no-time", action="store_true", help="count only (no timing on this machine)")
    parser.add_argument("--repeat", type=int, default=20, help="timed forwards (default 20)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (default 1: a small CNN's layers time steadily on one thread); "
        "the auto target is measured (and cached) with as many",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="where the demo runs (default: cuda when torch sees a GPU, else cpu)",
    )
    parser.set_defaults(run=run)


def _is_auto(target: str) -> bool:
    return target.strip().lower() == "auto"


def _measured_auto(threads: int) -> DeviceSpec:
    """``auto``, measured with the demo's thread count (read from the cache when it is there), showing
    the first measurement's progress on stderr."""
    from layerprof.cli.measure_cmd import StderrProgress, quiet_unsteady_warning
    from layerprof.hardware.measure import measure_device

    progress = StderrProgress(prefix="layerprof demo: measuring this machine")
    try:
        with quiet_unsteady_warning():
            return measure_device(threads=threads, progress=progress)
    finally:
        progress.close()


def run(args: argparse.Namespace) -> int:
    names: list[str] = args.target or ["auto", "t4"]
    if args.threads < 1:
        raise InvalidArgumentError(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise InvalidArgumentError("--device cuda, but torch sees no CUDA GPU here")
    targets: list[str | DeviceSpec] = [_measured_auto(args.threads) if _is_auto(t) else t for t in names]
    model = demo_model().to(device)
    size = (args.batch, *DEMO_INPUT_SIZE[1:])
    if args.no_time:
        report = analyze(model, input_size=size, target=targets)
    else:
        inputs = torch.randn(size, device=device)
        report = profile(model, inputs, target=targets, warmup=3, repeat=args.repeat)
    print(report.table())
    if report.coverage is not None and not 0.9 <= report.coverage <= 1.1:
        print(
            f"note: the timed rows cover {report.coverage:.0%} of an unhooked forward: this machine's "
            "timings are unsteady (other load, thread contention); try --threads 1 or more --repeat"
        )
    if not args.no_crosscheck:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fvcore's jit tracer is chatty
            print(report.crosscheck(model).summary())
    if not args.no_plot:
        try:
            args.output_dir.mkdir(parents=True, exist_ok=True)
            path = report.plot_roofline(args.output_dir / "roofline.png")
        except ImportError as error:
            print(f"no roofline plot: {error} (pip install 'layerprof[plot]')")
        else:
            print(f"roofline plot written to {path}")
    return 0
