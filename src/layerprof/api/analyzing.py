"""``layerprof.analyze``: FLOPs and bytes per layer, counted on a twin of the model; nothing is timed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import nn

from layerprof.api.counting import check_model, count, warn_unsupported
from layerprof.core.dtypes import dtype_name, parse_dtype
from layerprof.errors import ForwardError, InvalidArgumentError
from layerprof.hardware.targets import TargetArg, resolve_targets
from layerprof.report.assemble import build_report
from layerprof.report.facade import Report
from layerprof.walk.inputs import (
    Inputs,
    check_devices,
    check_rank,
    describe,
    model_device,
    sizes_to_spec,
    split_inputs,
    to_meta,
)

__all__ = ["INT8_STAND_IN", "analyze"]

# int8 inference is counted in a 1-byte float on meta: same shapes, same bytes, and meta kernels exist.
INT8_STAND_IN = torch.float8_e4m3fn


def analyze(
    model: nn.Module,
    inputs: Inputs | None = None,
    *,
    input_size: Sequence[int] | Sequence[Sequence[int]] | None = None,
    dtype: torch.dtype | str | None = None,
    target: TargetArg = None,
    backward: bool = False,
) -> Report:
    """Count FLOPs and bytes per layer; nothing is timed.

    With ``input_size`` (batch first; a sequence of sizes for several inputs) the model runs on the
    meta device at ``dtype`` (default float32): shapes only, no compute, no memory. ``dtype=torch.int8``
    audits int8 inference: the model runs in a 1-byte float on meta (the same bytes as int8) and its
    rows are priced at the targets' int8 peaks. With ``inputs`` (a tensor, a tuple or a dict) it runs
    once on them, under ``torch.no_grad()``. Either way a twin of the model runs, so the model itself
    keeps its hooks, buffers, flags and device. The model is counted in the mode it is in
    (``model.eval()`` for inference counts).

    ``backward=True`` counts a training step instead: forward and backward on the meta device (real
    inputs are replaced by meta tensors of the same shapes), backward rows (``phase="backward"``)
    charged to the layers whose forward made them, as if the loss were the sum of the outputs.
    """
    if not isinstance(backward, bool):
        raise InvalidArgumentError(f"backward must be True or False, got {backward!r}")
    model = check_model(model)
    targets = resolve_targets(target)
    if (inputs is None) == (input_size is None):
        raise InvalidArgumentError("give exactly one of inputs or input_size")
    if input_size is not None:
        run_dtype = parse_dtype(dtype) if dtype is not None else torch.float32
        int8 = run_dtype == torch.int8
        if int8:
            run_dtype = INT8_STAND_IN
        elif not run_dtype.is_floating_point:
            raise InvalidArgumentError(
                f"dtype {run_dtype} is not a floating dtype (nor int8); analyze runs the model in it"
            )
        spec = sizes_to_spec(input_size, run_dtype)
        args, kwargs = spec.make("meta")
        try:
            rows, unsupported, kinds = count(
                model, args, kwargs, to_meta_device=True, dtype=run_dtype, backward=backward
            )
        except ForwardError as error:
            # Most often the size itself: say so when it does not fit the model's first convolution.
            check_rank(model, spec, error)
            raise
        if int8:
            rows = [replace(r, dtype="int8") if r.dtype == dtype_name(INT8_STAND_IN) else r for r in rows]
    else:
        if dtype is not None:
            raise InvalidArgumentError(
                f"dtype={dtype!r} applies to input_size only; with real inputs, cast the model and inputs"
            )
        args, kwargs = split_inputs(inputs)  # type: ignore[arg-type]
        spec = describe(args, kwargs)
        where = model_device(model)
        on_meta = where is not None and where.type == "meta"
        if not on_meta:
            check_devices(model, args, kwargs)
        if on_meta or backward:
            args, kwargs = to_meta(args, kwargs)
        rows, unsupported, kinds = count(
            model, args, kwargs, to_meta_device=on_meta or backward, backward=backward
        )
    warn_unsupported(unsupported)
    return build_report(model, rows, unsupported, targets, spec, kinds)
