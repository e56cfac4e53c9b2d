"""``layerprof sweep``: which kernel size (channels, groups, dtype, batch)? A convolution's what-ifs.

Every comma-separated option is an axis; the points are their product, each priced by the counter
itself (:func:`layerprof.analysis.sweep.sweep`). Prints a table and a one-paragraph answer; writes
the points on each target's roofline with ``--plot``. Exit 0 on success, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from layerprof.analysis.sweep_text import FORMATS
from layerprof.errors import InvalidArgumentError

__all__ = ["add_parser", "run"]


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "sweep",
        help="a convolution over kernel sizes, channels, groups, dtypes, batches: FLOPs, bytes, bound",
        description=(
            "Price one Conv2d (or a model's layer, --model/--layer) at every combination of the "
            "comma-separated values given: FLOPs, bytes per memory level, intensity, roofline bound "
            "and predicted time on each target, through the very formulas the counter uses."
        ),
    )
    add = parser.add_argument
    add("--kernel-size", default=None, metavar="K,K,...", help="kernel sizes, e.g. 1,3,5,7 (or 1x7)")
    add("--channels", default=None, metavar="C,C,...", help="in = out channels (default 64)")
    add("--in-channels", default=None, metavar="C,...", help="input channels (with --out-channels)")
    add("--out-channels", default=None, metavar="C,...", help="output channels (with --in-channels)")
    add("--size", default=None, metavar="S,S,...", help="input height = width, or HxW (default 56)")
    add("--groups", default=None, metavar="G,G,...", help="groups (default 1)")
    add("--stride", default=None, metavar="S,...", help="stride (default 1)")
    add("--padding", default=None, metavar="P,...", help="'same' (default) or ints")
    add("--dilation", default=None, metavar="D,...", help="dilation (default 1)")
    add("--batch", default=None, metavar="N,N,...", help="batch sizes (default 1)")
    add("--dtype", default=None, metavar="fp32,fp16", help="dtypes (default fp32)")
    add("--bias", action="store_true", default=None, help="the convolution has a bias")
    add("--target", default="gtx1080,t4", metavar="NAME,...", help="devices (default gtx1080,t4)")
    add(
        "--no-cache-model",
        dest="cache_model",
        action="store_false",
        help="DRAM-only verdicts: every byte from DRAM, no launch floor",
    )
    add("--model", default=None, metavar="MODEL", help="torchvision:NAME, module:factory or file.py:factory")
    add("--layer", default=None, metavar="NAME", help="the model's Conv2d to sweep, e.g. layer3.0.conv2")
    add("--input-size", default=None, metavar="1,3,224,224", help="the model's input size, batch first")
    add("--plot", default=None, metavar="PATH", help="write the points on each target's roofline (.png/.svg)")
    add("--format", choices=FORMATS, default="table", help="output format (default table)")
    parser.set_defaults(run=run)


def _axis(values: list[Any] | None) -> object:
    """One value stays one value (a fixed parameter); several are an axis."""
    if values is None:
        return None
    return values[0] if len(values) == 1 else values


def _ints(flag: str, text: str | None) -> list[int] | None:
    if text is None:
        return None
    parts = _parts(flag, text)
    try:
        return [int(part) for part in parts]
    except ValueError:
        raise InvalidArgumentError(f"{flag} {text!r} must be ints separated by commas") from None


def _parts(flag: str, text: str) -> list[str]:
    parts = [part.strip() for part in text.split(",")]
    if not parts or any(not part for part in parts):
        raise InvalidArgumentError(f"{flag} {text!r} has an empty value: give values separated by commas")
    return parts


def _sizes(flag: str, text: str | None) -> list[Any] | None:
    """``3,5`` or ``1x7,7x1``: ints, or (height, width) pairs."""
    if text is None:
        return None
    values: list[object] = []
    for part in _parts(flag, text):
        try:
            pieces = [int(p) for p in part.lower().split("x")]
        except ValueError:
            raise InvalidArgumentError(f"{flag} {part!r} must be an int or HxW") from None
        if len(pieces) not in (1, 2):
            raise InvalidArgumentError(f"{flag} {part!r} must be an int or HxW")
        values.append(pieces[0] if len(pieces) == 1 else tuple(pieces))
    return values


def _paddings(text: str | None) -> list[Any] | None:
    if text is None:
        return None
    values: list[Any] = []
    for part in _parts("--padding", text):
        values += ["same"] if part.lower() == "same" else _sizes("--padding", part) or []
    return values


def run(args: argparse.Namespace) -> int:
    from layerprof.analysis.sweep import sweep

    options: dict[str, Any] = {
        "kernel_size": _axis(_sizes("--kernel-size", args.kernel_size)),
        "channels": _axis(_ints("--channels", args.channels)),
        "in_channels": _axis(_ints("--in-channels", args.in_channels)),
        "out_channels": _axis(_ints("--out-channels", args.out_channels)),
        "groups": _axis(_ints("--groups", args.groups)),
        "stride": _axis(_sizes("--stride", args.stride)),
        "padding": _axis(_paddings(args.padding)),
        "dilation": _axis(_sizes("--dilation", args.dilation)),
        "batch": _axis(_ints("--batch", args.batch)),
        "dtype": _axis(_parts("--dtype", args.dtype) if args.dtype is not None else None),
        "bias": args.bias,
    }
    targets = _parts("--target", args.target)
    if (args.model is None) != (args.layer is None):
        raise InvalidArgumentError("--model and --layer go together: name the model and its Conv2d layer")
    if args.model is not None:
        from layerprof.cli.config import parse_input_size
        from layerprof.cli.loader import DEFAULT_INPUT_SIZE, load_model

        if args.size is not None:
            raise InvalidArgumentError(
                "--size is the layer's own with --model; give the model's --input-size"
            )
        loaded = load_model(args.model, on_meta=True)
        loaded.model.eval()
        size = parse_input_size(args.input_size) if args.input_size else None
        input_size = size or (loaded.input_sizes[0] if loaded.input_sizes else DEFAULT_INPUT_SIZE)
        result = sweep(
            **options, targets=targets, cache_model=args.cache_model,
            model=loaded.model, layer=args.layer, input_size=input_size,
        )  # fmt: skip
    else:
        if args.input_size is not None:
            raise InvalidArgumentError("--input-size is the model's (with --model); give --size for the map")
        result = sweep(
            **options, input_size=_axis(_sizes("--size", args.size)), targets=targets,
            cache_model=args.cache_model,
        )  # fmt: skip
    sys.stdout.write(result.table(args.format) + "\n")
    if args.format == "table" or args.format == "markdown":
        sys.stdout.write("\n" + result.summary() + "\n")
    if args.plot is not None:
        # JSON and CSV on stdout stay parseable: the note goes to stderr then.
        where = sys.stderr if args.format in ("json", "csv") else sys.stdout
        print(f"wrote {result.plot(args.plot)}", file=where)
    return 0
