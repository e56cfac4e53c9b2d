"""The MODEL, --model-arg, --input-size and --batch arguments the audit, scale and cards commands share."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from layerprof.cli.config import parse_input_size
from layerprof.cli.loader import DEFAULT_INPUT_SIZE, LoadedModel
from layerprof.core.validate import positive_int
from layerprof.errors import InvalidArgumentError


def add_model_arguments(
    parser: argparse.ArgumentParser, *, model_help: str, size_metavar: str, size_help: str
) -> None:
    parser.add_argument("model", metavar="MODEL", help=model_help)
    parser.add_argument(
        "--model-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keyword argument for the model factory, a Python literal where it parses (repeatable)",
    )
    parser.add_argument(
        "--input-size",
        action="append",
        type=input_size_type,
        default=None,
        metavar=size_metavar,
        help=size_help,
    )


def input_size_type(text: str) -> tuple[int, ...]:
    """The argparse type of ``--input-size`` (shared with ``layerprof scale``)."""
    try:
        return parse_input_size(text)
    except InvalidArgumentError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def input_sizes(loaded: LoadedModel, *given: Sequence[tuple[int, ...]] | None) -> Sequence[tuple[int, ...]]:
    """The first sizes ``given`` (command line, then config file), else the model's own (torchvision
    crop size, exported program's shapes), else :data:`DEFAULT_INPUT_SIZE`."""
    for sizes in given:
        if sizes:
            return sizes
    return loaded.input_sizes or (DEFAULT_INPUT_SIZE,)


def batch_arg(text: str | None) -> int | None:
    """``--batch`` as given (None when not), a positive int or an error naming the value."""
    if text is None:
        return None
    try:
        return positive_int("--batch", int(text))
    except ValueError:
        raise InvalidArgumentError(f"--batch must be a positive int, got {text!r}") from None
