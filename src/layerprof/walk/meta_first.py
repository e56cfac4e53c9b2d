"""Counting real inputs on meta: what makes a meta forward count the same as the real one, and what not.

``analyze(model, x)`` counts on a meta twin fed meta tensors of the inputs' shapes, dtypes and strides
(:func:`meta_copies`), as ``input_size`` does: no compute, so the cost does not grow with the batch.
The counts are the real forward's as long as the forward does not look at values and takes the same
path on meta as on the CPU. Three kinds of model do not, and are counted on the real forward instead:

* **Up front** (:func:`meta_blocker`): a model or input not on the CPU (an accelerator picks its own
  kernels: cuDNN batch norm, fused dropout), autocast on (meta tensors do not autocast), an input that
  is not a plain strided tensor, or a module whose forward picks a CPU fast path by the device it sees
  (``nn.MultiheadAttention`` and the transformer encoder: one fused kernel on the CPU, its parts on
  meta; the RNNs: oneDNN's on the CPU).
* **Data dependence** (:class:`ProbingCounter`): an op raised on meta tensors because it needs values:
  torch tags it ``data_dependent_output`` (``.item()``, ``bool(t)``, ``if t.sum() > 0``, ``equal``) or
  ``dynamic_output_shape`` (``nonzero``, boolean masks, ``unique``), it copies out of meta (``.cpu()``,
  ``.tolist()``), it met a tensor the forward made on the CPU, or it has no meta kernel at all.
* **Another path on meta** (:data:`DEVICE_PATH_OPS`): an op that runs on meta where the CPU runs a
  different one (scaled_dot_product_attention's math fallback; a Python number written into a slice),
  or a tensor the forward made on the CPU moved to the inputs' device (``.to(x.device)``: a copy on
  meta, nothing at all on the CPU).

The probe only records what it saw; the caller decides (:mod:`layerprof.api.real_inputs`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch._ops import OpOverload
from torch.utils._pytree import tree_leaves, tree_map

from layerprof.errors import LayerprofError
from layerprof.walk.counter import Allocations, Charger, OpCounter

__all__ = ["DEVICE_PATH_MODULES", "DEVICE_PATH_OPS", "ProbingCounter", "meta_blocker", "meta_copies"]

aten = torch.ops.aten

#: Modules whose forward looks at the device of its inputs and takes a CPU-only fast path.
DEVICE_PATH_MODULES: tuple[type[nn.Module], ...] = (
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerEncoder,
    nn.RNNBase,
)

#: Ops a meta forward runs where the CPU's runs other ones, and why.
DEVICE_PATH_OPS: Mapping[OpOverload, str] = {
    aten._safe_softmax.default: (
        "scaled_dot_product_attention runs its math fallback on meta and a fused kernel on the CPU"
    ),
    aten.scalar_tensor.default: (
        "a Python number written into a tensor is a copy of a scalar tensor on meta, a fill on the CPU"
    ),
}

_DATA_TAGS = (torch.Tag.data_dependent_output, torch.Tag.dynamic_output_shape)
_COPIES = frozenset({aten._to_copy.default, aten.copy_.default, aten._copy_from.default})
#: What a custom op's fake kernel says when it needs a FakeTensorMode (torchvision.ops.nms does).
_NEEDS_FAKE = "as opposed to FakeTensors"


def _plain(tensor: torch.Tensor) -> bool:
    return (
        type(tensor) in (torch.Tensor, nn.Parameter, nn.Buffer)
        and tensor.layout == torch.strided
        and not tensor.is_quantized
        and tensor.device.type in ("cpu", "meta")  # meta: shapes recorded from a CPU forward (Profiler)
    )


def meta_blocker(model: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> str | None:
    """Why a meta forward of ``model`` on these inputs would not count what the real one does; None
    when nothing known stands in the way."""
    if torch.is_autocast_enabled("cpu"):
        return "autocast is on, and meta tensors do not autocast"
    for value in tree_leaves((args, dict(kwargs))):
        if isinstance(value, torch.Tensor) and not _plain(value):
            return f"an input is a {type(value).__name__} on {value.device} ({value.layout}, {value.dtype})"
    for name, module in model.named_modules():  # one walk of the tree: this runs on every call
        if isinstance(module, DEVICE_PATH_MODULES):
            return (
                f"layer {name or '(root)'} is a {type(module).__name__}, whose forward takes a CPU "
                "fast path that a meta tensor does not"
            )
        for tensor in (*module._parameters.values(), *module._buffers.values()):
            if tensor is not None and not _plain(tensor):
                return f"the model holds a {type(tensor).__name__} on {tensor.device} ({tensor.dtype})"
    return None


def meta_copies(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The inputs with every tensor (nested in tuples, lists and dicts too) an empty meta tensor of the
    same shape, strides, dtype and ``requires_grad``; one input given twice stays one tensor."""
    made: dict[int, torch.Tensor] = {}

    def convert(value: Any) -> Any:
        if not isinstance(value, torch.Tensor):
            return value
        known = made.get(id(value))
        if known is None:
            known = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device="meta")
            if value.requires_grad:
                known.requires_grad_(True)
            made[id(value)] = known
        return known

    converted_args, converted_kwargs = tree_map(convert, (args, dict(kwargs)))
    return tuple(converted_args), converted_kwargs


