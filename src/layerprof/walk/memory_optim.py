"""The optimizer step of a counted training step: its state and temporaries, run for real on meta.

An optimizer is given as a ``torch.optim`` instance (SGD, Adam, AdamW: its class, param groups and
hyperparameters are read, never its state, and it is never stepped) or as a name: ``"sgd"`` (no
state), ``"sgd-momentum"`` (momentum 0.9: one buffer like each parameter), ``"adam"``, ``"adamw"``
(``exp_avg`` and ``exp_avg_sq``: two like each parameter, plus a step counter). A fresh optimizer of
that class is built on the twin's meta parameters, with the same groups, and stepped twice: the first
step creates its state (after it, whatever its ``state`` holds is optimizer state), the second is the
step that repeats in training, whose peak is the optimizer step's.

Which implementation torch runs decides the temporaries: on CUDA tensors torch defaults to the
``foreach`` one (each operation over all parameters at once: temporaries as large as a whole group of
parameters), on CPU to the for-loop one (one parameter at a time). So the step is run once per
allocator rule that a target asks for: ``foreach`` for CUDA targets, the for-loop for CPU ones, unless
the optimizer passed sets ``foreach`` itself. ``fused=True`` (CUDA kernels, no temporaries) is counted
as the for-loop implementation.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from layerprof.errors import InvalidArgumentError
from layerprof.walk.memory import Category, MemoryTracker, Rule

__all__ = ["OPTIMIZER_NAMES", "OptimizerSpec", "optimizer_spec", "run_optimizer"]

#: Optimizer names (CLI ``--optimizer``) -> (class, hyperparameters).
OPTIMIZER_NAMES: Mapping[str, tuple[type[torch.optim.Optimizer], Mapping[str, Any]]] = MappingProxyType(
    {
        "sgd": (torch.optim.SGD, {"lr": 0.01}),
        "sgd-momentum": (torch.optim.SGD, {"lr": 0.01, "momentum": 0.9}),
        "adam": (torch.optim.Adam, {}),
        "adamw": (torch.optim.AdamW, {}),
    }
)
_CLASSES: tuple[type[torch.optim.Optimizer], ...] = (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD)
_DROPPED = frozenset({"params", "fused", "capturable", "differentiable"})


@dataclass(frozen=True, slots=True)
class OptimizerSpec:
    """What is needed to rebuild an optimizer on a twin: its class and its groups' hyperparameters.

    ``groups`` holds (names of the group's parameters, hyperparameters); None means one group of every
    parameter that requires grad, with ``defaults``.
    """

    name: str
    cls: type[torch.optim.Optimizer]
    defaults: Mapping[str, Any]
    groups: tuple[tuple[tuple[str, ...], Mapping[str, Any]], ...] | None = None


def optimizer_spec(optimizer: object, model: nn.Module) -> OptimizerSpec | None:
    """Check ``optimizer`` (None, a name, or an SGD/Adam/AdamW instance) and read what rebuilding needs."""
    if optimizer is None:
        return None
    if isinstance(optimizer, str):
        key = optimizer.strip().lower()
        if key not in OPTIMIZER_NAMES:
            raise InvalidArgumentError(
                f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZER_NAMES)} "
                "(or pass a torch.optim.SGD, Adam or AdamW instance)"
            )
        cls, defaults = OPTIMIZER_NAMES[key]
        return OptimizerSpec(key, cls, MappingProxyType(dict(defaults)))
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise InvalidArgumentError(
            f"optimizer must be a torch.optim.Optimizer or one of {', '.join(OPTIMIZER_NAMES)}, "
            f"got {type(optimizer).__name__}: {optimizer!r:.80}"
        )
    found = next((c for c in _CLASSES if isinstance(optimizer, c)), None)
    if found is None:
        raise InvalidArgumentError(
            f"layerprof counts the state of SGD, Adam and AdamW optimizers; got {type(optimizer).__name__}"
        )
    names = {id(p): name for name, p in model.named_parameters()}
    groups = []
    for group in optimizer.param_groups:
        params = tuple(names[id(p)] for p in group["params"] if id(p) in names)
        groups.append((params, MappingProxyType(_hyper(group))))
    return OptimizerSpec(
        found.__name__.lower(), found, MappingProxyType(_hyper(optimizer.defaults)), tuple(groups)
    )


def _hyper(values: Mapping[str, Any]) -> dict[str, Any]:
    """Hyperparameters as plain numbers (a tensor learning rate lives on the user's device)."""
    return {
        key: float(value) if isinstance(value, torch.Tensor) and value.numel() == 1 else value
        for key, value in values.items()
        if key not in _DROPPED
    }


def _build(spec: OptimizerSpec, twin: nn.Module, foreach: bool) -> torch.optim.Optimizer | None:
    params = dict(twin.named_parameters())
    groups: list[dict[str, Any]]
    if spec.groups is None:
        groups = [{"params": [p for p in params.values() if p.requires_grad]}]
        defaults = dict(spec.defaults)
    else:
        groups = [{"params": [params[n] for n in names], **hyper} for names, hyper in spec.groups]
        defaults = dict(spec.defaults)
    for group in groups:
        if group.get("foreach") is None:
            group["foreach"] = foreach
    accepted = inspect.signature(spec.cls.__init__).parameters
    defaults = {k: v for k, v in defaults.items() if k in accepted and k != "foreach"}
    groups = [g for g in groups if g["params"]]
    return spec.cls(groups, **defaults) if groups else None  # nothing to optimize: no state, no step


def run_optimizer(
    spec: OptimizerSpec, twin: nn.Module, tracker: MemoryTracker, rules: frozenset[Rule]
) -> None:
    """Step ``spec``'s optimizer on the twin (its parameters hold gradients) under the counter:
    once per implementation ``rules`` need, each time a warm-up step first (see the module docs)."""
    for rule in RULES_ORDER:
        if rule not in rules:
            continue
        optimizer = _build(spec, twin, foreach=rule == "cuda")
        if optimizer is None:
            return
        tracker.phase = None
        optimizer.step()
        for state in optimizer.state.values():
            tracker.recategorize(state.values(), Category.OPTIMIZER_STATE)
        tracker.recording = frozenset({rule})
        tracker.start_phase("optimizer_step")
        try:
            optimizer.step()
        finally:
            tracker.recording = frozenset()
            tracker.phase = None
            del optimizer  # its state goes: the next implementation starts from the same memory


RULES_ORDER: tuple[Rule, ...] = ("exact", "cuda")
