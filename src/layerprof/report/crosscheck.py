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


def crosscheck(report: Report, model: nn.Module | None, inputs: Any = None) -> Crosscheck:
    """Run fvcore on ``model`` (default: the report's model) and compare matrix MACs per row."""
    from fvcore.nn import FlopCountAnalysis
    from fvcore.nn.flop_count import _DEFAULT_SUPPORTED_OPS

    if model is None:
        raise InvalidArgumentError("the report's model is gone; pass model= (and inputs=) to crosscheck")
    if inputs is None:
        if report.inputs is None:
            raise InvalidArgumentError("the report has no input description; pass inputs= to crosscheck")
        args, kwargs = report.inputs.make(_device_of(model))
        args = tuple(_like_model(a, model) for a in args)
    else:
        args, kwargs = split_inputs(inputs)
    if kwargs:
        raise InvalidArgumentError("fvcore traces positional inputs only; this model takes keyword inputs")

    analysis = FlopCountAnalysis(model, args if len(args) != 1 else args[0])
    matrix_handles = {name: _DEFAULT_SUPPORTED_OPS[name] for name in _MATRIX_HANDLES}
    analysis.clear_op_handles().set_op_handle(**matrix_handles)
    analysis.set_op_handle(**dict.fromkeys(_NON_MATRIX_HANDLES))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with torch.no_grad():
        by_module = analysis.by_module()
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
            gaps = analysis.unsupported_ops(module_name) if module_name in by_module else {}
            reason = "fvcore has no handle for " + ", ".join(sorted(gaps)) if gaps else "no known fvcore gap"
            disagreements.append(Disagreement(name, ours, theirs, reason))
    return Crosscheck(
        layerprof_macs=ours_total,
        fvcore_macs=int(analysis.total()),
        rows_compared=compared,
        disagreements=tuple(disagreements),
        fvcore_unsupported=dict(analysis.unsupported_ops()),
    )


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
