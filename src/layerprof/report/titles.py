"""The one line that says which model a report is about and on which inputs.

The table's first line, the HTML page's heading and the roofline picture's title all read it here:
``layerprof: ResNet (1x3x224x224)``, each input's dtype after its shape when that is not float32
(``layerprof: Bert (ids=8x128 int64)``). The page's heading leaves the shapes out (its inputs line lists
them with their dtypes); the picture's title leaves the ``layerprof:`` brand out. ``repr(report)``
is the same line with the report's size and totals (:func:`report_summary`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from layerprof.core.dtypes import dtype_name
from layerprof.core.units import binary_bytes, shape, si
from layerprof.report.timecells import duration

if TYPE_CHECKING:
    from layerprof.report.facade import Report
    from layerprof.walk.inputs import TensorSpec

__all__ = ["input_shapes", "report_summary", "report_title"]


def input_shapes(report: Report, *, dtypes: bool = False) -> list[str]:
    """``["1x3x224x224", "mask=1x224x224"]``: the positional inputs' shapes, then the keyword ones
    named; inputs that were not tensors are left out. ``dtypes=True`` follows each shape with its dtype
    when that is not float32 (``"ids=8x128 int64"``), as the title line does."""
    if report.inputs is None:
        return []

    def text(spec: TensorSpec) -> str:
        size = shape(spec.shape)
        return size if not dtypes or spec.dtype == torch.float32 else f"{size} {dtype_name(spec.dtype)}"

    shapes = [text(s) for s in report.inputs.positional if s is not None]
    return [*shapes, *(f"{k}={text(s)}" for k, s in report.inputs.keyword if s is not None)]


def report_title(report: Report, *, brand: bool = True, shapes: bool = True) -> str:
    """``layerprof: ResNet (1x3x224x224)``; ``shapes=False``: ``layerprof: ResNet``; ``brand=False``:
    ``ResNet (1x3x224x224)``, ``model`` standing in for a report without a model name. A ``watch()``
    sample's branded title ends with its step: ``layerprof: ResNet (16x3x64x64), step 100``."""
    listed = ", ".join(input_shapes(report, dtypes=True))
    if not brand:
        name = report.model_name or "model"
        return f"{name} ({listed})" if shapes and listed else name
    # The table has always kept its parentheses, empty for a report without inputs.
    heading = f"layerprof: {report.model_name}"
    heading = f"{heading} ({listed})" if shapes else heading
    return heading if report.step is None else f"{heading}, step {report.step}"


def report_summary(report: Report) -> str:
    """``<layerprof Report: ResNet (1x3x224x224), 68 rows, 8.22G FLOPs, 4.09G MACs, 25.6M params,
    204.66 MiB, not timed, targets t4, jetson-orin-nano-8gb>``: short whatever the model's size."""
    backward = sum(r.phase == "backward" for r in report.layers)
    forward = len(report.layers) - backward
    rows = f"{forward} forward + {backward} backward rows" if backward else f"{forward} rows"
    total = report.total
    timed = "not timed" if total.time_ms is None else f"timed {duration(total.time_ms)}"
    if report.world_size > 1:
        timed += f" (median of {report.world_size} ranks)"
    targets = ", ".join(t.name for t in report.targets) or "none"
    return (
        f"<layerprof Report: {report_title(report, brand=False)}, {rows}, {si(total.flops)} FLOPs, "
        f"{si(total.macs)} MACs, {si(total.params)} params, {binary_bytes(total.bytes_total)}, {timed}, "
        f"targets {targets}>"
    )
