"""Reading a TOML file, with errors that name the file: device files and audit settings both use it.

TOML is read with ``tomllib`` (Python 3.11+) or ``tomli`` when installed; without either, an error is
raised only when a TOML file actually has to be read.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from layerprof.errors import InvalidArgumentError, LayerprofError

__all__ = ["read_toml", "toml_parser"]


def toml_parser() -> ModuleType | None:
    """``tomllib`` on Python 3.11+, else ``tomli`` when it is installed, else None."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:  # pragma: no cover - Python 3.10 only
        import tomli
    except ImportError:  # pragma: no cover - Python 3.10 only
        return None
    parser: ModuleType = tomli  # pragma: no cover - Python 3.10 only
    return parser  # pragma: no cover - Python 3.10 only


def read_toml(file: Path, *, invalid: type[LayerprofError] = InvalidArgumentError) -> dict[str, Any]:
    """The document in ``file``, as a dict.

    A file that is not UTF-8 text (a binary file, say) or not valid TOML raises ``invalid`` with a
    message that starts with the file's path. Without a TOML parser (Python 3.10 without ``tomli``)
    :class:`InvalidArgumentError` says so, naming the file.
    """
    parser = toml_parser()
    if parser is None:
        raise InvalidArgumentError(
            f"reading {str(file)!r} needs a TOML parser: Python 3.11+ or `pip install tomli`"
        )
    try:
        with file.open("rb") as handle:
            document: dict[str, Any] = parser.load(handle)
    except UnicodeDecodeError as error:  # tomllib decodes the bytes itself and lets this through
        raise invalid(
            f"{file}: not valid TOML: not UTF-8 text ({error.reason} at byte {error.start})"
        ) from error
    except parser.TOMLDecodeError as error:
        raise invalid(f"{file}: not valid TOML: {error}") from error
    return document
