"""``layerprof scale MODEL``: how far do more GPUs cut training time (data parallelism)?

Counts one training step of MODEL (forward and backward on the meta device: nothing is computed),
prices it on the target's roofline and adds a ring all-reduce of the gradients over the link, for
each GPU count (:func:`layerprof.analysis.scaling.predict_scaling`). Exit 0 on success, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from dataclasses import replace
from typing import Any

from layerprof.cli.loader import load_model, parse_model_args
from layerprof.cli.model_args import add_model_arguments, input_sizes
from layerprof.core.dtypes import canonical_name
from layerprof.core.validate import positive_int
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.table import get_link
from layerprof.hardware.targets import resolve_targets

#: --dtype choices -> the torch names they stand for, from the one spelling table (core.dtypes).
DTYPES = {flag: canonical_name(flag) for flag in ("fp32", "fp16", "bf16")}
FORMATS = ("table", "json")


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "scale",
        help="predict data-parallel training speedup on 1, 2, 4, 8 GPUs",
        description=(
            "Predict how far data-parallel training of MODEL (torchvision:NAME, module:factory, "
            "file.py:factory) speeds up on more GPUs: one training step counted on the meta device, "
            "priced on the target's roofline (a lower bound), plus a ring all-reduce of the gradients "
            "over the link. Every GPU runs the input size's batch."
        ),
    )
    add_model_arguments(
        parser,
        model_help="torchvision:NAME, module:factory or file.py:factory",
        size_metavar="32,3,224,224",
        size_help="input size per GPU, batch first (repeatable, one per input; default 1,3,224,224 or "
        "the torchvision weights' crop size)",
    )
    parser.add_argument(
        "--batch", default=None, metavar="N", help="batch per GPU: replaces the first dimension of each input"
    )
    parser.add_argument(
        "--dtype", choices=tuple(DTYPES), default="fp32", help="dtype the step runs in (default fp32)"
    )
    parser.add_argument(
        "--grad-dtype",
        choices=tuple(DTYPES),
        default="fp32",
        help="dtype of the all-reduced gradients (default fp32: AMP keeps fp32 gradients)",
    )
    parser.add_argument(
        "--gpus", default="1,2,4,8", metavar="N,N,...", help="GPU counts to predict (default 1,2,4,8)"
    )
    parser.add_argument(
        "--target", default="h100-sxm", metavar="NAME", help="device of every GPU (default h100-sxm)"
    )
    parser.add_argument(
        "--link",
        default="nvlink4",
        metavar="NAME",
        help="interconnect between the GPUs (default nvlink4; `layerprof devices` lists them)",
    )
    parser.add_argument(
        "--overlap", action="store_true", help="all-reduce during the backward (as DDP buckets do)"
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    parser.set_defaults(run=run)


def _gpus(text: str) -> tuple[int, ...]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    try:
        counts = tuple(int(part) for part in parts)
    except ValueError:
        counts = ()
    if not counts or any(count < 1 for count in counts):
        raise InvalidArgumentError(f"--gpus {text!r} must be positive ints separated by commas: 1,2,4,8")
    if len(set(counts)) != len(counts):
        raise InvalidArgumentError(f"--gpus {text!r} names a GPU count twice")
    return counts


def _batch(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return positive_int("--batch", int(text))
    except ValueError:
        raise InvalidArgumentError(f"--batch must be a positive int, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from layerprof.analysis.scaling import predict_scaling
    from layerprof.api.analyzing import analyze

    # Everything that can be refused is refused before the model is built.
    gpus = _gpus(args.gpus)
    batch = _batch(args.batch)
    link = get_link(args.link)
    (target,) = resolve_targets(args.target)
    model_args = parse_model_args(args.model_arg)
    if args.model.strip().lower().endswith(".pt2"):
        raise InvalidArgumentError(
            f"MODEL {args.model}: an exported program cannot run a backward pass; name its factory "
            "(file.py:factory or module:factory) instead"
        )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_model(args.model, model_args, on_meta=True)
        sizes = list(input_sizes(loaded, args.input_size))
        if batch is not None:
            sizes = [(batch, *size[1:]) for size in sizes]
        loaded.model.train()  # a training step: dropout on, batch norm on batch statistics
        report = analyze(
            loaded.model,
            input_size=sizes[0] if len(sizes) == 1 else sizes,
            dtype=DTYPES[args.dtype],
            target=target,
            backward=True,
        )
        prediction = predict_scaling(
            report, gpus, target, link, grad_dtype=DTYPES[args.grad_dtype], overlap=args.overlap
        )
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"layerprof scale: warning: {message}", file=sys.stderr)

    prediction = replace(prediction, model_name=args.model)
    if args.format == "json":
        sys.stdout.write(json.dumps(prediction.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(prediction.table() + "\n")
    return 0
