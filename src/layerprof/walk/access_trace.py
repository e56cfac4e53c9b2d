"""The access trace: which storages each priced op reads and writes, in execution order, for the cache
model (:mod:`layerprof.roofline.reuse`).

The collector hands each priced op here with the row it is charged to (its accumulator) and its
price. An access is ``(storage, bytes)``: the storage is a serial number per storage
(:class:`StorageIds`: keyed by the address of the tensor's StorageImpl, which a view shares with
its base and which, unlike ``data_ptr``, is not 0 on meta; an output an op makes gets a new serial,
so that a storage the allocator put where a dead one was is new data), the bytes those pricing
counted for the tensor (:func:`~layerprof.walk.pricing.add_bytes`: each distinct
tensor read, then each output written). The accesses of an op always sum to its priced bytes: where
they would not (a formula that writes fewer outputs than the op returns), the op's bytes are charged
as one access of the difference, so that the levels' bytes add up to the row's bytes, always.

When the model has run, :meth:`AccessTrace.finish` takes each access's steady-state reach and leaves
``(reach, bytes)`` pairs on the accumulators, from which the rows' :class:`~layerprof.core.records.Traffic`
is made.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch._C import _storage_address  # type: ignore[attr-defined]  # the StorageImpl's address

from layerprof.roofline.reuse import reaches
from layerprof.walk.ledger import Acc
from layerprof.walk.pricing import OpCost, OpInfo, tensor_bytes

__all__ = ["AccessTrace", "StorageIds"]

logger = logging.getLogger(__name__)


class StorageIds:
    """A serial number per storage: views share their base's (the StorageImpl's address, read without
    making a Python storage object, which would cost more than the rest of the trace). A storage an op
    has just made gets a new serial even where the allocator reused the address of one that died."""

    def __init__(self) -> None:
        self._serials: dict[int, int] = {}
        self._next = itertools.count(1)

    def of(self, tensor: torch.Tensor) -> int:
        """The serial of the storage ``tensor`` reads from or writes into."""
        try:
            address = _storage_address(tensor)
        except Exception:  # no storage of its own (a sparse or wrapper tensor): never shared
            return next(self._next)
        serial = self._serials.get(address)
        if serial is None:
            serial = self._serials[address] = next(self._next)
        return serial

    def made(self, tensor: torch.Tensor) -> int:
        """A new serial for the storage of ``tensor``, which an op has just made."""
        serial = next(self._next)
        with contextlib.suppress(Exception):  # no storage of its own: never shared
            self._serials[_storage_address(tensor)] = serial
        return serial

    def fresh(self) -> int:
        """A serial no storage has: bytes the trace cannot place on a tensor."""
        return next(self._next)


class AccessTrace:
    """Accesses of the priced ops in execution order, each with the accumulator of its row."""

    def __init__(self) -> None:
        self.ids = StorageIds()
        self.accesses: list[tuple[int, int, bool]] = []  # (storage, bytes, write)
        self.owners: list[Acc] = []

    def __len__(self) -> int:
        return len(self.accesses)

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
        ids, accesses = self.ids, self.accesses
        skip = info.write_only_destination
        start = len(accesses)
        seen: set[int] = set()
        total = _collect(args if skip is None else args[:skip] + args[skip + 1 :], seen, accesses, ids)
        if kwargs:
            total += _collect([v for k, v in kwargs.items() if k not in info.out_args], seen, accesses, ids)
        if total != cost.bytes_read:
            self._refit(start, cost.bytes_read, False, info)
        if skip is not None and skip < len(args):
            seen.add(id(args[skip]))  # copy_(dst, src) writes into dst: not a storage it makes
        middle = len(accesses)
        if isinstance(out, torch.Tensor):
            written = out.numel() * out.element_size()
            if written:
                accesses.append((ids.of(out) if id(out) in seen else ids.made(out), written, True))
        else:
            written = _collect((out,), set(), accesses, ids, arguments=seen)
        if written != cost.bytes_written:
            self._refit(middle, cost.bytes_written, True, info)
        self.owners.extend([acc] * (len(accesses) - start))

    def _refit(self, start: int, priced: int, write: bool, info: OpInfo) -> None:
        """The accesses from ``start`` on do not sum to the priced bytes: the formula priced other
        tensors than the op's arguments and outputs (fewer outputs, an argument written in place).
        Keep the accesses that fit, the rest as bytes of no storage."""
        found = self.accesses[start:]
        del self.accesses[start:]
        logger.debug("trace of %s: %s do not sum to the priced %d bytes", info.op, found, priced)
        left = priced
        for storage, nbytes, _ in found:
            if nbytes <= left:
                self.accesses.append((storage, nbytes, write))
                left -= nbytes
        if left:
            self.accesses.append((self.ids.fresh(), left, write))

    def finish(self) -> None:
        """Give every access its steady-state reach: ``(reach, bytes)`` onto its accumulator."""
        accesses, self.accesses = self.accesses, []
        owners, self.owners = self.owners, []  # the accumulators are the rows' now
        if not accesses:
            return
        storages, sizes, writes = zip(*accesses, strict=True)
        for acc, pair in zip(owners, zip(reaches(storages, sizes, writes), sizes, strict=True), strict=True):
            acc.reach.append(pair)  # type: ignore[union-attr]  # record() gave every owner a list


def _collect(
    values: Any,
    seen: set[int],
    found: list[tuple[int, int, bool]],
    ids: StorageIds,
    arguments: set[int] | None = None,
) -> int:
    """An access for each distinct tensor in ``values`` and lists among them, as pricing counts them;
    returns their bytes. Reads without ``arguments``; with them, writes of outputs, where an output
    that is none of the op's arguments (an in-place op returns its argument) is a storage it made."""
    total = 0
    for value in values:
        if isinstance(value, torch.Tensor):
            if id(value) not in seen:
                seen.add(id(value))
                nbytes = tensor_bytes(value)
                if nbytes:
                    if arguments is None:
                        found.append((ids.of(value), nbytes, False))
                    else:
                        storage = ids.of(value) if id(value) in arguments else ids.made(value)
                        found.append((storage, nbytes, True))
                    total += nbytes
        elif isinstance(value, (list, tuple)) and value:
            total += _collect(value, seen, found, ids, arguments)
    return total
