"""Module names for a ``torch.export`` program: its ops charged to the modules they came from.

An exported program's ``module()`` is one fx GraphModule that runs every aten op itself, so module
hooks would charge all of them to the root. Each graph node keeps the module path it was traced in
(``meta["nn_module_stack"]``: outermost first, one key per call), so the twin's graph is run node by
node (:class:`ExportedRun`, an ``fx.Interpreter``) and, before each node, the module stack is brought
to that node's modules: the modules left are left (their output: the last value made inside them),
those entered are entered (their input: the node's inputs that are not weights). Modules the program
no longer holds (a ReLU has no weights to keep) get a stand-in in the twin, never in the model; every
module's kind is its class in the eager model (:func:`~layerprof.walk.stack.kind_of`).
"""

from __future__ import annotations

import inspect
from typing import Any, TypeGuard

import torch
import torch.fx
from torch import nn
from torch.fx import _pytree as fx_pytree
from torch.utils import _pytree as pytree

from layerprof.walk.stack import KIND_ATTRIBUTE, ModuleStack

__all__ = ["ExportedRun", "is_exported", "prepare"]

# (key of the call, module path, class path) from outermost to innermost, the root left out.
Chain = tuple[tuple[str, str, str], ...]


def is_exported(model: nn.Module) -> TypeGuard[torch.fx.GraphModule]:
    """Whether ``model`` is an fx GraphModule whose nodes carry torch.export's module paths."""
    if not isinstance(model, torch.fx.GraphModule):
        return False
    # A symbolic_trace graph also records module paths, but it calls its submodules (call_module),
    # whose own hooks name the rows: only a graph that runs its ops itself needs the node walk.
    calls_modules = any(node.op == "call_module" and not _private(node) for node in model.graph.nodes)
    return not calls_modules and any("nn_module_stack" in node.meta for node in model.graph.nodes)


def _private(node: torch.fx.Node) -> bool:
    return str(node.target).rsplit(".", 1)[-1].startswith("_")


def _chain(node: torch.fx.Node) -> Chain:
    if node.op == "call_module" and _private(node):
        return ()  # a private helper (``_guards_fn``): it runs in the root, and its own hooks count it
    stack = node.meta.get("nn_module_stack") or {}
    return tuple((key, path, kind) for key, (path, kind) in stack.items() if path)


def _class_name(kind: object) -> str:
    """``torch.nn.modules.conv.Conv2d`` (torch.export's spelling) or the class itself -> ``Conv2d``."""
    return kind.__name__ if isinstance(kind, type) else str(kind).rsplit(".", 1)[-1]


def prepare(twin: torch.fx.GraphModule) -> None:
    """Give ``twin`` (never the user's model) a module for every path its nodes name, each marked with
    its eager class's name."""
    for node in twin.graph.nodes:
        for _, path, kind in _chain(node):
            parent: nn.Module = twin
            for part in path.split("."):
                child = parent._modules.get(part)
                if child is None:
                    child = parent._modules[part] = nn.Module()
                parent = child
            parent.__dict__[KIND_ATTRIBUTE] = _class_name(kind)


class ExportedRun(torch.fx.Interpreter):
    """Runs a prepared twin's graph, keeping ``stack`` on each node's modules: install it with
    :meth:`install` and call the twin as usual (its own hooks then count the root's call)."""

    def __init__(self, twin: torch.fx.GraphModule, stack: ModuleStack) -> None:
        super().__init__(twin)
        self.twin = twin
        self.stack = stack
        self._modules = dict(twin.named_modules())
        self._open: list[tuple[str, nn.Module]] = []
        self._last: Any = None

    def install(self) -> None:
        """The twin's forward becomes this run (on the twin alone: an attribute of its own)."""
        self.twin.__dict__["forward"] = self.forward

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        spec = self.twin._in_spec
        names = list(inspect.signature(type(self.twin).forward).parameters)[1:]
        bound = dict(zip(names, args, strict=False)) | kwargs
        args_spec = spec.child(0) if hasattr(spec, "child") else spec.children_specs[0]  # ([args], {kw})
        positional = args_spec.num_children
        keyword = {name: bound[name] for name in names[positional:] if name in bound}
        flat = fx_pytree.tree_flatten_spec(([bound[n] for n in names[:positional]], keyword), spec)
        self._open, self._last = [], None
        try:
            out = self.run(*flat, enable_io_processing=False)
        finally:
            self._sync(())
        out_spec = self.twin._out_spec
        return out if out_spec is None else pytree.tree_unflatten(list(out), out_spec)

    def run_node(self, n: torch.fx.Node) -> Any:
        if n.op in ("call_function", "call_method", "call_module"):
            chain = _chain(n)
            self._sync(chain, n)
        result = super().run_node(n)
        if n.op != "get_attr":
            self._last = result
        return result

    def _sync(self, chain: Chain, node: torch.fx.Node | None = None) -> None:
        keys = [key for key, _, _ in chain]
        same = 0
        while same < min(len(keys), len(self._open)) and self._open[same][0] == keys[same]:
            same += 1
        while len(self._open) > same:
            _, module = self._open.pop()
            self.stack.leave(module, (), self._last)
        for key, path, _ in chain[same:]:
            module = self._modules[path]
            self.stack.enter(module, self._inputs(node), {})
            self._open.append((key, module))

    def _inputs(self, node: torch.fx.Node | None) -> tuple[Any, ...]:
        """The values ``node`` reads that are not weights: what the modules it enters were given."""
        if node is None:
            return ()
        read = [a for a in node.all_input_nodes if a.op != "get_attr"]
        return tuple(self.env[a] for a in read if a in self.env)
