"""``layerprof.analyze``: FLOPs and bytes per layer, counted on a twin of the model; nothing is timed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from layerprof.api.counting import check_flag, check_model, count, warn_unsupported
from layerprof.api.footprint import footprint_run
from layerprof.api.real_inputs import count_inputs
from layerprof.api.rng import keeps_rng
from layerprof.core.dtypes import dtype_name
from layerprof.errors import ForwardError, InvalidArgumentError
from layerprof.hardware.targets import TargetArg, resolve_targets
from layerprof.report.assemble import build_report
from layerprof.report.facade import Report
from layerprof.walk.inputs import (
    Inputs,
    InputSize,
    check_devices,
    describe,
    explain_failure,
    input_dtype,
    model_device,
    sizes_to_spec,
    split_inputs,
    to_meta,
)

__all__ = ["INT8_STAND_IN", "analyze"]

# int8 inference is counted in a 1-byte float on meta: same shapes, same bytes, and meta kernels exist.
INT8_STAND_IN = torch.float8_e4m3fn


@keeps_rng  # a twin in train mode draws dropout masks: the user's next draw must not move
def analyze(
    model: nn.Module,
    inputs: Inputs | None = None,
    *,
    kwargs: Mapping[str, Any] | None = None,
    input_size: InputSize | None = None,
    dtype: torch.dtype | str | None = None,
    target: TargetArg = None,
    backward: bool = False,
    optimizer: object = None,
    cache_model: bool = True,
) -> Report:
    """Count FLOPs and bytes per layer; nothing is timed.

    With ``input_size`` (batch first) the model runs on the meta device at ``dtype`` (default float32):
    shapes only, no compute, no memory. ``dtype=torch.int8`` audits int8 inference: the model runs in
    a 1-byte float on meta (the same bytes as int8) and its rows are priced at the targets' int8 peaks.
    An integer, bool or complex ``dtype`` is the inputs' only (token ids: ``input_size=(8, 128),
    dtype=torch.long``); the model then runs in float32. ``input_size`` is one size, a ``(size,
    dtype)`` pair for an input of its own dtype, a sequence of those for several positional inputs,
    or a dict of them for keyword inputs: ``{"ids": ((8, 128), torch.long), "mask": ((8, 128),
    torch.bool)}``. When the forward fails on these inputs, the error gives the innermost cause
    (torch's own message) and, where the sizes are the likely culprit, says which.

    With ``inputs`` it counts one forward on them, under ``torch.no_grad()``: a tensor is the one
    positional input, a tuple or list the positional inputs in order, and a dict the keyword inputs
    (the model is called as ``model(**inputs)``). ``kwargs=`` gives keyword inputs next to positional
    ones: ``analyze(model, x, kwargs={"mask": m})`` calls ``model(x, mask=m)``. That forward runs on
    meta copies of the inputs (their shapes, dtypes and strides; no compute, so any batch costs the
    same), and on the inputs themselves only when the model needs their values (``.item()``,
    ``if x.sum() > 0``, ``nonzero``) or would take another path on meta (autocast, an accelerator,
    attention and RNN modules with CPU fast paths): the counts are the real forward's either way
    (:mod:`layerprof.api.real_inputs`; which way is logged on ``layerprof.api.real_inputs``).
    A ``torch.compile``'d model is counted through the module it wraps.
    Either way a twin of the model runs, so the model itself keeps its hooks, buffers, flags and
    device. The model is counted in the mode it is in (``model.eval()`` for inference counts).

    ``backward=True`` counts a training step instead: forward and backward on the meta device (real
    inputs are replaced by meta tensors of the same shapes), backward rows (``phase="backward"``)
    charged to the layers whose forward made them, as if the loss were the sum of the outputs.

    ``report.memory`` gives the run's peak memory and what it holds (:mod:`layerprof.report.memory`);
    with ``backward=True`` the training step's, and ``optimizer=`` (a ``torch.optim`` SGD, Adam or
    AdamW instance, or ``"sgd"``, ``"sgd-momentum"``, ``"adam"``, ``"adamw"``) adds its step and state.
    ``cache_model=False`` gives the DRAM-only verdicts (bound ``"memory"``, every byte from DRAM, no
    launch floor) instead of the cache-aware ones (README, "The cache-aware roofline").
    """
    if not isinstance(backward, bool):
        raise InvalidArgumentError(f"backward must be True or False, got {backward!r}")
    check_flag("cache_model", cache_model)
    model = check_model(model)
    targets = resolve_targets(target)
    given = inputs is not None or kwargs is not None
    if not given and input_size is None:
        raise InvalidArgumentError("analyze needs example inputs or input_size=(batch, ...); got neither")
    if given and input_size is not None:
        raise InvalidArgumentError(
            "give inputs (and kwargs) or input_size, not both; keyword input sizes are a dict in input_size"
        )
    if input_size is not None:
        run_dtype = input_dtype(dtype, "dtype") if dtype is not None else torch.float32
        int8 = run_dtype == torch.int8
        if int8:
            run_dtype = INT8_STAND_IN
        spec = sizes_to_spec(input_size, run_dtype)
        if not run_dtype.is_floating_point:
            run_dtype = torch.float32  # an index, mask or complex dtype is the inputs' only
        args, kwargs = spec.make("meta")
        memory = footprint_run(model, targets, optimizer=optimizer, backward=backward, on_meta=True)
        try:
            rows, unsupported, kinds = count(
                model,
                args,
                kwargs,
                to_meta_device=True,
                dtype=run_dtype,
                backward=backward,
                memory=memory,
                cache_model=cache_model,
            )
        except ForwardError as error:
            # Often the sizes themselves: float indices, a rank the first convolution does not take.
            explain_failure(model, spec, error)
            raise
        if int8:
            rows = [replace(r, dtype="int8") if r.dtype == dtype_name(INT8_STAND_IN) else r for r in rows]
    else:
        if dtype is not None:
            raise InvalidArgumentError(
                f"dtype={dtype!r} applies to input_size only; with real inputs, cast the model and inputs"
            )
        args, kwargs = split_inputs(inputs, kwargs)
        spec = describe(args, kwargs)
        where = model_device(model)
        on_meta = where is not None and where.type == "meta"
        if not on_meta:
            check_devices(model, args, kwargs)
        if on_meta or backward:
            args, kwargs = to_meta(args, kwargs)
        # Both ways count on meta first (count_inputs starts the tracker over for a real forward).
        memory = footprint_run(model, targets, optimizer=optimizer, backward=backward, on_meta=True)
        if on_meta or backward:
            rows, unsupported, kinds = count(
                model,
                args,
                kwargs,
                to_meta_device=True,
                backward=backward,
                memory=memory,
                cache_model=cache_model,
            )
        else:  # on meta from the inputs' shapes, on the real forward when the model needs values
            counted = count_inputs(model, (args, kwargs), memory=memory, cache_model=cache_model)
            rows, unsupported, kinds = counted.parts()
    warn_unsupported(unsupported)
    return build_report(model, rows, unsupported, targets, spec, kinds, memory=memory)
