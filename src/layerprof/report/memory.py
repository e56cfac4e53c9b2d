"""``report.memory``: the peak memory of a counted run, what it held at the peak, and whether it fits.

Counted on meta by :mod:`layerprof.walk.memory` (storages created by an op, freed when the last
reference dies). One :class:`MemoryReport` per target: a GPU target follows the CUDA caching
allocator's rule (every allocation rounded up to 512 bytes, and the optimizer step counted as torch's
``foreach`` implementation, its default on CUDA), any other target and no target count exact bytes and
the for-loop step. ``report.memory`` is the first target's; ``report.memory_by_target`` has them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING

from layerprof.core.units import binary_bytes as format_bytes
from layerprof.errors import InvalidArgumentError
from layerprof.walk.memory import Category, PhasePeak, Rule

if TYPE_CHECKING:
    from layerprof.hardware.specs import DeviceSpec
    from layerprof.walk.memory_run import FootprintRun

__all__ = ["MemoryReport", "MemorySnapshot", "memory_reports", "rule_of"]


@dataclass(frozen=True, slots=True)
class MemorySnapshot:
    """The memory held at one moment (a phase's peak): the categories sum to ``peak_bytes``.

    ``activations`` are the tensors the forward made that are still alive (in a training step: saved
    for the backward), ``temporary`` what the backward or the optimizer step made and has not freed
    yet (activation gradients, the optimizer's scratch), ``inputs`` the model's inputs.
    """

    phase: str
    peak_bytes: int
    parameters: int = 0
    buffers: int = 0
    inputs: int = 0
    activations: int = 0
    gradients: int = 0
    optimizer_state: int = 0
    temporary: int = 0

    @classmethod
    def of(cls, peak: PhasePeak) -> MemorySnapshot:
        return cls(
            phase=peak.phase,
            peak_bytes=peak.peak_bytes,
            parameters=peak.bytes_of(Category.PARAMETERS),
            buffers=peak.bytes_of(Category.BUFFERS),
            inputs=peak.bytes_of(Category.INPUTS),
            activations=peak.bytes_of(Category.ACTIVATIONS),
            gradients=peak.bytes_of(Category.GRADIENTS),
            optimizer_state=peak.bytes_of(Category.OPTIMIZER_STATE),
            temporary=peak.bytes_of(Category.TEMPORARY),
        )


@dataclass(frozen=True, slots=True)
class MemoryReport:
    """Peak memory of a run on one target, its breakdown at the peak, and each phase's own peak.

    ``peak_bytes`` and the category fields are those of the highest phase (``peak_phase``);
    ``phases`` maps each phase that ran (``"forward"``, ``"backward"``, ``"optimizer_step"``) to its
    peak. ``allocator`` is ``"cuda"`` (512-byte blocks) or ``"exact"``. ``capacity_bytes`` is the
    target's ``memory_bytes`` (None when the target has no memory figure, or there is no target).
    """

    target: str | None
    allocator: Rule
    peak_bytes: int
    peak_phase: str
    parameters: int
    buffers: int
    inputs: int
    activations: int
    gradients: int
    optimizer_state: int
    temporary: int
    phases: Mapping[str, MemorySnapshot] = field(default_factory=lambda: MappingProxyType({}))
    capacity_bytes: int | None = None
    #: Measured on a CUDA device by ``profile()`` (``torch.cuda.max_memory_allocated``), else None.
    measured_peak_bytes: int | None = None
    #: The same per leaf row: the highest memory allocated while its calls ran.
    measured_row_peak_bytes: Mapping[str, int] | None = None

    def fits(self) -> bool:
        """Whether the peak fits in the target's memory (InvalidArgumentError naming a target
        without a memory figure)."""
        if self.capacity_bytes is None:
            where = f"target {self.target!r}" if self.target is not None else "a report without a target"
            raise InvalidArgumentError(
                f"{where} has no memory capacity (DeviceSpec.memory_bytes is None): cannot say whether "
                "the peak fits; give a target with memory_bytes"
            )
        return self.peak_bytes <= self.capacity_bytes

    @property
    def headroom_bytes(self) -> int | None:
        """Capacity minus peak (negative when it does not fit); None without a capacity."""
        return None if self.capacity_bytes is None else self.capacity_bytes - self.peak_bytes

    def summary(self) -> str:
        """One line: ``peak 1.2 GiB of 16.0 GiB on t4 (optimizer_step): parameters 44.6 MiB, ...``."""
        of = f" of {format_bytes(self.capacity_bytes)}" if self.capacity_bytes is not None else ""
        on = f" on {self.target}" if self.target is not None else ""
        parts = [
            f"{name} {format_bytes(value)}"
            for name, value in (
                ("parameters", self.parameters),
                ("buffers", self.buffers),
                ("inputs", self.inputs),
                ("activations", self.activations),
                ("gradients", self.gradients),
                ("optimizer state", self.optimizer_state),
                ("temporary", self.temporary),
            )
            if value
        ]
        verdict = "" if self.capacity_bytes is None else ("; fits" if self.fits() else "; DOES NOT FIT")
        text = (
            f"peak {format_bytes(self.peak_bytes)}{of}{on} ({self.peak_phase}): {', '.join(parts)}{verdict}"
        )
        if self.measured_peak_bytes is not None:
            text += f"; measured {format_bytes(self.measured_peak_bytes)}"
        return text


def rule_of(target: DeviceSpec | None) -> Rule:
    """The allocator rule a target's memory follows: the CUDA caching allocator's on a GPU."""
    return "cuda" if target is not None and target.kind == "gpu" else "exact"


def _report(run: FootprintRun, rule: Rule, target: DeviceSpec | None) -> MemoryReport | None:
    peaks = run.peaks(rule)
    if not peaks:
        return None
    phases: dict[str, MemorySnapshot] = {phase: MemorySnapshot.of(peak) for phase, peak in peaks.items()}
    top = max(phases.values(), key=lambda s: s.peak_bytes)
    return MemoryReport(
        target=None if target is None else target.name,
        allocator=rule,
        peak_bytes=top.peak_bytes,
        peak_phase=top.phase,
        parameters=top.parameters,
        buffers=top.buffers,
        inputs=top.inputs,
        activations=top.activations,
        gradients=top.gradients,
        optimizer_state=top.optimizer_state,
        temporary=top.temporary,
        phases=MappingProxyType(phases),
        capacity_bytes=None if target is None else target.memory_bytes,
    )


def memory_reports(
    run: FootprintRun, targets: Sequence[DeviceSpec]
) -> tuple[MemoryReport | None, dict[str, MemoryReport]]:
    """``report.memory`` (the first target's, or exact bytes without a target) and one per target."""
    by_target = {t.name: r for t in targets if (r := _report(run, rule_of(t), t)) is not None}
    first = by_target.get(targets[0].name) if targets else _report(run, "exact", None)
    return first, by_target
