"""Cost formulas, one module per aten op family, and the frozen registry that maps ops to them.

Importing this package imports every family, so that every formula is registered exactly once, and
then freezes the registry: :data:`FORMULAS` is read-only.
"""

from __future__ import annotations

from layerprof.formulas import (  # noqa: F401  (imported to register their formulas)
    activation,
    attention,
    backward,
    conv,
    elementwise,
    interpolate,
    matmul,
    movement,
    norm,
    pooling,
    quantized,
    softmax,
)
from layerprof.formulas.conv import conv_flops, conv_macs
from layerprof.formulas.movement import WRITE_ONLY_DESTINATION, is_free
from layerprof.formulas.registry import REGISTRY, Formula, OpFlops

FORMULAS = REGISTRY.freeze()

__all__ = ["FORMULAS", "WRITE_ONLY_DESTINATION", "Formula", "OpFlops", "conv_flops", "conv_macs", "is_free"]
