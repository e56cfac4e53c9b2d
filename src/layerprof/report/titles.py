"""The one line that says which model a report is about and on which inputs.

The table's first line, the HTML page's heading and the roofline picture's title all read it here:
``layerprof: ResNet (1x3x224x224)``. The page's heading leaves the shapes out (its inputs line lists
them with their dtypes); the picture's title leaves the ``layerprof:`` brand out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from layerprof.core.units import shape

if TYPE_CHECKING:
    from layerprof.report.facade import Report

__all__ = ["input_shapes", "report_title"]


def input_shapes(report: Report) -> list[str]:
    """``["1x3x224x224", "mask=1x224x224"]``: the positional inputs' shapes, then the keyword ones
    named; inputs that were not tensors are left out."""
    if report.inputs is None:
        return []
    shapes = [shape(s.shape) for s in report.inputs.positional if s is not None]
    return [*shapes, *(f"{k}={shape(s.shape)}" for k, s in report.inputs.keyword if s is not None)]


def report_title(report: Report, *, brand: bool = True, shapes: bool = True) -> str:
    """``layerprof: ResNet (1x3x224x224)``; ``shapes=False``: ``layerprof: ResNet``; ``brand=False``:
    ``ResNet (1x3x224x224)``, ``model`` standing in for a report without a model name."""
    listed = ", ".join(input_shapes(report))
    if not brand:
        name = report.model_name or "model"
        return f"{name} ({listed})" if shapes and listed else name
    # The table has always kept its parentheses, empty for a report without inputs.
    heading = f"layerprof: {report.model_name}"
    return f"{heading} ({listed})" if shapes else heading
