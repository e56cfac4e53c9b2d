"""Load the model a command line names: ``torchvision:NAME``, ``package.module:factory``,
``path/to/file.py:factory`` or a ``torch.export`` program saved as ``.pt2``.

Every failure is a :class:`~layerprof.errors.ModelLoadError` with a one-line message that names the
MODEL and what went wrong, so the CLI prints one line and no traceback. Nothing is ever unpickled
without ``weights_only=True``: torchvision models are built with ``weights=None`` (nothing is
downloaded), ``.pt`` / ``.pth`` files are refused, and a ``.pt2`` is read with torch forced to load its
tensors weights-only (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``), so a pickled payload in it fails to load
instead of running code; the entries torch unpickles regardless of that switch, and compiled code,
are refused before loading starts (:mod:`layerprof.cli.pt2_guard`).
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import Any, Literal

import torch
from torch import nn

from layerprof.cli.pt2_guard import check_archive
from layerprof.errors import ModelLoadError

__all__ = [
    "DEFAULT_INPUT_SIZE",
    "LoadedModel",
    "ModelKind",
    "load_model",
    "parse_model_args",
    "torchvision_crop_size",
]

logger = logging.getLogger(__name__)

ModelKind = Literal["torchvision", "module", "file", "exported"]

#: The input size used when neither the command line nor the model says otherwise.
DEFAULT_INPUT_SIZE: tuple[int, ...] = (1, 3, 224, 224)

_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
_FORMS = "torchvision:NAME, package.module:factory, path/to/file.py:factory or FILE.pt2"


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A model built from a MODEL spec, with the input sizes the spec itself implies (if any)."""

    model: nn.Module
    spec: str
    kind: ModelKind
    #: One size per input, batch first: the torchvision weights' crop size or the exported program's
    #: input shapes; None when the spec says nothing (use :data:`DEFAULT_INPUT_SIZE`).
    input_sizes: tuple[tuple[int, ...], ...] | None = None
    model_args: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


def parse_model_args(items: Sequence[str]) -> dict[str, Any]:
    """``["classes=10", "width=0.5", "act=relu"]`` -> ``{"classes": 10, "width": 0.5, "act": "relu"}``

    Values are read as Python literals where they are one (ints, floats, bools, None, tuples, lists,
    quoted strings), else kept as the string typed.
    """
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ModelLoadError(f"--model-arg {item!r} must be key=value with key a Python identifier")
        try:
            value: Any = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = text
        parsed[key] = value
    return parsed