def _devices(values: Any) -> set[str]:
    return {t.device.type for t in tree_leaves(values) if isinstance(t, torch.Tensor) and t.dim() > 0}


def needs_data(
    func: OpOverload, args: tuple[Any, ...], kwargs: Mapping[str, Any], error: Exception
) -> str | None:
    """Why ``func`` raising ``error`` on meta tensors is the meta device's limit, not the model's
    error; None when it is not one of those."""
    if any(tag in func.tags for tag in _DATA_TAGS):
        return f"{func} needs the tensors' values"
    devices = _devices((args, dict(kwargs)))
    if func in _COPIES and "meta" in devices:
        return f"{func} copies a meta tensor out to the CPU (.cpu(), .tolist(), .numpy())"
    if len(devices) > 1:
        return f"{func} got a tensor made on the CPU inside the forward next to meta tensors"
    if not torch._C._dispatch_has_computed_kernel_for_dispatch_key(func.name(), "Meta"):  # type: ignore[no-untyped-call]
        return f"{func} has no meta kernel"
    if _NEEDS_FAKE in str(error):
        return f"{func} has a data-dependent output size"
    return None


class ProbingCounter(OpCounter):  # type: ignore[no-untyped-call]
    """The counter, noting the first op that shows a meta forward does not count what the CPU's does:
    one that raised because it needs values (:func:`needs_data`), or one of :data:`DEVICE_PATH_OPS`.
    A note is kept even when the model catches the error and goes on (its path then differs)."""

    def __init__(
        self, collector: Charger, *, fast_meta: bool = True, memory: Allocations | None = None
    ) -> None:
        super().__init__(collector, fast_meta=fast_meta, memory=memory)
        self.reason: str | None = None

    def _note(self, why: str) -> None:
        if self.reason is None:
            layer = getattr(self.collector, "running_layer", None) or "(outside the layers)"
            self.reason = f"in layer {layer}, {why}"

    def __torch_dispatch__(
        self,
        func: OpOverload,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
    ) -> Any:
        other_path = DEVICE_PATH_OPS.get(func)
        if other_path is not None:
            self._note(other_path)
        try:
            out = super().__torch_dispatch__(func, types, args, kwargs)
        except LayerprofError:
            raise
        except Exception as error:
            why = needs_data(func, args, kwargs or {}, error)
            if why is not None:
                self._note(why)
            raise
        if func is aten._to_copy.default and _moved_to_meta(args, out):
            self._note(_MOVED)
        return out


_MOVED = "a tensor made on the CPU is moved to the inputs' device: a copy on meta, nothing on the CPU"


def _moved_to_meta(args: tuple[Any, ...], out: Any) -> bool:
    source = args[0] if args else None
    return (
        isinstance(source, torch.Tensor)
        and not source.is_meta
        and isinstance(out, torch.Tensor)
        and out.is_meta
    )
