"""``layerprof audit``'s memory options: ``--max-peak-memory``, ``--optimizer``, ``--max-batch``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from layerprof.core.units import parse_bytes
from layerprof.walk.memory_optim import OPTIMIZER_NAMES

__all__ = ["add_memory_arguments", "max_batch_lines", "size_flag"]


def size_flag(text: str) -> float:
    """``6GiB``, ``512MB``, ``4096`` -> bytes; an unknown unit is an argparse error naming it."""
    try:
        return float(parse_bytes(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_memory_arguments(parser: argparse.ArgumentParser, budgets: Any) -> None:
    budgets.add_argument(
        "--max-peak-memory",
        type=size_flag,
        default=None,
        metavar="SIZE",
        help="peak memory per target (6GiB, 512MB; units KiB MiB GiB KB MB GB)",
    )
    parser.add_argument(
        "--optimizer",
        choices=tuple(OPTIMIZER_NAMES),
        default=None,
        help="audit a training step (forward, backward, this optimizer's step) instead of inference",
    )
    parser.add_argument(
        "--max-batch",
        action="store_true",
        help="also find the largest batch whose peak memory fits each target (searched on meta)",
    )


def max_batch_lines(
    model: Any, sizes: Sequence[tuple[int, ...]], dtype: str, targets: Sequence[Any], optimizer: str | None
) -> list[str]:
    """One line per target: the largest batch that fits it (targets without a capacity say so)."""
    from layerprof.analysis.max_batch import max_batches

    with_memory = [t for t in targets if t.memory_bytes is not None]
    lines = [
        f"max batch on {t.name}: unknown (no memory_bytes for this target)"
        for t in targets
        if t.memory_bytes is None
    ]
    if with_memory:
        size: Any = sizes[0] if len(sizes) == 1 else list(sizes)
        found = max_batches(
            model, size, with_memory, backward=optimizer is not None, optimizer=optimizer, dtype=dtype
        )
        what = f"training step with {optimizer}" if optimizer is not None else "inference"
        lines += [f"max batch on {t.name}: {found[t.name]} ({what}, {dtype})" for t in with_memory]
    return lines
