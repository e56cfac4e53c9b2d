"""The module stack: forward hooks on every module of a tree push and pop the modules running now.

An op is charged to the innermost module running when it runs, so the counter needs to know, at any
moment, which module that is. The stack also records, for every module that ran, what the rows need
of it: its calls, its first call's input and output shapes and whether a later call's differed, when it
first ran (rows keep that order), and whether a submodule ran inside it (a container none of whose
submodules ran is a row of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

from layerprof.core import rownames
from layerprof.walk.hooks import remove_all
from layerprof.walk.tensors import Shapes, shapes_of

#: Set on a twin's module whose class is not the eager model's (a torch.export program's stand-ins):
#: the name of the class it stands for.
KIND_ATTRIBUTE = "_layerprof_kind"


def kind_of(module: nn.Module) -> str:
    """The class name a module's rows show: its own, or the eager class it stands in for."""
    kind = module.__dict__.get(KIND_ATTRIBUTE)
    return kind if isinstance(kind, str) else type(module).__name__


class ModuleState:
    """What the rows need of one module that ran (internal, mutable while the forward runs)."""

    __slots__ = ("calls", "had_child", "input_shapes", "name", "order", "output_shapes", "shapes_vary")

    def __init__(self, name: str, order: int) -> None:
        self.name = name
        self.order = order
        self.calls = 0
        self.had_child = False
        self.input_shapes: Shapes = ()
        self.output_shapes: Shapes = ()
        self.shapes_vary = False  # a later call's input or output shapes differed from the first's


class ModuleStack:
    """The running modules of ``root``'s tree, innermost last. ``attach`` hooks every module of the
    tree, ``close`` removes those hooks. ``order`` numbers first calls (and, shared with the ledgers,
    rows), so that rows come out in the order they first ran. ``on_root_output`` is called with the
    root's output each time the root's forward returns (backward attribution maps it)."""

    def __init__(
        self,
        root: nn.Module,
        order: Iterator[int],
        *,
        on_root_output: Callable[[Any], None] | None = None,
    ) -> None:
        self.root = root
        named = list(root.named_modules())
        self.names: dict[int, str] = {id(m): rownames.row_name_of_module(name) for name, m in named}
        self.modules: dict[int, nn.Module] = {id(m): m for _, m in named}
        self.states: dict[int, ModuleState] = {}
        self._running: list[nn.Module] = []
        self._order = order
        self._on_root_output = on_root_output
        self._handles: list[RemovableHandle] = []
        #: Called with each module whose call returned (the memory tracker's per-row bytes).
        self.leave_listeners: list[Callable[[nn.Module], None]] = []

    def attach(self) -> None:
        for module in self.modules.values():
            self._handles.append(module.register_forward_pre_hook(self.enter, with_kwargs=True))
            self._handles.append(module.register_forward_hook(self.leave))

    def close(self) -> None:
        remove_all(self._handles)

    def enter(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """A module's forward starts (its pre-hook): push it, count the call."""
        if self._running:
            parent = self.states.get(id(self._running[-1]))
            if parent is not None:
                parent.had_child = True
        state = self.states.get(id(module))
        if state is None:
            state = ModuleState(self.names.get(id(module), type(module).__name__), next(self._order))
            state.input_shapes = shapes_of((*args, *kwargs.values()))
            self.states[id(module)] = state
        elif not state.shapes_vary and shapes_of((*args, *kwargs.values())) != state.input_shapes:
            state.shapes_vary = True
        state.calls += 1
        self._running.append(module)

    def leave(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        """A module's forward returned (its forward hook): pop it, keep its first output's shapes and
        note a later output of other shapes."""
        if self._running and self._running[-1] is module:
            self._running.pop()
        state = self.states[id(module)]
        if state.calls == 1 and not state.output_shapes:
            state.output_shapes = shapes_of((output,))
        elif not state.shapes_vary and shapes_of((output,)) != state.output_shapes:
            state.shapes_vary = True
        for listener in self.leave_listeners:
            listener(module)
        if self._on_root_output is not None and module is self.root:
            self._on_root_output(output)

    @property
    def current(self) -> nn.Module | None:
        """The innermost module running now; None outside the model's forward."""
        return self._running[-1] if self._running else None

    @property
    def running_layer(self) -> str | None:
        """The name of the innermost module running now (after a failed forward: the one that raised)."""
        return self.names.get(id(self._running[-1])) if self._running else None

    def name_of(self, module_id: int) -> str:
        """The row name of a module of the tree (or of one that ran, by the name it ran under)."""
        state = self.states.get(module_id)
        return state.name if state is not None else self.names[module_id]

    def module_kinds(self) -> dict[str, str]:
        """Every module's row name -> class name, for rolling rows up into their containers."""
        return {self.names[key]: kind_of(module) for key, module in self.modules.items()}
