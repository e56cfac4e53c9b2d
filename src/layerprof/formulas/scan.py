"""Scans along a dimension: cumsum and cumprod cost 1 per output element (an add or a multiply
with the running value), logcumsumexp 3 (an exp, an add, a log)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from layerprof.formulas.registry import OpFlops, first_output_numel, register

aten = torch.ops.aten


@register(aten.cumsum, aten.cumsum_, aten.cumprod, aten.cumprod_)
def scan(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops(vector=first_output_numel(out))


@register(aten.logcumsumexp)
def logcumsumexp(args: tuple[Any, ...], kwargs: Mapping[str, Any], out: Any) -> OpFlops:
    return OpFlops(vector=3 * first_output_numel(out))
