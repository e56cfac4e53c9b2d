"""Finding the cache levels in a bandwidth sweep: the plateaus of bandwidth against working-set size.

The levels' sizes come from the read-only kernels (``sum``, ``sum-x``: the best of them at each size),
whose plateaus are the cleanest. Walking outward, a new plateau starts where the rate falls below the
best of the current one by more than :data:`LEVEL_DROP` (1.15x); a dip that a later size climbs back
from (to within 1.15x of the plateau before) is noise and is merged back. A plateau of one size is a
transition between two levels, not a level. The outermost plateau is DRAM. Each plateau before it is a
cache level:

* **capacity**: the plateau ends between its last size and the first size whose rate is nearer (in
  ratio) to the next level than to this one. When the operating system's figure for a cache (Linux
  ``/sys/devices/system/cpu/cpu0/cache/index*/size``, per instance or times the instances ``threads``
  threads use; on CUDA ``L2_cache_size``) lies in that bracket, it is the capacity; otherwise the
  plateau's last size is. Where the OS reports caches, a plateau that matches none of them is a
  transition and is dropped.
* **bandwidth**: the best rate of any kernel at the plateau's sizes, raised to any outer level's (an
  inner level is never slower than the one behind it: where it measures slower, the per-call dispatch
  floor hid it).

DRAM's bandwidth is the best rate of any kernel at working sets of at least :data:`DRAM_FACTOR` (4)
times the last cache. A level whose read rate is within :data:`LEVEL_DROP` of DRAM's cannot be told
from DRAM and is dropped; so is an inner level whose capacity is not below the next one's. On a CPU each
level is named after the sysfs level it matches (``L1``, ``L2``; the last one ``LLC``), or without
sysfs by position with the outermost ``LLC``; on a GPU only the outermost is kept, as ``L2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from layerprof.hardware.specs import CacheLevel
from layerprof.hardware.sweep import SweepPoint, best_by_size, format_bytes

__all__ = ["DRAM_FACTOR", "LEVEL_DROP", "FoundLevels", "KnownCache", "find_levels", "sysfs_caches"]

LEVEL_DROP = 1.15
READ_KERNELS = frozenset({"sum", "sum-x"})
DRAM_FACTOR = 4
_SYSFS = Path("/sys/devices/system/cpu/cpu0/cache")


@dataclass(frozen=True, slots=True)
class KnownCache:
    """A cache the operating system reports: its level, bytes per instance, and bytes that ``threads``
    threads (one per core) can use together (private caches add up, a shared one does not)."""

    level: int
    size_bytes: int
    usable_bytes: int
    origin: str


@dataclass(frozen=True, slots=True)
class FoundLevels:
    """What a sweep says about the memory hierarchy, with a note per figure for ``DeviceSpec.sources``."""

    levels: tuple[CacheLevel, ...]
    dram_bytes_per_s: float
    dram_point: SweepPoint
    notes: dict[str, str]
    points: dict[str, SweepPoint]  # figure -> the measurement it came from (for steadiness)


def _cpu_count(shared: str) -> int:
    """How many CPUs a sysfs ``shared_cpu_list`` (``0-1,4``) names."""
    count = 0
    for part in shared.strip().split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            count += int(high) - int(low) + 1
        elif part:
            count += 1
    return max(count, 1)


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    factor = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * factor


def sysfs_caches(threads: int, root: Path = _SYSFS) -> tuple[KnownCache, ...]:
    """The data and unified caches of cpu0 from Linux sysfs, innermost first; () where there is none."""
    found: list[KnownCache] = []
    for index in sorted(root.glob("index*")):
        try:
            kind = (index / "type").read_text(encoding="utf-8").strip()
            if kind == "Instruction":
                continue
            level = int((index / "level").read_text(encoding="utf-8"))
            size = _parse_size((index / "size").read_text(encoding="utf-8"))
            sharing = _cpu_count((index / "shared_cpu_list").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        usable = size * math.ceil(threads / sharing)
        found.append(KnownCache(level, size, usable, f"{index}/size = {format_bytes(size)}"))
    return tuple(sorted(found, key=lambda c: c.level))


def _top(points: list[SweepPoint]) -> float:
    return max(p.rate_bytes_per_s for p in points)


def _plateaus(curve: list[SweepPoint]) -> list[list[SweepPoint]]:
    plateaus: list[list[SweepPoint]] = []
    current: list[SweepPoint] = []
    for point in curve:
        rate = point.rate_bytes_per_s
        if current and rate < _top(current) / LEVEL_DROP:
            plateaus.append(current)
            current = [point]
        else:
            current.append(point)
        # A dip the curve climbs back from was noise (load): the dip and the climb join the plateau before.
        if plateaus and rate >= _top(plateaus[-1]) / LEVEL_DROP:
            current = plateaus.pop() + current
    plateaus.append(current)
    return plateaus


def _best(points: list[SweepPoint]) -> SweepPoint:
    return max(points, key=lambda p: p.rate_bytes_per_s)


@dataclass(slots=True)
class _Level:
    points: list[SweepPoint]  # every kernel's fastest point at the plateau's sizes
    capacity: int
    capacity_note: str
    known: KnownCache | None
    name: str = ""


def _candidates(known: tuple[KnownCache, ...]) -> list[tuple[int, KnownCache]]:
    """Each OS cache as a size a sweep may find: per instance (sum-x: every thread reads it all) and the
    total that the threads can use together (the kernels that split the working set among threads)."""
    sizes = [(k.size_bytes, k) for k in known] + [(k.usable_bytes, k) for k in known]
    return sorted(set(sizes), key=lambda item: item[0])


def _capacity(
    plateau: list[SweepPoint], after: list[SweepPoint], next_rate: float, known: tuple[KnownCache, ...]
) -> tuple[int, str, KnownCache | None]:
    """Where ``plateau`` ends: the bracket of sizes, then the OS figure inside it if there is one."""
    middle = math.sqrt(_top(plateau) * next_rate)  # nearer (in ratio) to this level above it
    last_on = plateau[-1].working_set_bytes
    first_off = after[0].working_set_bytes if after else last_on
    for point in after:
        if point.rate_bytes_per_s >= middle:
            last_on = point.working_set_bytes
        else:
            first_off = point.working_set_bytes
            break
    inside = [(size, k) for size, k in _candidates(known) if last_on <= size <= first_off]
    bracket = f"the read plateau ends between {format_bytes(last_on)} and {format_bytes(first_off)}"
    if inside:
        size, chosen = inside[-1]
        return size, f"{bracket}; {chosen.origin} ({format_bytes(size)} for these threads) lies in it", chosen
    others = ", ".join(k.origin for k in known) or "the OS reports no cache size"
    return last_on, f"{bracket}; its last size is taken ({others}: not in the bracket)", None


def find_levels(points: list[SweepPoint], *, kind: str, known: tuple[KnownCache, ...] = ()) -> FoundLevels:
    """Cache levels and DRAM bandwidth from a sweep's ``points``; ``known``: what the OS reports.

    The levels' sizes come from the read-only kernels (``sum``, ``sum-x``), whose plateaus are the
    cleanest; their bandwidths, and DRAM's, from the fastest kernel of all at those sizes.
    """
    if not points:
        raise ValueError("a bandwidth sweep needs at least one point")
    fastest = best_by_size(points)
    read = best_by_size([p for p in points if p.kernel in READ_KERNELS]) or fastest
    plateaus = _plateaus(read)
    candidates = [p for p in plateaus[:-1] if len(p) >= 2]
    known_last = max((k.usable_bytes for k in known), default=0)
    far = [p for p in read if p.working_set_bytes >= DRAM_FACTOR * known_last] if known_last else []
    dram_read = _top(far or plateaus[-1])

    levels: list[_Level] = []
    for index, plateau in enumerate(candidates):
        if _top(plateau) < LEVEL_DROP * dram_read:
            continue  # not faster than DRAM by a margin the sweep can tell
        after = [p for p in read if p.working_set_bytes > plateau[-1].working_set_bytes]
        next_rate = _top(candidates[index + 1]) if index + 1 < len(candidates) else dram_read
        capacity, note, match = _capacity(plateau, after, next_rate, known)
        if known and match is None:
            continue  # a plateau the OS knows no cache for is a transition between two levels
        sizes = {p.working_set_bytes for p in plateau}
        level = _Level([p for p in fastest if p.working_set_bytes in sizes], capacity, note, match)
        if levels and capacity <= levels[-1].capacity:
            levels.pop()  # the sweep cannot tell the inner one apart: the outer one stands for both
        levels.append(level)
    levels = levels[-1:] if kind == "gpu" else _recovered(levels, fastest, known, dram_read)
    _name(levels, kind, known)

    # DRAM: the best rate well beyond the last cache (the sweep's outer plateau when it is not that far).
    last_cache = max([known_last] + [level.capacity for level in levels])
    beyond = [p for p in fastest if p.working_set_bytes >= DRAM_FACTOR * last_cache] if last_cache else []
    outer_sizes = {p.working_set_bytes for p in plateaus[-1]}
    dram_point = _best(beyond or [p for p in fastest if p.working_set_bytes in outer_sizes])
    dram_note = f"best sustained at working sets >= {DRAM_FACTOR}x the last cache: {dram_point.describe()}"
    if not beyond:
        dram_note = (
            f"best on the sweep's outermost plateau (it did not reach {DRAM_FACTOR}x the last cache, "
            f"{format_bytes(last_cache)}): {dram_point.describe()}"
        )
    return _assemble(levels, dram_point.rate_bytes_per_s, dram_point, dram_note)


def _recovered(
    levels: list[_Level], fastest: list[SweepPoint], known: tuple[KnownCache, ...], dram_read: float
) -> list[_Level]:
    """The levels, with each cache the OS reports that no plateau matched put back where the sweep
    still saw it: some kernel, at working sets between the level inside it and its capacity, ran
    faster than DRAM by more than :data:`LEVEL_DROP` (under load the read kernels' plateau can vanish
    while the cache is plainly there: a 32 MiB LLC left out sends every byte of a CNN to DRAM)."""
    matched = {id(level.known) for level in levels if level.known is not None}
    out = list(levels)
    for cache in sorted(known, key=lambda k: k.usable_bytes):
        if id(cache) in matched:
            continue
        inner = max((lv.capacity for lv in out if lv.capacity < cache.usable_bytes), default=0)
        outer = min((lv.capacity for lv in out if lv.capacity > cache.usable_bytes), default=None)
        if outer is None and out and out[-1].capacity >= cache.usable_bytes:
            continue
        within = [p for p in fastest if inner < p.working_set_bytes <= cache.usable_bytes]
        if not within or _top(within) < LEVEL_DROP * dram_read or cache.usable_bytes == inner:
            continue
        best = _best(within)
        note = (
            f"{cache.origin} ({format_bytes(cache.usable_bytes)} for these threads): no read plateau "
            f"ended there, but {best.describe()} ran {best.rate_bytes_per_s / dram_read:.2g}x DRAM's "
            f"read rate inside it"
        )
        out.append(_Level(within, cache.usable_bytes, note, cache))
        out.sort(key=lambda level: level.capacity)
    return out


def _name(levels: list[_Level], kind: str, known: tuple[KnownCache, ...]) -> None:
    """GPU: ``L2``. CPU with OS figures: the level each matched (its last one is ``LLC``), so that a
    sweep that lost the LLC plateau under load never calls the L2 the LLC. Without: ``L1``, ``L2``, ...
    by position, the outermost ``LLC``."""
    if kind == "gpu":
        for level in levels:
            level.name = "L2"
        return
    positional = [f"L{i + 1}" for i in range(len(levels))]
    if levels:
        positional[-1] = "LLC"
    last = max((k.level for k in known), default=0)
    names = []
    for index, level in enumerate(levels):
        match = level.known
        if match is None:
            names.append(positional[index])
        else:
            names.append("LLC" if match.level == last else f"L{match.level}")
    if len(set(names)) != len(names):
        names = positional
    for level, name in zip(levels, names, strict=True):
        level.name = name


def _assemble(levels: list[_Level], dram: float, dram_point: SweepPoint, dram_note: str) -> FoundLevels:
    notes = {"memory_bandwidth_bytes_per_s": dram_note}
    points = {"memory_bandwidth_bytes_per_s": dram_point}
    built: list[CacheLevel] = []
    floor, floor_point, floor_name = dram, dram_point, "DRAM"
    for level in reversed(levels):  # outermost first, so that each level knows the rate behind it
        best = _best(level.points)
        key = f"cache_levels.{level.name}"
        if best.rate_bytes_per_s >= floor:
            rate, source = best.rate_bytes_per_s, best
            rate_note = f"best on the plateau: {best.describe()}"
        else:
            rate, source = floor, floor_point
            rate_note = (
                f"raised to {floor_name}'s rate ({floor_point.describe()}): the plateau's best, "
                f"{best.describe()} at {best.rate_bytes_per_s / 1e9:.3g} GB/s, was held down by the "
                f"per-call dispatch floor"
            )
        built.append(CacheLevel(level.name, level.capacity, rate))
        notes[f"{key}.capacity_bytes"] = level.capacity_note
        notes[f"{key}.bandwidth_bytes_per_s"] = rate_note
        points[f"{key}.bandwidth_bytes_per_s"] = source
        floor, floor_point, floor_name = rate, source, level.name
    return FoundLevels(tuple(reversed(built)), dram, dram_point, notes, points)
