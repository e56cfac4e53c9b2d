"""``layerprof cards MODEL``: which card for this model? Every device of the table side by side.

Counts MODEL once on the meta device (nothing runs) and judges it on every device of the table, or
those ``--target`` names (:func:`layerprof.compare_devices`): time per step, images/s, what bounds it,
whether it fits, price/performance, and a paragraph in plain words. Exit 0, or 2 on bad input.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

from layerprof.cli.loader import load_model, parse_model_args
from layerprof.cli.model_args import add_model_arguments, batch_arg, input_sizes
from layerprof.core.dtypes import canonical_name
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.table import get_device
from layerprof.walk.memory_optim import OPTIMIZER_NAMES

FORMATS = ("table", "json", "csv", "markdown", "html")
SORT_CHOICES = ("time", "throughput", "cost", "value")
_DTYPES = ("fp32", "fp16", "bf16", "int8")


def _dtype(text: str) -> str:
    try:
        name = canonical_name(text)
    except InvalidArgumentError:
        name = None
    if name is None or name not in {canonical_name(d) for d in _DTYPES}:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(_DTYPES)} (or another spelling)")
    return name


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "cards",
        help="which card? every device side by side: time, images/s, bound, fits, price/performance",
        description=(
            "Which card for MODEL (torchvision:NAME, module:factory, file.py:factory)? Counted once on "
            "the meta device, judged on every device of the table (or --target): predicted time per "
            "step (roofline, a lower bound), images/s, what bounds it, whether it fits in memory, "
            "images/s per $1,000 of list price and $ per million images from an hourly price."
        ),
    )
    add_model_arguments(
        parser,
        model_help="torchvision:NAME, module:factory or file.py:factory",
        size_metavar="1,3,224,224",
        size_help="input size, batch first (repeatable, one per input; default 1,3,224,224 or the "
        "torchvision weights' crop size)",
    )
    parser.add_argument(
        "--dtype", type=_dtype, default=None, metavar="{fp32,fp16,bf16,int8}", help="default fp32"
    )
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--batch", default=None, metavar="N", help="batch: replaces the first dimension of each input"
    )
    sizes.add_argument(
        "--max-batch", action="store_true", help="run each device at the largest batch that fits its memory"
    )
    parser.add_argument("--train", action="store_true", help="a training step (forward and backward)")
    parser.add_argument(
        "--optimizer",
        choices=tuple(OPTIMIZER_NAMES),
        default=None,
        help="add this optimizer's step and state",
    )
    parser.add_argument(
        "--target",
        default=None,
        metavar="A,B,...",
        help="devices to compare (default every device of the table)",
    )
    parser.add_argument(
        "--price-per-hour",
        default=None,
        metavar="DEV=USD,...",
        help="hourly prices that replace the table's typical ones: t4=0.35,a100-40gb=1.10",
    )
    parser.add_argument(
        "--prices",
        default=None,
        metavar="FILE",
        help="hourly prices from a TOML or JSON table (device = USD)",
    )
    parser.add_argument(
        "--sort", default="time", metavar="{" + ",".join(SORT_CHOICES) + "}", help="default time"
    )
    parser.add_argument(
        "--format", default="table", metavar="{" + ",".join(FORMATS) + "}", help="default table"
    )
    parser.set_defaults(run=run)


def _targets(text: str | None) -> list[Any] | None:
    if text is None:
        return None
    names = [part.strip() for part in text.split(",") if part.strip()]
    if not names:
        raise InvalidArgumentError(f"--target {text!r} names no device")
    specs = [get_device(name) for name in names]
    if len({s.name for s in specs}) != len(specs):
        raise InvalidArgumentError(f"--target {text!r} names a device twice")
    return specs


def run(args: argparse.Namespace) -> int:
    from layerprof.analysis.card_prices import hourly_prices, parse_price_list, read_price_file
    from layerprof.analysis.cards import compare_devices
    from layerprof.cli.cards_render import render
    from layerprof.hardware.table import list_devices

    # Everything that can be refused is refused before the model is built.
    if args.sort not in SORT_CHOICES:
        raise InvalidArgumentError(f"--sort {args.sort!r} is not one of {', '.join(SORT_CHOICES)}")
    if args.format not in FORMATS:
        raise InvalidArgumentError(f"--format {args.format!r} is not one of {', '.join(FORMATS)}")
    batch = batch_arg(args.batch)
    targets = _targets(args.target)
    devices = targets if targets is not None else list(list_devices())
    # Checked against the devices compared; the flag wins over the file, whatever spelling each uses.
    prices = hourly_prices(read_price_file(args.prices), devices) if args.prices else {}
    if args.price_per_hour:
        prices |= hourly_prices(parse_price_list(args.price_per_hour), devices)
    model_args = parse_model_args(args.model_arg)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(args.model, model_args, on_meta=True)
        sizes = list(input_sizes(loaded, args.input_size))
        if batch is not None:
            sizes = [(batch, *size[1:]) for size in sizes]
        training = args.train or args.optimizer is not None
        (loaded.model.train() if training else loaded.model.eval())
        result = compare_devices(
            loaded.model,
            targets,
            input_size=sizes[0] if len(sizes) == 1 else sizes,
            dtype=args.dtype,
            max_batch=args.max_batch,
            backward=training,
            optimizer=args.optimizer,
            price_per_hour=dict(prices) or None,
            sort=args.sort,
        )
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"layerprof cards: warning: {message}", file=sys.stderr)
    from dataclasses import replace

    sys.stdout.write(render(replace(result, model_name=args.model), args.format) + "\n")
    return 0
