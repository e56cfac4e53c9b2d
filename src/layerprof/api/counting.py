"""Counting on a twin of the model, shared by analyze, profile and Profiler: the model is never touched."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from layerprof.api.compiled import unwrap_compiled
from layerprof.core.records import LayerRow
from layerprof.errors import ForwardError, InvalidArgumentError, InvalidModelError, LayerprofError
from layerprof.walk.collect import Collector, OpCounter
from layerprof.walk.counter import Allocations
from layerprof.walk.exported import ExportedRun, is_exported, prepare
from layerprof.walk.memory_run import FootprintRun
from layerprof.walk.twin import make_twin

__all__ = ["CounterMaker", "check_flag", "check_model", "count", "warn_unsupported"]

#: Builds the dispatch mode of a count from its collector, whether cheap meta kernels may be used, and
#: the storage tracker to tell of every op's outputs (None when memory is not tracked).
CounterMaker = Callable[[Collector, bool, "Allocations | None"], OpCounter]


def check_model(model: object, *, timed: bool = False) -> nn.Module:
    """``model`` if layerprof can walk it; a ``torch.compile`` wrapper gives the module it wraps
    (:mod:`layerprof.api.compiled`), with a warning when ``timed`` that compiled times are not per layer."""
    if not isinstance(model, nn.Module):
        raise InvalidModelError(f"model must be a torch.nn.Module, got {type(model).__name__}: {model!r:.80}")
    if isinstance(model, torch.jit.ScriptModule):
        # Its graph calls no submodule's forward and fires no hook: there are no layers to walk.
        raise InvalidModelError(
            f"model is a TorchScript module ({type(model).__name__}, from torch.jit.script or "
            "torch.jit.trace), which layerprof cannot walk layer by layer: pass the eager nn.Module, "
            "or a torch.export program's module (torch.export.export(model, args).module())"
        )
    return unwrap_compiled(model, timed=timed, stacklevel=4)


def check_flag(name: str, value: object) -> bool:
    """``value`` when it is a bool; else an InvalidArgumentError naming ``name``."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be True or False, got {value!r}")
    return value


def count(
    model: nn.Module,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    *,
    to_meta_device: bool,
    dtype: torch.dtype | None = None,
    backward: bool = False,
    memory: FootprintRun | None = None,
    cache_model: bool = True,
    make_counter: CounterMaker | None = None,
) -> tuple[list[LayerRow], dict[str, int], dict[str, str]]:
    """Run one forward of a twin of ``model`` under the counter; the user's model is never touched.

    With ``backward`` (meta only, so no gradient reaches the user's parameters) the forward runs
    with autograd on and is followed by the backward of the sum of its floating outputs: the rows
    of a training step, backward rows charged to the layers whose forward made them. ``memory``
    tracks the run's storages (:mod:`layerprof.walk.memory_run`), and steps its optimizer.
    ``cache_model=False`` keeps no access trace: the rows get the DRAM-only verdict.
    ``make_counter(collector, fast_meta, tracker)`` builds the dispatch mode (default: the plain counter).
    """
    if backward and not to_meta_device:
        raise InvalidArgumentError("backward counting runs on the meta device only")
    twin = make_twin(model, to_meta=to_meta_device, dtype=dtype)
    exported = twin if is_exported(twin) else None
    if exported is not None:  # a torch.export program: its ops are charged to the modules its nodes name
        prepare(exported)
    collector = Collector(twin, track_backward=backward, cache_model=cache_model)
    if exported is not None:
        ExportedRun(exported, collector.module_stack).install()
    collector.attach()
    if memory is not None:
        memory.begin(collector.module_stack, twin, args, kwargs, backward=backward)
    tracker = memory.tracker if memory is not None else None
    try:
        counter = (make_counter or _plain_counter)(collector, to_meta_device, tracker)
        with torch.set_grad_enabled(backward), counter:
            output = twin(*args, **kwargs)
            if backward:
                if memory is not None:
                    memory.backward_starts()
                _training_loss(output).backward()  # type: ignore[no-untyped-call]
                if memory is not None:
                    del output  # a training loop keeps neither the outputs nor the loss past here
                    memory.after_backward(twin)
    except LayerprofError:
        raise  # a bad argument found on the way (no output needs a gradient): not a failed forward
    except Exception as error:
        layer = collector.running_layer or "(before the first layer)"
        raise ForwardError(
            f"the forward of {type(model).__name__} failed in layer {layer}: {failure_text(error)}", layer
        ) from error
    finally:
        collector.close()
        collector.release_graph()
        if memory is not None:
            memory.end()
    rows = collector.rows() if memory is None else memory.with_activation_bytes(collector.rows())
    return rows, dict(collector.unsupported), collector.module_kinds()


def _plain_counter(collector: Collector, fast_meta: bool, memory: Allocations | None) -> OpCounter:
    return OpCounter(collector, fast_meta=fast_meta, memory=memory)


def failure_text(error: BaseException) -> str:
    """``Type: message`` of the innermost cause of ``error`` (following ``raise ... from``), then the
    error raised when it is another: a forward that wraps an error must not hide what went wrong."""
    inner, seen = error, {id(error)}
    while inner.__cause__ is not None and id(inner.__cause__) not in seen:
        inner = inner.__cause__
        seen.add(id(inner))
    text = f"{type(inner).__name__}: {inner}"
    return text if inner is error else f"{text} (raised as {type(error).__name__}: {error})"


def _training_loss(output: Any) -> torch.Tensor:
    """A scalar standing in for the loss: the sum of every floating output that needs a gradient."""
    tensors = [t for t in _flat_tensors(output) if t.is_floating_point() and t.requires_grad]
    if not tensors:
        raise InvalidArgumentError(
            "backward=True needs an output that requires grad; no parameter of the model requires grad"
        )
    total = tensors[0].float().sum()
    for tensor in tensors[1:]:
        total = total + tensor.float().sum()
    return total


def _flat_tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _flat_tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _flat_tensors(v)]
    return []


def warn_unsupported(unsupported: Mapping[str, int]) -> None:
    if unsupported:
        listed = ", ".join(f"{op} x{n}" for op, n in sorted(unsupported.items()))
        warnings.warn(
            f"layerprof has no FLOP formula for {listed}: their bytes are counted, their FLOPs are 0 "
            "(see report.unsupported)",
            stacklevel=3,
        )
