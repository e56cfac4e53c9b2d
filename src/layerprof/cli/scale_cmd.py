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

from layerprof.analysis.buckets import DEFAULT_BUCKET_MB, check_bucket_mb
from layerprof.analysis.scaling import OPTIMIZER_TENSORS
from layerprof.cli.loader import load_model, parse_model_args
from layerprof.cli.model_args import add_model_arguments, batch_arg, input_sizes
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
        "--overlap",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="all-reduce DDP's buckets during the backward, each once its gradients are ready "
        "(default); --no-overlap: one all-reduce after the whole backward",
    )
    parser.add_argument(
        "--bucket-mb",
        default=None,
        metavar="MiB",
        help="DDP's bucket_cap_mb (default 25, with DDP's 1 MiB first bucket)",
    )
    parser.add_argument(
        "--global-batch",
        default=None,
        metavar="B",
        help="fixed total batch split over the GPUs (B / N each; every GPU count must divide B) "
        "instead of --batch per GPU",
    )
    parser.add_argument(
        "--optimizer",
        choices=tuple(OPTIMIZER_TENSORS),
        default="sgd",
        help="optimizer whose state and step are counted (default sgd)",
    )
    parser.add_argument(
        "--max-batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="search the largest per-GPU batch that fits the target's memory (default on)",
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


def _bucket_mb(text: str | None) -> float:
    if text is None:
        return DEFAULT_BUCKET_MB
    try:
        value = float(text)
    except ValueError:
        raise InvalidArgumentError(f"--bucket-mb must be a number of MiB > 0, got {text!r}") from None
    try:
        return check_bucket_mb(value)
    except InvalidArgumentError:
        raise InvalidArgumentError(f"--bucket-mb must be a finite number of MiB > 0, got {text!r}") from None


def _global_batch(text: str | None, gpus: tuple[int, ...], batch: int | None) -> int | None:
    if text is None:
        return None
    if batch is not None:
        raise InvalidArgumentError(f"--global-batch {text} and --batch {batch}: give one of them")
    try:
        value = positive_int("--global-batch", int(text))
    except ValueError:
        raise InvalidArgumentError(f"--global-batch must be a positive int, got {text!r}") from None
    uneven = [str(n) for n in gpus if value % n]
    if uneven:
        raise InvalidArgumentError(
            f"--global-batch {value} does not split evenly over {', '.join(uneven)} GPUs (--gpus); "
            "DDP runs the same batch on every GPU"
        )
    return value


def run(args: argparse.Namespace) -> int:
    from layerprof.analysis.scaling import predict_scaling
    from layerprof.analysis.scaling_global import ddp_max_batch, predict_scaling_global
    from layerprof.api.analyzing import analyze

    # Everything that can be refused is refused before the model is built.
    gpus = _gpus(args.gpus)
    batch = batch_arg(args.batch)
    bucket_mb = _bucket_mb(args.bucket_mb)
    global_batch = _global_batch(args.global_batch, gpus, batch)
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
        dtype, grad_dtype = DTYPES[args.dtype], DTYPES[args.grad_dtype]
        options: dict[str, Any] = {
            "grad_dtype": grad_dtype, "overlap": args.overlap, "bucket_mb": bucket_mb,
            "optimizer": args.optimizer,
        }  # fmt: skip
        if global_batch is not None:
            if len(sizes) != 1:
                raise InvalidArgumentError("--global-batch takes a model with one input")
            prediction = predict_scaling_global(
                loaded.model, sizes[0], global_batch, gpus, target, link, dtype=dtype, **options
            )
        else:
            report = analyze(
                loaded.model,
                input_size=sizes[0] if len(sizes) == 1 else sizes,
                dtype=dtype,
                target=target,
                backward=True,
                optimizer=args.optimizer,
            )
            prediction = predict_scaling(report, gpus, target, link, model=loaded.model, **options)
        if args.max_batch and target.memory_bytes is not None:
            many = any(n > 1 for n in gpus)
            found = ddp_max_batch(
                loaded.model,
                sizes[0] if len(sizes) == 1 else sizes,
                target,
                optimizer=args.optimizer,
                dtype=dtype,
                ddp_bytes=prediction.gradient_bytes if many else 0,
            )
            prediction = replace(prediction, max_batch_per_gpu=found)
    for message in dict.fromkeys(str(w.message) for w in caught):
        print(f"layerprof scale: warning: {message}", file=sys.stderr)

    prediction = replace(prediction, model_name=args.model)
    if args.format == "json":
        sys.stdout.write(json.dumps(prediction.to_dict(), indent=2) + "\n")
    else:
        sys.stdout.write(prediction.table() + "\n")
    return 0
