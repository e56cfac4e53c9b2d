"""The Report: rows, totals, unsupported ops, targets; and the ways to read it (table, files, plot).

Rendering lives in :mod:`layerprof.report.render`, :mod:`~layerprof.report.export` and
:mod:`~layerprof.report.plot`; those
modules import only records, devices and roofline, so this facade can offer them as methods.
"""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from layerprof.core.records import LayerRow, Phase
from layerprof.report import export, frame, render, titles
from layerprof.walk.inputs import InputSpec
from layerprof.walk.params import ParameterCounts

if TYPE_CHECKING:
    from torch import nn

    from layerprof.hardware.specs import DeviceSpec
    from layerprof.report.crosscheck import Crosscheck
    from layerprof.report.memory import MemoryReport


@dataclass(frozen=True, slots=True)
class RankTimes:
    """Every rank's times in a report gathered from a distributed run (:mod:`layerprof.distributed.gather`).

    ``rows_ms`` maps a row's ``(phase, name)`` to its time on each rank, in rank order (None where
    that rank has no time for it); ``total_ms`` is each rank's end-to-end time. A row is a straggler
    when its slowest rank takes more than ``straggler_threshold`` times the median over the ranks.
    """

    world_size: int
    rows_ms: Mapping[tuple[Phase, str], tuple[float | None, ...]]
    total_ms: tuple[float | None, ...]
    straggler_threshold: float = 1.2

    def times(self, phase: Phase, name: str) -> tuple[float | None, ...] | None:
        """The row's time on each rank; None when no rank timed a row of that name."""
        return self.rows_ms.get((phase, name))


@dataclass(frozen=True, slots=True)
class AllreduceTime:
    """DDP's gradient all-reduce during one timed backward (:mod:`layerprof.distributed.gather`).

    ``time_ms`` is the time some bucket's all-reduce was in flight (the union of the buckets'
    intervals, from the comm hook's call to the future's completion), ``hidden_ms`` the part of it
    before the backward's last node ended: the communication the backward hides. ``payload_bytes``
    is the buckets' gradient bytes, summed.
    """

    buckets: int
    payload_bytes: int
    time_ms: float
    hidden_ms: float

    @property
    def hidden_fraction(self) -> float:
        return self.hidden_ms / self.time_ms if self.time_ms > 0 else 1.0


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
    #: Every rank's times, when the report was gathered from a distributed run (row times are then
    #: medians over the ranks); None for one process.
    ranks: RankTimes | None = None
    #: DDP's gradient all-reduce in the timed backward (a ``(ddp)/allreduce`` row carries it too).
    allreduce: AllreduceTime | None = None
    #: The training step a ``watch()`` sample measured (0-based: the index of its counted forward);
    #: None for analyze and profile.
    step: int | None = None
    #: Peak memory and its breakdown on the first target (:mod:`layerprof.report.memory`); None when
    #: the run was not counted with memory tracking.
    memory: MemoryReport | None = None
    #: The same per target: a GPU target rounds as the CUDA caching allocator does.
    memory_by_target: Mapping[str, MemoryReport] = field(default_factory=lambda: MappingProxyType({}))
    #: Total, trainable and frozen parameters, and those of modules that never ran (None when unknown).
    parameters: ParameterCounts | None = None
    _model: weakref.ReferenceType[nn.Module] | None = field(default=None, repr=False, compare=False)

    @property
    def world_size(self) -> int:
        """How many ranks the report gathers (1 for a report of one process)."""
        return 1 if self.ranks is None else self.ranks.world_size

    @property
    def forward(self) -> tuple[LayerRow, ...]:
        return tuple(r for r in self.layers if r.phase == "forward")

    @property
    def backward(self) -> tuple[LayerRow, ...]:
        return tuple(r for r in self.layers if r.phase == "backward")

    def row(self, name: str, phase: str = "forward") -> LayerRow:
        """The row called ``name`` (a KeyError naming the closest row names when there is none)."""
        for row in self.layers:
            if row.name == name and row.phase == phase:
                return row
        names = [r.name for r in self.layers if r.phase == phase]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6) if isinstance(name, str) else []
        if not names:
            hint = f"the report has no {phase} rows"
        elif close:
            hint = f"the closest: {', '.join(repr(n) for n in close)}"
        else:
            hint = f"rows start with {', '.join(names[:8])}"
        others = {r.phase for r in self.layers if r.name == name}
        if others:
            hint += f" (there is a {others.pop()} row of that name)"
        raise KeyError(f"no {phase} row named {name!r}; {hint}")

    def __str__(self) -> str:
        """The table, as ``print(report)`` shows it."""
        return render.table(self)

    def __repr__(self) -> str:
        """One short line: the model, its inputs, rows, totals and targets."""
        return titles.report_summary(self)

    def _repr_html_(self) -> str:
        """The table as HTML, for Jupyter."""
        return render.notebook_html(self)

    def to_pandas(self) -> Any:
        """The rows as a ``pandas.DataFrame`` (pandas is optional: InvalidArgumentError without it)."""
        return frame.to_pandas(self)

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

    def to_trace(self, path: str | Path | None = None) -> str:
        """The timed rows as Chrome trace-event JSON (Perfetto, chrome://tracing), written to ``path``.

        The timeline is synthesised from the rows' median times, laid back to back in execution
        order (:mod:`layerprof.report.trace`); an untimed report raises InvalidArgumentError.
        """
        from layerprof.report import trace

        return trace.to_trace(self, path)

    def plot_roofline(self, path: str | Path, *, label_top: int = 8) -> Path:
        from layerprof.report import plot  # matplotlib is an optional extra

        return plot.plot_roofline(self, path, label_top=label_top)

    def crosscheck(
        self, model: nn.Module | None = None, inputs: Any = None, kwargs: Mapping[str, Any] | None = None
    ) -> Crosscheck:
        """Count the same model with fvcore and list the layers where the two disagree. ``inputs`` and
        ``kwargs`` take analyze's forms (a dict ``inputs`` is keyword inputs); by default inputs like
        the report's are made, keyword ones too."""
        from layerprof.report import crosscheck

        if model is None:
            model = self._model() if self._model is not None else None
        return crosscheck.crosscheck(self, model, inputs, kwargs)
