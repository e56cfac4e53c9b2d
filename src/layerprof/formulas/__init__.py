"""Cost formulas, one module per aten op family, and the frozen registry that maps ops to them.

Importing this package imports every family, so that every formula is registered exactly once, and
then freezes the registry: :data:`FORMULAS` is read-only.
"""

from __future__ import annotations

from torch._ops import OpOverload

from layerprof.formulas import (  # noqa: F401  (imported to register their formulas)
    activation,
    attention,
    backward,
    conv,
    detection,
    elementwise,
    interpolate,
    matmul,
    movement,
    norm,
    pooling,
    quantized,
    sampling,
    scan,
    softmax,
    sorting,
)
from layerprof.formulas.conv import conv_flops, conv_macs
from layerprof.formulas.detection import NAMED_FORMULAS
from layerprof.formulas.movement import WRITE_ONLY_DESTINATION, is_free
from layerprof.formulas.registry import REGISTRY, Formula, OpFlops

FORMULAS = REGISTRY.freeze()


def formula_of(op: OpOverload) -> Formula | None:
    """The formula of ``op``: registered for the overload, or by its packet's name (ops of libraries
    layerprof does not import, such as torchvision's)."""
    formula = FORMULAS.get(op)
    return formula if formula is not None else NAMED_FORMULAS.get(str(op.overloadpacket))


__all__ = [
    "FORMULAS",
    "NAMED_FORMULAS",
    "WRITE_ONLY_DESTINATION",
    "Formula",
    "OpFlops",
    "conv_flops",
    "conv_macs",
    "formula_of",
    "is_free",
]
