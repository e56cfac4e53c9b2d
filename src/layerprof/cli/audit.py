"""``layerprof audit MODEL``: a pre-deployment audit: counted (or timed) report, budgets, files.

By default nothing is computed: the model runs on the meta device (``layerprof.analyze``) at the
input size and dtype asked, and is judged on the targets' rooflines. ``--time`` measures it on this
machine instead (``layerprof.profile``). Budgets come from ``[tool.layerprof]`` in the current
folder's pyproject.toml (or ``--config FILE``) and the command line, which wins.

Exit codes: 0 every budget holds, 1 a budget failed (one line per failed budget on stderr: name,
target, value, limit, how far over), 2 a usage error (bad option, model that cannot be loaded or run).
The report goes to stdout (or ``--output``); progress, warnings and budget lines go to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layerprof.analysis.budgets import BUDGET_NAMES, BudgetResult, Budgets, check, failures
from layerprof.cli.config import AuditConfig, read_config
from layerprof.cli.loader import LoadedModel, load_model, parse_model_args
from layerprof.cli.memory_args import add_memory_arguments, max_batch_lines
from layerprof.cli.model_args import add_model_arguments, input_sizes
from layerprof.cli.progress import Progress
from layerprof.core.dtypes import canonical_name, parse_dtype
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.table import get_device
from layerprof.report.render import SORT_KEYS, check_options

if TYPE_CHECKING:
    import torch

    from layerprof.report.facade import Report

FORMATS = ("table", "markdown", "json", "csv", "html", "trace")
#: --dtype choices -> the torch names they stand for, from the one spelling table (core.dtypes).
DTYPES = {flag: canonical_name(flag) for flag in ("fp32", "fp16", "bf16", "int8")}
_SUFFIX_FORMATS = {".json": "json", ".csv": "csv", ".html": "html", ".htm": "html", ".md": "markdown"}
_PLOT_SUFFIXES = (".png", ".svg")


def _audit_dtype(value: str) -> str | None:
    """The torch name of a spelling of a dtype audit prices at, else None (an unknown spelling raises)."""
    name = canonical_name(value)
    return name if name in DTYPES.values() else None


def _dtype_flag(text: str) -> str:
    """Any spelling of a supported dtype (``half``, ``float16``, ``fp16``) -> its torch name."""
    try:
        name = _audit_dtype(text)
    except InvalidArgumentError:
        name = None
    if name is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not one of {', '.join(DTYPES)} (or another spelling of one)"
        )
    return name


def _count(text: str) -> float:
    """``25e6``, ``25000000``, ``25M``, ``1.5G`` -> a number (for --max-params)."""
    factors = {"K": 1e3, "M": 1e6, "G": 1e9}
    raw = text.strip()
    factor = factors.get(raw[-1:].upper(), 1.0)
    number = raw[:-1] if factor != 1.0 else raw
    try:
        return float(number) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count like 25e6 or 25M") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "audit",
        help="pre-deployment audit of a model: report, budgets (exit 1 when one fails)",
        description=(
            "Audit MODEL (torchvision:NAME, package.module:factory, path/to/file.py:factory or a "
            "torch.export .pt2 file) on target devices. Counts FLOPs and bytes without computing "
            "anything unless --time is given. Exit 0: budgets hold; 1: a budget failed; 2: usage error."
        ),
    )
    add_model_arguments(
        parser,
        model_help="torchvision:NAME, module:factory, file.py:factory or FILE.pt2",
        size_metavar="1,3,224,224",
        size_help="input size, batch first (repeatable, one per input; default 1,3,224,224 or "
        "the torchvision weights' crop size, or the exported program's shapes)",
    )
    parser.add_argument(
        "--dtype",
        type=_dtype_flag,
        default=None,
        metavar="{fp32,fp16,bf16,int8}",
        help="dtype to price the model at, in any spelling the API takes (float16, half, ...; default fp32)",
    )
    parser.add_argument(
        "--target",
        action="append",
        default=None,
        metavar="NAME",
        help="device to judge on (repeatable; default auto: this machine, measured)",
    )
    parser.add_argument("--time", action="store_true", help="measure on this machine (layerprof.profile)")
    parser.add_argument(
        "--no-cache-model",
        dest="cache_model",
        action="store_false",
        help="DRAM-only verdicts: every byte from DRAM, no launch floor (cache_model=False)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="torch device to time on and to measure for target auto (default cuda if present)",
    )
    parser.add_argument("--warmup", type=_positive_int, default=5, help="--time: warm-up rounds (default 5)")
    parser.add_argument("--repeat", type=_positive_int, default=20, help="--time: timed rounds (default 20)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="report format (default table, or from the --output suffix); trace: a Perfetto / "
        "chrome://tracing timeline of the timed rows (needs --time and --output)",
    )
    parser.add_argument(
        "--output", type=Path, default=None, metavar="FILE", help="write the report here, not stdout"
    )
    parser.add_argument(
        "--plot", type=Path, default=None, metavar="FILE", help="roofline plot (.png or .svg)"
    )
    parser.add_argument("--depth", type=int, default=None, help="table: roll rows up to this module depth")
    parser.add_argument(
        "--sort", choices=tuple(SORT_KEYS), default=None, help="table: sort rows by this, largest first"
    )
    parser.add_argument(
        "--top", type=_positive_int, default=None, help="table: keep this many rows, fold the rest"
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar, no report on stdout, only failed budgets and errors",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML file with settings and budgets (default: [tool.layerprof] of ./pyproject.toml)",
    )
    budgets = parser.add_argument_group("budgets (exit 1 when one fails; override the config file)")
    budgets.add_argument("--max-gflops", type=float, default=None, metavar="X", help="total FLOPs / 1e9")
    budgets.add_argument(
        "--max-params", type=_count, default=None, metavar="N", help="parameters (25e6, 25M)"
    )
    budgets.add_argument(
        "--max-latency-ms",
        type=float,
        default=None,
        metavar="MS",
        help="roofline-predicted time per target (measured time with --time)",
    )
    budgets.add_argument(
        "--max-memory-bound-share",
        type=float,
        default=None,
        metavar="SHARE",
        help="share (0..1) of predicted time in memory-bound rows, per target",
    )
    budgets.add_argument(
        "--min-roofline-efficiency",
        type=float,
        default=None,
        metavar="SHARE",
        help="predicted / measured time, per target (needs --time)",
    )
    add_memory_arguments(parser, budgets)
    parser.set_defaults(run=run)


def _budgets(args: argparse.Namespace, config: AuditConfig) -> Budgets:
    from_file = Budgets.from_mapping(config.budgets)
    from_line = Budgets(**{name: getattr(args, name) for name in BUDGET_NAMES})
    return from_file.overridden_by(from_line)


def _dtype(args: argparse.Namespace, config: AuditConfig) -> str:
    if args.dtype is not None:
        return str(args.dtype)
    if config.dtype is None:
        return "float32"
    name = _audit_dtype(config.dtype)
    if name is None:
        raise InvalidArgumentError(
            f"{config.source}: dtype {config.dtype!r} must be one of {', '.join(DTYPES)}"
        )
    return name


def _format(args: argparse.Namespace) -> str:
    if args.format is not None:
        return str(args.format)
    if args.output is not None:
        return _SUFFIX_FORMATS.get(args.output.suffix.lower(), "table")
    return "table"


def _check_usage(args: argparse.Namespace, budgets: Budgets, dtype: str, device: str | None) -> None:
    """Everything that can be refused before any work is done."""
    check_options(args.depth, args.sort, args.top, "simple")
    if args.sort == "time" and not args.time:
        raise InvalidArgumentError("--sort time sorts by measured times: it needs --time")
    if _format(args) == "trace":
        if not args.time:
            raise InvalidArgumentError("--format trace lays out measured times: it needs --time")
        if args.output is None:
            raise InvalidArgumentError("--format trace writes a file: give --output FILE (model.trace.json)")
    if budgets.needs_timing and not args.time:
        raise InvalidArgumentError(
            "--min-roofline-efficiency compares measured with predicted time: it needs --time"
        )
    if args.optimizer is not None and args.time:
        raise InvalidArgumentError("--optimizer counts a training step on meta; --time times inference")
    if dtype == "int8" and args.time:
        raise InvalidArgumentError(
            "--dtype int8 prices the model at int8 but cannot run it: leave out --time"
        )
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise InvalidArgumentError("--device cuda, but torch sees no CUDA device on this machine")
    if args.plot is not None:
        if args.plot.suffix.lower() not in _PLOT_SUFFIXES:
            raise InvalidArgumentError(f"--plot {str(args.plot)!r} must end in .png or .svg")
        if importlib.util.find_spec("matplotlib") is None:
            raise InvalidArgumentError("--plot needs matplotlib: pip install 'layerprof[plot]'")


def _targets(names: Sequence[str], device: str | None, bar: Progress) -> list[DeviceSpec]:
    specs = []
    for name in names:
        if name.strip().lower() == "auto":
            from layerprof.hardware.measure import measure_device

            bar.step(f"measuring this machine ({device or 'default device'})")
            specs.append(measure_device(device))
        else:
            specs.append(get_device(name))
    if len({s.name for s in specs}) != len(specs):
        raise InvalidArgumentError(f"--target names a device twice: {', '.join(s.name for s in specs)}")
    return specs


def _report(
    loaded: LoadedModel,
    sizes: Sequence[tuple[int, ...]],
    dtype: str,
    targets: Sequence[DeviceSpec],
    args: argparse.Namespace,
    device: str | None,
) -> Report:
    size_arg: Any = sizes[0] if len(sizes) == 1 else list(sizes)
    # A deployment runs inference: dropout off, batch norm on its running statistics. An exported
    # program's mode was fixed when it was exported (and its module refuses eval()).
    if loaded.kind != "exported":
        loaded.model.train(args.optimizer is not None)  # --optimizer audits a training step
    if not args.time:
        from layerprof.api.analyzing import analyze

        training = args.optimizer is not None
        return analyze(
            loaded.model,
            input_size=size_arg,
            dtype=dtype,
            target=list(targets),
            backward=training,
            optimizer=args.optimizer,
            cache_model=args.cache_model,
        )
    import torch

    from layerprof.api.profiling import profile  # the timing path is imported only when asked for

    where = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch_dtype: torch.dtype = parse_dtype(dtype)
    _check_inputs_fit(sizes, torch_dtype, where)
    model = loaded.model.to(device=where, dtype=torch_dtype)
    inputs = tuple(torch.randn(size, device=where, dtype=torch_dtype) for size in sizes)
    return profile(
        model,
        inputs[0] if len(inputs) == 1 else inputs,
        target=list(targets),
        warmup=args.warmup,
        repeat=args.repeat,
        cache_model=args.cache_model,
    )


def _available_bytes(where: Any) -> int | None:
    """Free memory on the torch device the inputs would be allocated on (None when unknown)."""
    import torch

    if where.type == "cuda":
        return int(torch.cuda.mem_get_info(where)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _check_inputs_fit(sizes: Sequence[Sequence[int]], dtype: Any, where: Any) -> None:
    """--time allocates real inputs: refuse, from their size alone, inputs this device cannot hold."""
    needed = sum(math.prod(size) for size in sizes) * dtype.itemsize
    available = _available_bytes(where)
    if available is not None and needed > available:
        raise InvalidArgumentError(
            f"--time needs {needed / 2**30:.3g} GiB for the inputs {', '.join(map(str, sizes))} at {dtype}, "
            f"but {where} has {available / 2**30:.3g} GiB free; time a smaller --input-size"
        )


def _render(report: Report, fmt: str, args: argparse.Namespace, results: Sequence[BudgetResult]) -> str:
    if fmt == "json":
        return report.to_json()
    if fmt == "csv":
        return report.to_csv()
    if fmt == "trace":
        return report.to_trace()
    if fmt == "html":
        from layerprof.report.html import render_html

        return render_html(
            report,
            title=f"layerprof audit: {args.model}",
            budgets=results,
            depth=args.depth,
            sort=args.sort,
            top=args.top,
        )
    table = report.table(
        depth=args.depth, sort=args.sort, top=args.top, fmt="github" if fmt == "markdown" else "simple"
    )
    return table + "\n"


def _say(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"layerprof audit: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    config = read_config(args.config, directory=Path.cwd())
    budgets = _budgets(args, config)
    dtype = _dtype(args, config)
    device = args.device or config.device
    if device not in (None, "cpu", "cuda"):
        raise InvalidArgumentError(f"{config.source}: device must be cpu or cuda, got {device!r}")
    _check_usage(args, budgets, dtype, device)
    fmt = _format(args)
    target_names = args.target or list(config.targets or ()) or ["auto"]
    model_args = {**config.model_args, **parse_model_args(args.model_arg)}
    steps = 3 + sum(n.strip().lower() == "auto" for n in target_names) + (args.plot is not None)

    with (
        Progress(steps, stream=sys.stderr, enabled=not args.quiet, prefix="layerprof audit") as bar,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        bar.step(f"loading {args.model}")
        # Counting needs shapes only: torchvision models are then built on the meta device.
        loaded = load_model(args.model, model_args, on_meta=not args.time)
        sizes = input_sizes(loaded, args.input_size, config.input_sizes)
        targets = _targets(target_names, device, bar)
        bar.step("timing on this machine" if args.time else "counting FLOPs and bytes")
        report = _report(loaded, sizes, dtype, targets, args, device)
        if args.plot is not None:
            bar.step(f"plotting {args.plot}")
            report.plot_roofline(args.plot)
        results = check(report, budgets) if not budgets.empty else ()
        bar.step("writing the report")
        text = _render(report, fmt, args, results)
        if args.max_batch:
            batches = max_batch_lines(loaded.model, sizes, dtype, targets, args.optimizer)
    for message in dict.fromkeys(str(w.message) for w in caught):
        _say(f"warning: {message}", args.quiet)

    if args.output is not None:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as error:
            raise InvalidArgumentError(f"cannot write --output {str(args.output)!r}: {error}") from error
        _say(f"{fmt} report written to {args.output}", args.quiet)
    elif not args.quiet:
        sys.stdout.write(text)
    if args.max_batch:
        print("\n".join(batches), file=sys.stdout if args.output is None and not args.quiet else sys.stderr)
    if args.plot is not None:
        _say(f"roofline plot written to {args.plot}", args.quiet)
    return _verdict(results, args.quiet)


def _verdict(results: Sequence[BudgetResult], quiet: bool) -> int:
    failed = failures(results)
    for result in results:
        if not result.passed or not quiet:
            print(result.describe(), file=sys.stderr)
    if failed:
        print(f"layerprof audit: {len(failed)} of {len(results)} budget checks failed", file=sys.stderr)
        return 1
    if results:
        _say(f"all {len(results)} budget checks hold", quiet)
    return 0
