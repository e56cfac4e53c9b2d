"""The measurement cache: one device file per machine, torch version, thread count and measurement setup.

The file lives in ``$LAYERPROF_CACHE_DIR`` or ``~/.cache/layerprof``, named
``<spec name>__torch-<version>__t<threads>__<hash>.json``; the hash covers the rest of the key (the
machine: host name and ``/etc/machine-id``; the device's full name; the dtypes; ``quick``; and
:data:`MEASUREMENT_VERSION`, raised whenever what a measurement produces changes, so that older files
are measured again instead of read).

A cache file is a device file (``{"schema_version": 1, "devices": [spec.to_dict()]}``), so
:func:`~layerprof.hardware.files.load_devices` reads it too. Files are written atomically; an
unreadable one is logged and ignored (the caller measures again and overwrites it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from layerprof.errors import InvalidArgumentError, InvalidDeviceSpecError
from layerprof.hardware.files import load_devices
from layerprof.hardware.identity import Identity, slug
from layerprof.hardware.specs import DeviceSpec

__all__ = ["CACHE_ENV", "MEASUREMENT_VERSION", "cache_file", "default_cache_dir", "read_cache", "write_cache"]

logger = logging.getLogger("layerprof.hardware.measure")

CACHE_ENV = "LAYERPROF_CACHE_DIR"
#: 2: best of repeats, the bandwidth sweep with cache levels, memory_bytes, threads in the key.
MEASUREMENT_VERSION = 2


def default_cache_dir() -> Path:
    """``$LAYERPROF_CACHE_DIR`` if set, else ``~/.cache/layerprof``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "layerprof"


def cache_file(
    identity: Identity,
    dtype_keys: Sequence[str],
    quick: bool,
    cache_dir: str | Path | None,
    *,
    threads: int,
) -> Path:
    """The cache file of one measurement setup, in ``cache_dir`` (default: :func:`default_cache_dir`)."""
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    # The name says device, torch version and threads readably; the hash covers the rest of the setup.
    setup = json.dumps(
        [MEASUREMENT_VERSION, identity.full_name, identity.cache_tag, list(dtype_keys), quick, threads]
    )
    digest = hashlib.sha1(setup.encode("utf-8")).hexdigest()[:10]
    stem = f"{slug(identity.name)}__torch-{slug(torch.__version__)}__t{threads}__{digest}"
    return directory / f"{stem}.json"


def read_cache(path: Path) -> DeviceSpec | None:
    """The spec cached in ``path``; None when there is none or it cannot be read (logged)."""
    if not path.is_file():
        return None
    try:
        specs = load_devices(path)
    except (InvalidDeviceSpecError, InvalidArgumentError, OSError, ValueError) as error:
        logger.warning("ignoring unreadable device cache %s: %s", path, error)
        return None
    if len(specs) != 1:
        logger.warning("ignoring device cache %s: expected one device, found %d", path, len(specs))
        return None
    return specs[0]


def write_cache(path: Path, spec: DeviceSpec) -> None:
    """Write ``spec`` to ``path`` atomically; a failure to write is logged, not raised."""
    document = {"schema_version": 1, "devices": [spec.to_dict()]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2)
        os.replace(temporary, path)  # atomic: a concurrent reader sees the old file or the new one
    except OSError as error:
        logger.warning("could not write device cache %s: %s", path, error)
    else:
        logger.info("device ceilings cached in %s", path)
