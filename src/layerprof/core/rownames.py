"""The row-name grammar: the one place that builds and reads the names of report rows.

A row is named after what ran::

    layer1.0.conv1        a module, by its dotted path from the model's root
    layer1.0/add          a container's own functional ops (``out += identity`` in its forward)
    (root)                the model's root module itself
    (root)/add            the root's own functional ops
    (ddp)/allreduce       DDP's gradient all-reduce (a synthetic container, at the root's level)
    (55 more rows)        the rows a ``top=`` cut folded into one
    total                 the totals row

A name's *module part* is what comes before ``/``. A module part in parentheses (``(root)``,
``(ddp)``, a fold) stands at the root's level, so it has no path of its own.
"""

from __future__ import annotations

import re

ROOT = "(root)"
TOTAL = "total"
GLUE_SEPARATOR = "/"
ALLREDUCE_CONTAINER = "(ddp)"
ALLREDUCE = f"{ALLREDUCE_CONTAINER}{GLUE_SEPARATOR}allreduce"

_FOLD = re.compile(r"\((\d+) more rows\)")


def glue(container: str, op: str) -> str:
    """``layer1.0/add``: the row of ``container``'s own ``op`` calls (``(root)/add`` at the root)."""
    return f"{container or ROOT}{GLUE_SEPARATOR}{op}"


def fold(count: int) -> str:
    """``(55 more rows)``: the one row standing for the ``count`` rows a ``top=`` cut left out."""
    return f"({count} more rows)"


def is_fold(name: str) -> bool:
    return _FOLD.fullmatch(name) is not None


def is_glue(name: str) -> bool:
    return GLUE_SEPARATOR in name


def module_of(name: str) -> str:
    """The module part: ``layer1.0`` for ``layer1.0/add``, the name itself for a module row."""
    return name.partition(GLUE_SEPARATOR)[0]


def split(name: str) -> tuple[str, bool]:
    """(module part, whether the row is a container's glue row)."""
    module, separator, _ = name.partition(GLUE_SEPARATOR)
    return module, bool(separator)


def is_root_level(module: str) -> bool:
    """True for ``(root)``, ``(ddp)``, a fold and the empty path: names without a module path."""
    return not module or module.startswith("(")


def module_path(name: str) -> list[str]:
    """``["layer1", "0"]`` for ``layer1.0.conv1`` and ``layer1.0/add``; ``[]`` at the root's level."""
    module = module_of(name)
    return [] if is_root_level(module) else module.split(".")


def module_path_name(module: str) -> str:
    """The dotted path as ``named_modules()`` spells it: ``""`` for the root, else ``module``."""
    return "" if module == ROOT else module


def row_name_of_module(path: str) -> str:
    """The row name of the module ``named_modules()`` calls ``path`` (``(root)`` for ``""``)."""
    return path or ROOT


def depth(name: str) -> int:
    """A module row's path length; a glue row sits one below its container; the totals row at 0."""
    if name == TOTAL:
        return 0
    module, is_glue_row = split(name)
    return len(module_path(module)) + (1 if is_glue_row else 0)


def ancestor(name: str, at_depth: int) -> str:
    """``layer1.0.conv1`` at depth 1 is ``layer1``; ``layer1.0/add`` at depth 2 is ``layer1.0``."""
    if depth(name) <= at_depth:
        return name
    parts = module_path(name)
    return ".".join(parts[:at_depth]) if at_depth > 0 else ROOT


def is_inside(name: str, outer: str) -> bool:
    """Whether row ``name`` lies under the row ``outer`` (everything lies under ``(root)``)."""
    if outer == ROOT:
        return True
    return name.startswith((f"{outer}.", f"{outer}{GLUE_SEPARATOR}"))
