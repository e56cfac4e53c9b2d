"""A second opinion from fvcore: its FlopCountAnalysis on the same model and inputs, layer by layer.

Only matrix work is compared (convolution, linear, matmul, einsum), where fvcore counts one flop per
MAC: layerprof's ``macs`` must equal fvcore's count for every row. Where they differ the reason is
given when it is a known fvcore gap: an op fvcore has no handle for (SDPA, the native multi-head
attention kernel, ...) in that layer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from layerprof.core import rownames
from layerprof.errors import InvalidArgumentError
from layerprof.walk.inputs import split_inputs

if TYPE_CHECKING:
    from layerprof.report.facade import Report

logger = logging.getLogger(__name__)

# fvcore's handles for matrix work; its other handles (norms, pooling, upsampling) are switched off.
_MATRIX_HANDLES = (
    "aten::addmm", "aten::bmm", "aten::_convolution", "aten::einsum", "aten::matmul", "aten::mm",
    "aten::linear",
)  # fmt: skip
_NON_MATRIX_HANDLES = (
    "aten::batch_norm", "aten::group_norm", "aten::layer_norm", "aten::instance_norm",
    "aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::adaptive_avg_pool2d",
    "aten::grid_sampler",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Disagreement:
    name: str
    layerprof_macs: int
    fvcore_macs: int
    reason: str


@dataclass(frozen=True, slots=True)
class Crosscheck:
    """Per-row matrix MACs by layerprof against fvcore; ``disagreements`` lists every row that differs."""

    layerprof_macs: int
    fvcore_macs: int
    rows_compared: int
    disagreements: tuple[Disagreement, ...]
    fvcore_unsupported: Mapping[str, int]

    @property
    def agrees(self) -> bool:
        return not self.disagreements

    def summary(self) -> str:
        head = (
            f"fvcore crosscheck: {self.rows_compared} rows compared, layerprof {self.layerprof_macs:,} MACs, "
            f"fvcore {self.fvcore_macs:,}"
        )
        if self.agrees:
            return head + ": every row agrees"
        lines = [head + f": {len(self.disagreements)} rows differ"]
        lines += [
            f"  {d.name}: layerprof {d.layerprof_macs:,} vs fvcore {d.fvcore_macs:,} ({d.reason})"
            for d in self.disagreements
        ]
        return "\n".join(lines)


def _container(name: str) -> str:
    return rownames.module_path_name(rownames.module_of(name))


def crosscheck(
    report: Report, model: nn.Module | None, inputs: Any = None, keywords: Mapping[str, Any] | None = None
) -> Crosscheck:
    """Run fvcore on ``model`` (default: the report's model) and compare matrix MACs per row.

    ``inputs`` and ``keywords`` take the forms analyze's ``inputs`` and ``kwargs`` do (a dict
    ``inputs`` is keyword inputs); without them, inputs like the report's are made. fvcore traces
    positional tensors only, so a model given keyword inputs is traced through :class:`_Positional`.
    """
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS

    if model is None:
        raise InvalidArgumentError("the report's model is gone; pass model= (and inputs=) to crosscheck")
    if inputs is None:
        if report.inputs is None:
            raise InvalidArgumentError("the report has no input description; pass inputs= to crosscheck")
        with torch.random.fork_rng(devices=[]):  # random inputs: the caller's next draw must not move
            args, kwargs = report.inputs.make(_device_of(model))
        args = tuple(_like_model(a, model) for a in args)
        # A keyword value that was not a tensor is not recorded: the model's default stands in for it.
        kwargs = {k: _like_model(v, model) for k, v in kwargs.items() if v is not None}
    else:
        args, kwargs = split_inputs(inputs, keywords)
    traced, traced_args, prefix = _positional(model, args, kwargs)

    analysis = FlopCountAnalysis(traced, traced_args if len(traced_args) != 1 else traced_args[0])
    matrix_handles = {name: _DEFAULT_SUPPORTED_OPS[name] for name in _MATRIX_HANDLES}
    analysis.clear_op_handles().set_op_handle(**matrix_handles)
    analysis.set_op_handle(**dict.fromkeys(_NON_MATRIX_HANDLES))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with torch.no_grad():
        by_module = _unprefixed(analysis.by_module(), prefix)
    children = {name: [c for c, _ in module.named_children()] for name, module in model.named_modules()}

    disagreements = []
    compared = 0
    glue_seen: set[str] = set()
    ours_total = 0
    for row in report.forward:
        if rownames.is_glue(row.name):
            container = _container(row.name)
            if container in glue_seen:
                continue
            glue_seen.add(container)
            ours = sum(
                r.macs for r in report.forward if rownames.is_glue(r.name) and _container(r.name) == container
            )
            prefix = f"{container}." if container else ""
            theirs = int(by_module.get(container, 0)) - sum(
                int(by_module.get(prefix + child, 0)) for child in children.get(container, [])
            )
            name = rownames.glue(container, "*")
        else:
            ours, theirs, name = row.macs, int(by_module.get(row.name, 0)), row.name
        compared += 1
        ours_total += ours
        if ours != theirs:
            module_name = rownames.module_path_name(rownames.module_of(name))
            traced_name = prefix + module_name if module_name else prefix.rstrip(".")
            gaps = analysis.unsupported_ops(traced_name) if module_name in by_module else {}
            reason = "fvcore has no handle for " + ", ".join(sorted(gaps)) if gaps else "no known fvcore gap"
            disagreements.append(Disagreement(name, ours, theirs, reason))
    return Crosscheck(
        layerprof_macs=ours_total,
        fvcore_macs=int(analysis.total()),
        rows_compared=compared,
        disagreements=tuple(disagreements),
        fvcore_unsupported=dict(analysis.unsupported_ops()),
    )


class _Positional(nn.Module):
    """``model`` called with keyword inputs, as fvcore can trace it: its forward takes the positional
    inputs, then the keyword tensors in a fixed order, and calls ``model(*args, name=tensor, ...)``;
    keyword values that are not tensors are kept as constants. Its rows are the model's, under
    ``model.`` (:func:`_unprefixed` takes that off)."""

    def __init__(self, model: nn.Module, positional: int, names: tuple[str, ...], constants: dict[str, Any]):
        super().__init__()
        self.model = model
        self.positional = positional
        self.names = names
        self.constants = constants

    def forward(self, *values: Any) -> Any:
        args, tensors = values[: self.positional], values[self.positional :]
        return self.model(*args, **self.constants, **dict(zip(self.names, tensors, strict=True)))


def _positional(
    model: nn.Module, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[nn.Module, tuple[Any, ...], str]:
    """What fvcore traces, its positional inputs and the prefix its module names carry."""
    if not kwargs:
        return model, args, ""
    names = tuple(k for k, v in kwargs.items() if isinstance(v, torch.Tensor))
    constants = {k: v for k, v in kwargs.items() if k not in names}
    adapter = _Positional(model, len(args), names, constants)
    return adapter, (*args, *(kwargs[k] for k in names)), "model."


def _unprefixed(by_module: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """fvcore's counts per module of ``model``, named as in ``model``: the adapter's prefix taken off."""
    if not prefix:
        return dict(by_module)
    root = prefix.rstrip(".")
    return {
        name.removeprefix(prefix) if name != root else "": count
        for name, count in by_module.items()
        if name == root or name.startswith(prefix)
    }


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _like_model(value: Any, model: nn.Module) -> Any:
    # A report made at fp16 with input_size still crosschecks an fp32 model: counts do not depend on dtype.
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        for tensor in model.parameters():
            if tensor.is_floating_point():
                return value.to(tensor.dtype)
    return value
