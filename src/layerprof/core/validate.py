"""Argument checks shared by every entry point: the bad value goes into the message.

Integers are accepted as Python ints and numpy/torch integer scalars (anything with ``__index__``),
never as bools (``True`` is an int to Python, never a size to a user) and never as floats. Flags are
bools only (``"no"`` and ``1`` are not ``False``/``True``); paths are strings or ``os.PathLike``.
"""

from __future__ import annotations

import operator
import os
from pathlib import Path
from typing import SupportsIndex

from layerprof.errors import InvalidArgumentError


def as_int(value: object) -> int | None:
    """``value`` as a Python int when it is an integer (numpy and torch integers too), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, SupportsIndex):
        try:
            return operator.index(value)
        except TypeError:  # __index__ that refuses: a numpy array of several elements
            return None
    return None


def positive_int(name: str, value: object) -> int:
    """``value`` as an int >= 1, or an InvalidArgumentError naming ``name`` and the value."""
    number = as_int(value)
    if number is None or number < 1:
        raise InvalidArgumentError(f"{name} must be a positive int, got {value!r}")
    return number


def non_negative_int(name: str, value: object) -> int:
    """``value`` as an int >= 0, or an InvalidArgumentError naming ``name`` and the value."""
    number = as_int(value)
    if number is None or number < 0:
        raise InvalidArgumentError(f"{name} must be a non-negative int, got {value!r}")
    return number


def is_positive_int(value: object) -> bool:
    number = as_int(value)
    return number is not None and number >= 1


def check_bool(name: str, value: object) -> bool:
    """``value`` when it is a bool, or an InvalidArgumentError naming ``name`` and the value."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be True or False, got {value!r}")
    return value


def path_arg(name: str, value: object) -> Path:
    """``value`` as a Path when it is a str or an ``os.PathLike``, else an error naming it."""
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    raise InvalidArgumentError(
        f"{name} must be a file path (a str or a Path), got {type(value).__name__}: {value!r}"
    )
