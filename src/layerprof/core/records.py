"""Frozen result records. Units are in the field names; nothing here computes or renders.

A :class:`LayerRow` is one row of a report: a leaf module, a container's own functional ops
(``layer1.0/add``), or the totals. ``roofline`` maps each target's name to its :class:`Verdict`;
the ``bound``/``roofline_time_ms``/... properties read the first target's verdict.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

#: A row's phase; ``"step"`` is only the totals of a report with forward and backward rows (the sum of both).
Phase = Literal["forward", "backward", "step"]
#: ``"compute"``, ``"memory(<level>)"`` (``memory(DRAM)``, ``memory(L2)``, ``memory(LLC)``: the level
#: whose traffic sets the roofline time), ``"overhead"`` (the per-kernel launch floor), or plain
#: ``"memory"`` for the DRAM-only verdict of ``cache_model=False``.
Bound = str
Unit = Literal["matrix", "vector"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """Where one row stands on one target's roofline."""

    target: str
    bound: Bound
    unit: Unit
    ridge_point: float
    roofline_time_ms: float
    achieved_flops_per_s: float | None = None
    roofline_efficiency: float | None = None
    flags: tuple[str, ...] = ()
    #: Where the row's bytes are served from on this target: level name (``"DRAM"``, ``"L2"``) ->
    #: bytes; the values sum to the row's bytes. Empty for a verdict without a cache model.
    bytes_by_level: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    #: Kernels (aten ops that launch one) the row runs; each costs at least the launch floor.
    kernels: int = 0

    @property
    def memory_bound(self) -> bool:
        """Bound by memory traffic at any level (``"memory"`` or ``"memory(<level>)"``)."""
        return self.bound.startswith("memory")


@dataclass(frozen=True, slots=True)
class Traffic:
    """Where a row's bytes can come from, whatever the target: the reuse model's reach of each of its
    accesses (:mod:`layerprof.roofline.reuse`), and the kernels it launches.

    ``reach_bytes`` holds one ``(reach, bytes)`` pair per access: it is served from the innermost cache
    level of at least its reach in capacity, else from DRAM. Their bytes sum to the row's
    ``bytes_read + bytes_written``."""

    reach_bytes: tuple[tuple[int, int], ...] = ()
    kernels: int = 0


@dataclass(frozen=True, slots=True)
class LayerRow:
    """One row of a report (or the totals row)."""

    name: str
    kind: str
    phase: Phase = "forward"
    depth: int = 0
    calls: int = 1
    kernel_size: tuple[int, ...] | None = None
    input_shapes: tuple[tuple[int, ...], ...] = ()
    output_shapes: tuple[tuple[int, ...], ...] = ()
    #: The calls did not all have the first call's input and output shapes (which are the ones kept).
    shapes_vary: bool = False
    dtype: str | None = None
    params: int = 0
    flops: int = 0
    matrix_flops: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    #: Memory the row's calls allocated and still held when they returned (their outputs and what
    #: autograd saved), exact bytes; 0 for backward rows and rows not counted with memory.
    activation_bytes: int = 0
    time_ms: float | None = None
    time_iqr_ms: float | None = None
    roofline: Mapping[str, Verdict] = field(default_factory=lambda: MappingProxyType({}))
    #: The row's accesses as the cache model sees them (None: not recorded, ``cache_model=False``, or a
    #: row standing for others): what its verdicts' ``bytes_by_level`` and ``kernels`` come from.
    traffic: Traffic | None = field(default=None, compare=False, repr=False)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the matrix work: every matrix FLOP is half of one MAC."""
        return self.matrix_flops // 2

    @property
    def intensity(self) -> float:
        """Operational intensity, FLOPs per byte moved (0.0 for a row that moves nothing)."""
        return intensity_of(self.flops, self.bytes_read, self.bytes_written)

    @property
    def vector_flops(self) -> int:
        return self.flops - self.matrix_flops

    @property
    def bytes_total(self) -> int:
        return self.bytes_read + self.bytes_written

    def _first(self) -> Verdict | None:
        return next(iter(self.roofline.values()), None)

    @property
    def bound(self) -> Bound | None:
        verdict = self._first()
        return None if verdict is None else verdict.bound

    @property
    def roofline_time_ms(self) -> float | None:
        verdict = self._first()
        return None if verdict is None else verdict.roofline_time_ms

    @property
    def achieved_flops_per_s(self) -> float | None:
        verdict = self._first()
        return None if verdict is None else verdict.achieved_flops_per_s

    @property
    def roofline_efficiency(self) -> float | None:
        verdict = self._first()
        return None if verdict is None else verdict.roofline_efficiency


#: Every row field in the order reports export them (JSON keys, CSV columns): the stored fields and
#: the derived ``macs`` and ``intensity``, which follow from them and so can never go stale.
ROW_FIELDS: tuple[str, ...] = (
    "name", "kind", "phase", "depth", "calls", "kernel_size", "input_shapes", "output_shapes",
    "shapes_vary", "dtype", "params", "flops", "matrix_flops", "macs", "bytes_read", "bytes_written",
    "activation_bytes", "intensity", "time_ms", "time_iqr_ms", "roofline",
)  # fmt: skip


def intensity_of(flops: int, bytes_read: int, bytes_written: int) -> float:
    """FLOPs per byte moved; 0.0 for a row that moves no bytes."""
    moved = bytes_read + bytes_written
    return flops / moved if moved else 0.0
