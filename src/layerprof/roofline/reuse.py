"""The cache reuse model: LRU stack distance over tensors, in bytes. Pure functions; no torch.

The input is one pass of the model in execution order (a forward, or a training step), as the
accesses its aten ops make: ``(storage, nbytes, write)``, reads of an op before its writes. A storage
is an identity shared by a tensor and its views. The pass is taken to repeat forever, as inference
does in ``profile``, ``watch`` and deployment: the model is the steady state, the trace run twice and
only the second pass charged, so weights that fit stay cached between passes.

**Reuse distance** of an access: the bytes of the *other* distinct storages touched since the
previous access of its storage (LRU stack distance, in bytes; a storage's size is that of its latest
access). Its **reach** is that distance plus its own bytes: the capacity an LRU cache needs to still
hold it.

* A **read** is served from the innermost level whose capacity is at least its reach; a read whose
  data every level has evicted since is served from DRAM.
* A **write** puts the output in the innermost level it fits in. It is charged to the innermost level
  that still holds it when its storage is next touched (the next pass's access when it is the pass's
  last); data evicted before then is written back outwards, to DRAM when it falls out of every level:
  writes go to the level the output fits in and are charged to DRAM on eviction. So a write's reach
  is the reuse distance of the next access of its storage plus the write's own bytes.
* An in-place op reads and writes the same storage: its read is charged like any read, its write
  like any write.

Every access is charged to exactly one level, so an op's bytes by level sum to its bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["DRAM", "Access", "charged_levels", "level_of", "reaches", "split_by_level"]

#: The name of main memory in ``bytes_by_level``: every byte no cache level holds.
DRAM = "DRAM"

#: One access of a trace: (storage identity, bytes, whether it writes).
Access = tuple[int, int, bool]


def reaches(storages: Sequence[int], sizes: Sequence[int], writes: Sequence[bool]) -> list[int]:
    """The steady-state reach (bytes) of each access of one pass, given as parallel sequences.

    Runs the pass twice over the storages' last-access positions: the first pass only places each
    storage at its last access, the second measures. The bytes held after a position are summed by
    blocks of about sqrt(2n) positions (C-level sums over two short slices per access, which beat a
    Fenwick tree's Python loops at the few thousand accesses of a model). Accesses of 0 bytes should
    be left out by the caller (they touch nothing)."""
    n = len(storages)
    if not (len(sizes) == len(writes) == n):
        raise ValueError("storages, sizes and writes must have the same length")
    if n == 0:
        return []
    block = max(16, math.isqrt(2 * n))
    held_at = [0] * (2 * n + block)  # position -> bytes of the storage last touched there
    block_sums = [0] * (2 * n // block + 2)
    last: dict[int, int] = {}
    held: dict[int, int] = {}
    for k, storage in enumerate(storages):
        last[storage] = k
        held[storage] = sizes[k]
    for storage, position in last.items():
        held_at[position] = held[storage]
        block_sums[position // block] += held[storage]
    distance = [0] * n
    for k in range(n):
        storage = storages[k]
        previous = last[storage]
        first_block = previous // block
        # Everything after `previous` is the other storages touched since (nothing lies beyond now).
        distance[k] = sum(held_at[previous + 1 : (first_block + 1) * block]) + sum(
            block_sums[first_block + 1 :]
        )
        held_at[previous] = 0
        block_sums[first_block] -= held[storage]
        now, nbytes = n + k, sizes[k]
        held_at[now] = nbytes
        block_sums[now // block] += nbytes
        last[storage], held[storage] = now, nbytes
    # A write's reach is measured at the next access of its storage (cyclically: the next pass's first).
    result = [0] * n
    following: dict[int, int] = {}
    for k in range(n - 1, -1, -1):  # first occurrences seeded by a backward scan of the whole pass
        following[storages[k]] = k
    for k in range(n - 1, -1, -1):
        storage = storages[k]
        result[k] = (distance[following[storage]] if writes[k] else distance[k]) + sizes[k]
        following[storage] = k
    return result


def level_of(reach: int, levels: Sequence[tuple[str, int]]) -> str:
    """The innermost level (``(name, capacity_bytes)``, innermost first) that holds ``reach`` bytes."""
    for name, capacity in levels:
        if reach <= capacity:
            return name
    return DRAM


def split_by_level(pairs: Iterable[tuple[int, int]], levels: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Bytes per level of ``(reach, nbytes)`` pairs: each pair's bytes to the level of its reach.

    Every level is a key (0 when nothing comes from it), DRAM last; the values sum to the bytes."""
    result = {name: 0 for name, _ in levels}
    result[DRAM] = 0
    for reach, nbytes in pairs:
        result[level_of(reach, levels)] += nbytes
    return result


def charged_levels(trace: Sequence[Access], levels: Sequence[tuple[str, int]]) -> list[str | None]:
    """The level each access of ``trace`` (one pass, repeated) is charged to; None for an access of
    0 bytes. A convenience over :func:`reaches` for reading the model on hand-made traces."""
    kept = [a for a in trace if a[1] > 0]
    found = iter(reaches([a[0] for a in kept], [a[1] for a in kept], [a[2] for a in kept]))
    return [level_of(next(found), levels) if a[1] > 0 else None for a in trace]
