"""Kernel times, the optional second opinion on CUDA: one forward under ``torch.profiler`` with a
``record_function`` range per module, each kernel's duration charged to the innermost range.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from layerprof.core import rownames
from layerprof.core.records import LayerRow
from layerprof.hardware.specs import DeviceSpec
from layerprof.timing.rows import glue_shares
from layerprof.walk.hooks import remove_all

__all__ = ["RANGE_PREFIX", "ProfilerEvent", "RangeHooks", "attribute_kernels", "kernel_times"]

logger = logging.getLogger(__name__)

#: Prefix of the ``record_function`` ranges opened around each module by :class:`RangeHooks`.
RANGE_PREFIX = "layerprof::"


class RangeHooks:
    """A ``record_function`` range named ``RANGE_PREFIX + module name`` around every module's forward."""

    def __init__(self, root: nn.Module, *, root_name: str = rownames.ROOT) -> None:
        self._named = [(name or root_name, module) for name, module in root.named_modules()]
        self._open: list[AbstractContextManager[Any]] = []
        self._handles: list[RemovableHandle] = []

    def attach(self) -> None:
        try:
            for name, module in self._named:
                self._handles.append(module.register_forward_pre_hook(self._enter_hook(RANGE_PREFIX + name)))
                self._handles.append(module.register_forward_hook(self._leave, prepend=True))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        try:
            remove_all(self._handles)
        finally:
            while self._open:  # a forward that raised left ranges open
                self._open.pop().__exit__(None, None, None)

    def _enter_hook(self, range_name: str) -> Callable[..., None]:
        def enter(_module: nn.Module, _args: Any) -> None:
            scope = torch.autograd.profiler.record_function(range_name)
            scope.__enter__()  # type: ignore[no-untyped-call]
            self._open.append(scope)

        return enter

    def _leave(self, _module: nn.Module, _args: Any, _output: Any) -> None:
        if self._open:
            self._open.pop().__exit__(None, None, None)


class _Kernel(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def duration(self) -> float: ...  # microseconds


class ProfilerEvent(Protocol):
    """The parts of ``torch.autograd.profiler_util.FunctionEvent`` that :func:`attribute_kernels` reads."""

    @property
    def name(self) -> str: ...

    @property
    def kernels(self) -> Sequence[_Kernel]: ...

    @property
    def cpu_parent(self) -> ProfilerEvent | None: ...


def _op_key(event_name: str) -> str:
    # The counter names glue rows after the op packet without its in-place underscore: aten::add_ -> add.
    name = event_name.removeprefix("aten::")
    return name.rstrip("_") or name


def attribute_kernels(
    events: Iterable[ProfilerEvent], rows: Sequence[LayerRow], targets: Sequence[DeviceSpec]
) -> dict[str, float]:
    """Row name -> milliseconds of device kernels it launched, from one profiled forward.

    Each kernel goes to the innermost range around the CPU event that launched it. A module row takes
    its range's kernels; in a container's range, a kernel goes to the glue row named after an aten op
    on its launch path (``layer1.0/add`` for ``aten::add_``), and kernels no glue row claims are split
    among the container's glue rows like its self time. Kernels outside every range are logged.
    """
    forward_rows = [row for row in rows if row.phase == "forward"]
    names = {row.name for row in forward_rows}
    glue: dict[str, list[LayerRow]] = {}
    for row in forward_rows:
        container, is_glue = rownames.split(row.name)
        if is_glue:
            glue.setdefault(container, []).append(row)
    kernel_us: dict[str, float] = defaultdict(float)
    unclaimed_us: dict[str, float] = defaultdict(float)
    outside_us = 0.0
    for event in events:
        kernels = getattr(event, "kernels", None)
        if not kernels or event.name.startswith(RANGE_PREFIX):
            continue  # device-side copies of a range's annotation are not kernels
        duration_us = float(sum(k.duration for k in kernels if not k.name.startswith(RANGE_PREFIX)))
        path = [event.name]
        owner: str | None = None
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith(RANGE_PREFIX):
                owner = parent.name.removeprefix(RANGE_PREFIX)
                break
            path.append(parent.name)
            parent = parent.cpu_parent
        if owner is None:
            outside_us += duration_us
        elif owner in names:
            kernel_us[owner] += duration_us
        elif owner in glue:
            claimed = next(
                (
                    rownames.glue(owner, _op_key(op))
                    for op in reversed(path)
                    if rownames.glue(owner, _op_key(op)) in names
                ),
                None,
            )
            if claimed is None:
                unclaimed_us[owner] += duration_us
            else:
                kernel_us[claimed] += duration_us
        else:
            outside_us += duration_us
    for owner, duration_us in unclaimed_us.items():
        for row, share in zip(glue[owner], glue_shares(glue[owner], targets), strict=True):
            kernel_us[row.name] += share * duration_us
    if outside_us:
        logger.info("%.1f us of kernels ran outside every row's range", outside_us)
    return {row.name: kernel_us.get(row.name, 0.0) / 1e3 for row in forward_rows}


def kernel_times(
    forward: Callable[[], object],
    root: nn.Module,
    rows: Sequence[LayerRow],
    targets: Sequence[DeviceSpec],
    *,
    device: torch.device,
    root_name: str = rownames.ROOT,
) -> dict[str, float]:
    """One ``forward`` of ``root`` under ``torch.profiler`` (CPU + CUDA activity); row -> kernel ms."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    ranges = RangeHooks(root, root_name=root_name)
    with torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as profiler:
        ranges.attach()
        try:
            forward()
        finally:
            ranges.close()
        torch.cuda.synchronize(device)
    return attribute_kernels(profiler.events(), rows, targets)
