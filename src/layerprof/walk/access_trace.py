"""The access trace: which storages each priced op reads and writes, in execution order, for the cache
model (:mod:`layerprof.roofline.reuse`).

The collector hands each priced op here with the row it is charged to (its accumulator) and its
price. An access is ``(storage, bytes)``: the storage is a serial number given to each untyped
storage while it lives (a view shares its base's; on meta, where every ``data_ptr`` is 0, the
storage object itself is the identity, kept by a weak reference so that nothing stays alive), the
bytes those pricing counted for the tensor (:func:`~layerprof.walk.pricing.add_bytes`: each distinct
tensor read, then each output written). The accesses of an op always sum to its priced bytes: where
they would not (a formula that writes fewer outputs than the op returns), the op's bytes are charged
as one access of the difference, so that the levels' bytes add up to the row's bytes, always.

When the model has run, :meth:`AccessTrace.finish` takes each access's steady-state reach and leaves
``(reach, bytes)`` pairs on the accumulators, from which the rows' :class:`~layerprof.core.records.Traffic`
is made.
"""

from __future__ import annotations

import itertools
import logging
import weakref
from collections.abc import Mapping
from typing import Any

import torch

from layerprof.roofline.reuse import reaches
from layerprof.walk.ledger import Acc
from layerprof.walk.pricing import OpCost, OpInfo, footprint_elements

__all__ = ["AccessTrace", "StorageIds"]

logger = logging.getLogger(__name__)


class StorageIds:
    """A serial number per live untyped storage: views share it; a storage freed and another made at
    the same address get different ones (the weak reference to the first is dead by then)."""

    def __init__(self) -> None:
        self._known: dict[int, tuple[weakref.ReferenceType[Any], int]] = {}
        self._serials = itertools.count(1)

    def of(self, tensor: torch.Tensor) -> int:
        try:
            storage = tensor.untyped_storage()
            key = storage._cdata
        except Exception:  # no storage of its own (a sparse or wrapper tensor): never shared
            return next(self._serials)
        known = self._known.get(key)
        if known is not None and known[0]() is storage:
            return known[1]
        serial = next(self._serials)
        self._known[key] = (weakref.ref(storage), serial)
        return serial

    def fresh(self) -> int:
        """A serial no storage has: bytes the trace cannot place on a tensor."""
        return next(self._serials)


def _nbytes(tensor: torch.Tensor) -> int:
    elements = tensor.numel() if tensor.is_contiguous() else footprint_elements(tensor)
    return elements * tensor.element_size()


class AccessTrace:
    """Accesses of the priced ops in execution order, each with the accumulator of its row."""

    def __init__(self) -> None:
        self.ids = StorageIds()
        self.storages: list[int] = []
        self.sizes: list[int] = []
        self.writes: list[bool] = []
        self.owners: list[Acc] = []

    def __len__(self) -> int:
        return len(self.storages)

    def _add(self, acc: Acc, storage: int, nbytes: int, write: bool) -> None:
        if nbytes > 0:
            self.storages.append(storage)
            self.sizes.append(nbytes)
            self.writes.append(write)
            self.owners.append(acc)

    def _reads(self, info: OpInfo, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[tuple[int, int]]:
        skip = info.write_only_destination
        values: list[Any] = list(args if skip is None else args[:skip] + args[skip + 1 :])
        if kwargs:
            values += [v for k, v in kwargs.items() if k not in info.out_args]
        found: list[tuple[int, int]] = []
        _collect(values, set(), found, self.ids)
        return found

    def record(
        self,
        acc: Acc,
        info: OpInfo,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
        out: Any,
        cost: OpCost,
    ) -> None:
        """One priced op's reads, then its writes, charged to ``acc``'s row."""
        if acc.reach is None:
            acc.reach = []  # traced, even when it moves no byte
        reads = self._reads(info, args, kwargs)
        self._charge(acc, reads, cost.bytes_read, False, info)
        if isinstance(out, torch.Tensor):
            writes = [(self.ids.of(out), out.numel() * out.element_size())]
        else:
            writes = []
            _collect((out,), set(), writes, self.ids)
        if sum(n for _, n in writes) != cost.bytes_written and info.write_only_destination is not None:
            destination = (
                args[info.write_only_destination] if info.write_only_destination < len(args) else None
            )
            if isinstance(destination, torch.Tensor):  # copy_(dst, src): dst written, not read
                writes = [(self.ids.of(destination), _nbytes(destination))]
        self._charge(acc, writes, cost.bytes_written, True, info)

    def _charge(self, acc: Acc, found: list[tuple[int, int]], priced: int, write: bool, info: OpInfo) -> None:
        if sum(n for _, n in found) == priced:
            for storage, nbytes in found:
                self._add(acc, storage, nbytes, write)
            return
        # The formula priced other tensors than the op's arguments and outputs (fewer outputs, an
        # argument written in place): keep the accesses that fit, the rest as bytes of no storage.
        logger.debug("trace of %s: %s bytes do not match the priced %d", info.op, found, priced)
        left = priced
        for storage, nbytes in found:
            if nbytes <= left:
                self._add(acc, storage, nbytes, write)
                left -= nbytes
        self._add(acc, self.ids.fresh(), left, write)

    def finish(self) -> None:
        """Give every access its steady-state reach: ``(reach, bytes)`` onto its accumulator."""
        storages, self.storages = self.storages, []
        sizes, self.sizes = self.sizes, []
        writes, self.writes = self.writes, []
        owners, self.owners = self.owners, []  # the accumulators are the rows' now
        if not storages:
            return
        for acc, reach, nbytes in zip(owners, reaches(storages, sizes, writes), sizes, strict=True):
            if acc.reach is not None:
                acc.reach.append((reach, nbytes))


def _collect(values: Any, seen: set[int], found: list[tuple[int, int]], ids: StorageIds) -> None:
    """(storage, bytes) of each distinct tensor in ``values`` and lists among them, as pricing counts."""
    for value in values:
        if isinstance(value, torch.Tensor):
            if id(value) not in seen:
                seen.add(id(value))
                found.append((ids.of(value), _nbytes(value)))
        elif isinstance(value, (list, tuple)):
            _collect(value, seen, found, ids)
