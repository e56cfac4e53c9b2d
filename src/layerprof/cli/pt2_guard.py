"""Refuse a ``.pt2`` archive that ``torch.export.load`` would turn into running code, before it loads.

``torch.export.load`` reads most of an archive safely once torch's own switch
(``TORCH_FORCE_WEIGHTS_ONLY_LOAD``) makes every ``torch.load`` inside weights-only. Three ways in
stay open whatever that switch says, and they are what this guard refuses:

* constants named ``opaque_obj_*`` are read with plain ``pickle.loads``;
* constants named ``custom_obj_*`` go through TorchScript's unpickler, which builds arbitrary
  registered classes;
* compiled artefacts (``data/aotinductor/``, ``data/executorch/``, ``data/mtia``) are native code
  that the loader may ``dlopen``.

The loader picks the reader from the *path name written in the payload config* (a JSON file in the
archive), not from the file's own name, so the guard reads every payload config as well as the
list of files. It reads only the zip's directory and small JSON files; it never unpickles.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath

from layerprof.errors import ModelLoadError

_UNPICKLED_PREFIXES = ("opaque_obj_", "custom_obj_")
_CODE_DIRS = ("data/aotinductor/", "data/executorch/", "data/mtia/")
_CONFIG_SUFFIXES = ("_constants_config.json", "_weights_config.json")
#: A payload config lists one entry per weight or constant; a larger file is not one torch wrote.
_MAX_CONFIG_BYTES = 64 * 1024 * 1024


def _inside_root(name: str) -> str:
    """An entry's path below the archive's top folder (torch writes every entry under one)."""
    parts = PurePosixPath(name).parts
    return "/".join(parts[1:]) if len(parts) > 1 else name


def _config_path_names(
    archive: zipfile.ZipFile, entry: zipfile.ZipInfo, spec: str
) -> Iterator[tuple[str, str]]:
    """(fqn, path_name) of every payload a config describes."""
    if entry.file_size > _MAX_CONFIG_BYTES:
        raise ModelLoadError(
            f"MODEL {spec}: archive entry {entry.filename} is too large for a payload config"
        )
    try:
        document = json.loads(archive.read(entry).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ModelLoadError(
            f"MODEL {spec}: archive entry {entry.filename} is not a JSON payload config"
        ) from error
    config = document.get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise ModelLoadError(f"MODEL {spec}: archive entry {entry.filename} has no payload 'config' mapping")
    for fqn, payload in config.items():
        path_name = payload.get("path_name") if isinstance(payload, dict) else None
        if not isinstance(path_name, str):
            raise ModelLoadError(f"MODEL {spec}: archive entry {entry.filename}: {fqn!r} has no path_name")
        yield str(fqn), path_name


def check_archive(spec: str, archive: zipfile.ZipFile) -> None:
    """Raise ModelLoadError naming the first entry that loading ``archive`` would run as code."""
    for entry in archive.infolist():
        inside = _inside_root(entry.filename)
        basename = PurePosixPath(inside).name
        if inside.startswith(_CODE_DIRS):
            raise ModelLoadError(
                f"MODEL {spec}: archive entry {entry.filename} is compiled code; layerprof loads none"
            )
        if basename.startswith(_UNPICKLED_PREFIXES):
            raise ModelLoadError(
                f"MODEL {spec}: archive entry {entry.filename} would be unpickled outside weights-only "
                "loading (a pickled Python object); layerprof refuses it"
            )
        if inside.endswith(_CONFIG_SUFFIXES):
            for fqn, path_name in _config_path_names(archive, entry, spec):
                if PurePosixPath(path_name).name.startswith(_UNPICKLED_PREFIXES):
                    raise ModelLoadError(
                        f"MODEL {spec}: archive entry {entry.filename} points {fqn!r} at {path_name!r}, "
                        "which would be unpickled outside weights-only loading; layerprof refuses it"
                    )