def load_model(
    spec: str, model_args: Mapping[str, Any] | None = None, *, on_meta: bool = False
) -> LoadedModel:
    """Build the model named by ``spec``, calling its factory with ``model_args`` as keywords.

    ``on_meta=True`` builds a torchvision model on the meta device (shapes only: no memory, no
    random initialisation, which takes seconds for the largest models), for counting with
    ``layerprof.analyze(..., input_size=...)``; a builder that needs real values (RegNet computes
    its widths with tensors) is built on the CPU instead. Factories from modules and files always
    run as written: they may read checkpoints or depend on real values.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ModelLoadError(f"MODEL must be one of {_FORMS}, got {spec!r}")
    spec = spec.strip()
    args = dict(model_args or {})
    if spec.lower().endswith(".pt2"):
        if args:
            raise ModelLoadError(
                f"MODEL {spec}: an exported program takes no --model-arg, got {sorted(args)}"
            )
        return _load_exported(spec)
    if spec.lower().endswith(_PICKLE_SUFFIXES):
        raise ModelLoadError(
            f"MODEL {spec}: .pt/.pth files hold pickled objects, which layerprof does not unpickle; "
            "save the model with torch.export.save (.pt2) or name its factory (file.py:factory)"
        )
    where, sep, attribute = spec.rpartition(":")
    if not sep or not where or not attribute:
        raise ModelLoadError(f"MODEL {spec!r} is not one of {_FORMS}")
    if where == "torchvision":
        return _load_torchvision(spec, attribute, args, on_meta=on_meta)
    if where.endswith(".py") or "/" in where or os.sep in where:
        module = _import_file(spec, Path(where))
        kind: ModelKind = "file"
    else:
        module = _import_module(spec, where)
        kind = "module"
    factory = _attribute(spec, module, attribute)
    model = _build(spec, factory, args)
    return LoadedModel(model, spec, kind, None, MappingProxyType(args))


# -- torchvision ---------------------------------------------------------------------------------


def _torchvision_models() -> ModuleType:
    try:
        import torchvision.models as models
    except ImportError as error:
        raise ModelLoadError(
            f"torchvision models need torchvision (pip install 'layerprof[vision]'): {error}"
        ) from error
    return models  # type: ignore[no-any-return]


def torchvision_crop_size(name: str) -> int | None:
    """The crop size of a torchvision model's DEFAULT weights, read from their transforms (nothing is
    downloaded: building the transforms object reads no weights); None when the model has no weights
    or its transforms have no crop size (detection, segmentation, video models)."""
    models = _torchvision_models()
    try:
        weights = models.get_model_weights(name).DEFAULT
        crop = weights.transforms().crop_size
    except Exception as error:
        logger.debug("no crop size for torchvision model %s: %s", name, error)
        return None
    if isinstance(crop, (list, tuple)) and crop and all(isinstance(c, int) for c in crop):
        return int(crop[0])
    return int(crop) if isinstance(crop, int) else None


def _load_torchvision(spec: str, name: str, args: dict[str, Any], *, on_meta: bool) -> LoadedModel:
    models = _torchvision_models()
    known = models.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ModelLoadError(f"MODEL {spec}: torchvision has no model {name!r}{hint}")
    if "weights" in args and args["weights"] is not None:
        raise ModelLoadError(f"MODEL {spec}: layerprof never downloads weights; drop --model-arg weights=...")
    args.pop("weights", None)

    def build(**kwargs: Any) -> Any:
        return models.get_model(name, weights=None, **kwargs)

    model = None
    if on_meta:
        try:
            with torch.device("meta"):
                model = build(**args)
        except Exception as error:
            logger.debug(
                "torchvision:%s cannot be built on the meta device (%s); building it on the CPU", name, error
            )
    if model is None:
        model = _build(spec, build, args)
    elif not isinstance(model, nn.Module):  # pragma: no cover - torchvision builders return modules
        raise ModelLoadError(f"MODEL {spec}: the builder returned a {type(model).__name__}")
    # The DEFAULT weights' crop, unless the model was built for one size only: a ViT built without
    # weights takes its builder's image_size (vit_h_14: 224), not the 518 its DEFAULT weights set.
    built_for = getattr(model, "image_size", None)
    crop = built_for if isinstance(built_for, int) else torchvision_crop_size(name)
    sizes = None if crop is None else ((1, 3, crop, crop),)
    return LoadedModel(model, spec, "torchvision", sizes, MappingProxyType(args))


# -- modules and files ---------------------------------------------------------------------------


def _import_module(spec: str, name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
            raise ModelLoadError(f"MODEL {spec}: no module named {name!r}") from error
        raise ModelLoadError(f"MODEL {spec}: importing {name} failed: {_one_line(error)}") from error
    except Exception as error:
        raise ModelLoadError(f"MODEL {spec}: importing {name} failed: {_one_line(error)}") from error


def _import_file(spec: str, path: Path) -> ModuleType:
    if not path.is_file():
        raise ModelLoadError(f"MODEL {spec}: no such file {str(path)!r}")
    resolved = path.resolve()
    # A unique module name per file, so two model files called model.py do not collide.
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    module_name = f"_layerprof_model_{resolved.stem}_{digest}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    loader = importlib.machinery.SourceFileLoader(module_name, str(resolved))
    module_spec = importlib.util.spec_from_loader(module_name, loader)
    if module_spec is None:  # pragma: no cover - spec_from_loader returns a spec for a loader
        raise ModelLoadError(f"MODEL {spec}: cannot import {str(path)!r}")
    module = importlib.util.module_from_spec(module_spec)
    # Registered while it runs so that dataclasses and pickling inside the file find it; the file's
    # folder is importable while it runs, as it is for `python file.py`.
    sys.modules[module_name] = module
    with _on_sys_path(resolved.parent):
        try:
            loader.exec_module(module)
        except Exception as error:
            del sys.modules[module_name]
            raise ModelLoadError(f"MODEL {spec}: running {path} failed: {_one_line(error)}") from error
    return module


@contextlib.contextmanager
def _on_sys_path(folder: Path) -> Iterator[None]:
    entry = str(folder)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


def _attribute(spec: str, module: ModuleType, dotted: str) -> Any:
    value: Any = module
    for part in dotted.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            public = sorted(n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n]))
            close = difflib.get_close_matches(part, public, n=3)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise ModelLoadError(
                f"MODEL {spec}: {module.__name__} has no attribute {dotted!r}{hint}"
            ) from None
    return value


def _build(spec: str, factory: Any, args: Mapping[str, Any]) -> nn.Module:
    if isinstance(factory, nn.Module):
        if args:
            raise ModelLoadError(f"MODEL {spec} is a module instance, not a factory; it takes no --model-arg")
        return factory
    if not callable(factory):
        raise ModelLoadError(
            f"MODEL {spec} names a {type(factory).__name__}, "
            "not a model factory (a function or an nn.Module class)"
        )
    try:
        model = factory(**args)
    except Exception as error:
        raise ModelLoadError(f"MODEL {spec}: the factory raised {_one_line(error)}") from error
    if not isinstance(model, nn.Module):
        raise ModelLoadError(
            f"MODEL {spec}: the factory returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


# -- torch.export programs -----------------------------------------------------------------------


def _load_exported(spec: str) -> LoadedModel:
    import torch.export

    path = Path(spec)
    if not path.is_file():
        raise ModelLoadError(f"MODEL {spec}: no such file")
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"MODEL {spec}: not a torch.export archive (not a zip file)")
    try:
        with zipfile.ZipFile(path) as archive:
            check_archive(spec, archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise ModelLoadError(
            f"MODEL {spec}: not a readable torch.export archive: {_one_line(error)}"
        ) from error
    with _weights_only_loads(), _quiet_torch_export() as messages:
        try:
            program = torch.export.load(path)
            model = program.module()
        except Exception as error:
            # torch's own message points at warnings the user never saw: name their cause instead.
            detail = _one_line(error)
            if messages and "warnings above" in detail:
                detail = messages[-1]
            raise ModelLoadError(f"MODEL {spec}: torch.export.load failed: {detail}") from error
    if not isinstance(model, nn.Module):  # pragma: no cover - ExportedProgram.module() returns one
        raise ModelLoadError(f"MODEL {spec}: the exported program gave a {type(model).__name__}")
    return LoadedModel(model, spec, "exported", _exported_input_sizes(program))


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """torch.export.load falls back to unpickling with weights_only=False for some payloads; torch's
    own switch turns every torch.load inside into a weights-only load for the length of the call."""
    names = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    saved = {name: os.environ.get(name) for name in names}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# A filter sees only the records of the logger it is on, not of its children: name each one that
# torch.export.load logs through.
_TORCH_EXPORT_LOGGERS = ("torch.export", "torch.export.pt2_archive._package", "torch._export.serde.serialize")


class _Collect(logging.Filter):
    """Keeps the messages torch.export logs (with tracebacks) out of the terminal; the last one is
    folded into the error line."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        self.messages.append(_one_line(error) if error is not None else _one_line_text(record.getMessage()))
        return False


@contextlib.contextmanager
def _quiet_torch_export() -> Iterator[list[str]]:
    collect = _Collect()
    loggers = [logging.getLogger(name) for name in _TORCH_EXPORT_LOGGERS]
    for torch_logger in loggers:
        torch_logger.addFilter(collect)
    try:
        yield collect.messages
    finally:
        for torch_logger in loggers:
            torch_logger.removeFilter(collect)


def _exported_input_sizes(program: Any) -> tuple[tuple[int, ...], ...] | None:
    """The shapes the program was exported with, one per user input, when they are all static."""
    try:
        user_inputs = list(program.graph_signature.user_inputs)
        placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
        sizes = []
        for name in user_inputs:
            value = placeholders[name].meta.get("val")
            shape = getattr(value, "shape", None)
            if shape is None:
                return None
            sizes.append(tuple(int(d) for d in shape))  # a symbolic dim raises: no default then
    except Exception as error:
        logger.debug("no input sizes from the exported program: %s", error)
        return None
    return tuple(sizes) if sizes else None


def _one_line_text(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _one_line(error: BaseException) -> str:
    message = " ".join(line.strip() for line in str(error).strip().splitlines() if line.strip())
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
