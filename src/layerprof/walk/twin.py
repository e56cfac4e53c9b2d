"""A twin of the user's model to walk instead of the model itself.

The twin is a shallow copy of every module: same classes, same forward code, same attributes, but
its own parameter, buffer, submodule and hook dictionaries. Counting hooks go on the twin, in-place
buffer updates (batch-norm running statistics) land in the twin's buffers, and the user's model is
never written to, not even for the length of one forward.

On the meta device every floating tensor becomes an empty meta tensor (optionally of another dtype):
shape propagation only, no compute and no memory. Otherwise parameters are shared (the forward does
not write them) and buffers and plain tensor attributes are cloned. The model's own forward hooks
stay on the twin (copied, not shared), since they may be part of what the forward computes
(pruning masks); a hook that records what it sees will see the twin's forwards too.
"""

from __future__ import annotations

import collections
import copy
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)


#: torch's bookkeeping for state dicts: registered when a module is built, never by a forward, so
#: the twin shares them (copying them was a third of the twin's cost on a MobileNet).
_STATE_DICT_HOOKS = frozenset(
    {
        "_state_dict_hooks",
        "_state_dict_pre_hooks",
        "_load_state_dict_pre_hooks",
        "_load_state_dict_post_hooks",
    }
)
#: The module's own dictionaries, which module() rebuilds itself, and those it shares.
_OWN_DICTS = frozenset({"_parameters", "_buffers", "_modules", *_HOOK_DICTS, *_STATE_DICT_HOOKS})
#: Containers a forward can write into; tuples and frozensets cannot be, so they stay shared.
_MUTABLE_CONTAINERS = (list, dict, set, collections.deque)


class _TwinMaker:
    def __init__(self, to_meta: bool, dtype: torch.dtype | None) -> None:
        self.to_meta = to_meta
        self.dtype = dtype
        self.modules: dict[int, nn.Module] = {}
        self.tensors: dict[int, Any] = {}
        self.containers: dict[int, Any] = {}

    def tensor(self, value: torch.Tensor, *, is_buffer: bool) -> torch.Tensor:
        known = self.tensors.get(id(value))
        if known is not None:
            return known  # type: ignore[no-any-return]
        dtype = self.dtype if self.dtype is not None and value.is_floating_point() else value.dtype
        converted: torch.Tensor
        if self.to_meta and value.is_contiguous():  # empty_strided: a tenth of empty_like's cost
            converted = torch.empty_strided(value.shape, value.stride(), dtype=dtype, device="meta")
        elif self.to_meta:
            converted = torch.empty_like(value, device="meta", dtype=dtype)
        elif is_buffer:
            converted = value.detach().clone()
        else:
            converted = value
        if isinstance(value, nn.Parameter) and converted is not value:
            converted = nn.Parameter(converted, requires_grad=value.requires_grad)
        self.tensors[id(value)] = converted
        return converted

    def module(self, original: nn.Module) -> nn.Module:
        known = self.modules.get(id(original))
        if known is not None:
            return known
        # A shallow copy without copy.copy's __reduce_ex__ round trip (a third of the twin's cost).
        # object.__new__, not cls.__new__: a GraphModule's __new__ makes a fresh class with no forward.
        clone = object.__new__(type(original))
        state = dict(original.__dict__)
        object.__setattr__(clone, "__dict__", state)
        self.modules[id(original)] = clone
        state["_parameters"] = {
            name: None if p is None else self.tensor(p, is_buffer=False)
            for name, p in original._parameters.items()
        }
        state["_buffers"] = {
            name: None if b is None else self.tensor(b, is_buffer=True)
            for name, b in original._buffers.items()
        }
        state["_modules"] = {
            name: None if child is None else self.module(child) for name, child in original._modules.items()
        }
        for hooks in _HOOK_DICTS:  # every one, empty too: hooks added to the twin must not reach the model
            if hooks in state:
                state[hooks] = OrderedDict(state[hooks])
        # Plain tensor attributes (neither parameter nor buffer) are treated like buffers: a forward
        # may update them in place (a running scale), and that must land in the twin's copy. So are
        # the containers a forward may write into (self.cache[key] = x, self.seen.append(x)): the
        # twin gets its own, so no counted (meta) tensor ever lands in the user's.
        for name, value in list(state.items()):
            if name not in _OWN_DICTS:
                state[name] = self.attribute(value)
        return clone

    def attribute(self, value: Any) -> Any:
        """A plain attribute as the twin holds it: tensors converted, mutable containers copied."""
        if isinstance(value, torch.Tensor):
            return self.tensor(value, is_buffer=True)
        if not isinstance(value, _MUTABLE_CONTAINERS):
            return value
        if type(value) is set and all(type(item) is str for item in value):
            return set(value)  # names (_non_persistent_buffers_set): nothing inside to convert
        known = self.containers.get(id(value))
        if known is not None:
            return known  # shared (or self-referencing) containers stay shared in the twin
        copied = copy.copy(value)  # the same type: OrderedDict, defaultdict, deque, a list subclass
        self.containers[id(value)] = copied
        if isinstance(copied, dict):
            for key, item in copied.items():
                copied[key] = self.attribute(item)
        elif isinstance(copied, (list, collections.deque)):
            for index, item in enumerate(copied):
                copied[index] = self.attribute(item)
        return copied


def make_twin(model: nn.Module, *, to_meta: bool, dtype: torch.dtype | None = None) -> nn.Module:
    """A structural copy of ``model`` that shares code but owns its tensors' dictionaries."""
    return _TwinMaker(to_meta, dtype).module(model)
