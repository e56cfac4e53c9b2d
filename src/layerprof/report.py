"""The Report: rows, totals, unsupported ops, targets; and the ways to read it (table, files, plot).

Rendering lives in :mod:`layerprof.render`, :mod:`layerprof.export` and :mod:`layerprof.plot`; those
modules import only records, devices and roofline, so this facade can offer them as methods.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from layerprof import export, render
from layerprof.inputs import InputSpec
from layerprof.records import LayerRow

if TYPE_CHECKING:
    from torch import nn

    from layerprof.crosscheck import Crosscheck
    from layerprof.devices import DeviceSpec


@dataclass(frozen=True, slots=True)
class Report:
    """What layerprof found about one model and one set of inputs."""

    layers: tuple[LayerRow, ...]
    total: LayerRow
    unsupported: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    targets: tuple[DeviceSpec, ...] = ()
    coverage: float | None = None
    model_name: str = ""
    inputs: InputSpec | None = None
    module_kinds: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    timed_on: frozenset[str] = frozenset()  # targets describing the device the times were taken on
    #: Row name -> milliseconds of CUDA kernels it launched (``profile(..., kernel_time=True)``), else None.
    kernel_time_ms: Mapping[str, float] | None = None
    _model: weakref.ReferenceType[nn.Module] | None = field(default=None, repr=False, compare=False)

    @property
    def forward(self) -> tuple[LayerRow, ...]:
        return tuple(r for r in self.layers if r.phase == "forward")

    @property
    def backward(self) -> tuple[LayerRow, ...]:
        return tuple(r for r in self.layers if r.phase == "backward")

    def row(self, name: str, phase: str = "forward") -> LayerRow:
        """The row called ``name`` (KeyError listing a few names when there is none)."""
        for row in self.layers:
            if row.name == name and row.phase == phase:
                return row
        known = ", ".join(r.name for r in self.layers[:8])
        raise KeyError(f"no {phase} row named {name!r}; rows start with {known}")

    def table(
        self,
        depth: int | None = None,
        sort: str | None = None,
        top: int | None = None,
        fmt: str = "simple",
    ) -> str:
        return render.table(self, depth=depth, sort=sort, top=top, fmt=fmt)

    def to_dict(self) -> dict[str, Any]:
        return export.to_dict(self)

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 2) -> str:
        return export.to_json(self, path, indent=indent)

    def to_csv(self, path: str | Path | None = None) -> str:
        return export.to_csv(self, path)

    def plot_roofline(self, path: str | Path, *, label_top: int = 8) -> Path:
        from layerprof import plot  # matplotlib is an optional extra

        return plot.plot_roofline(self, path, label_top=label_top)

    def crosscheck(self, model: nn.Module | None = None, inputs: Any = None) -> Crosscheck:
        """Count the same model with fvcore and list the layers where the two disagree."""
        from layerprof import crosscheck

        if model is None:
            model = self._model() if self._model is not None else None
        return crosscheck.crosscheck(self, model, inputs)
