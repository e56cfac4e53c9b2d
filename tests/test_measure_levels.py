"""The pieces behind measured ceilings: steady timing (fake clocks), the sweep's byte counts, the
level finder on hand-made curves, and the sysfs reader on a fake sysfs tree."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from layerprof.hardware.levels import KnownCache, find_levels, sysfs_caches
from layerprof.hardware.steadiness import MAX_ROUNDS, UNSTEADY_SPREAD, Timing, steady_timing
from layerprof.hardware.sweep import SweepPoint, bandwidth_sweep, best_by_size, format_bytes, sweep_sizes

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
CPU = torch.device("cpu")


def fake_clock(durations_ns: list[int]) -> Iterator[int]:
    """A clock whose successive (begin, end) readings are ``durations_ns`` apart, cycling."""
    now = 0
    index = 0
    while True:
        yield now
        now += durations_ns[index % len(durations_ns)]
        index += 1
        yield now


def clock_of(durations_ns: list[int]) -> object:
    ticks = fake_clock(durations_ns)
    return lambda: next(ticks)


# --- steadiness -------------------------------------------------------------------------------------


def test_steady_repeats_take_one_round_and_the_best_sample() -> None:
    # samples of 100, 105, 103, 101, 104 us: median 103 is 3% above best 100 -> steady
    timing = steady_timing(
        lambda: None, CPU, warmup=0, repeat=5, clock=clock_of([100_000, 105_000, 103_000, 101_000, 104_000])
    )
    assert timing.rounds == 1 and timing.samples == 5
    assert timing.best_s == pytest.approx(100e-6)
    assert timing.median_s == pytest.approx(103e-6)
    assert timing.steady


def test_unsteady_repeats_are_retried_then_marked() -> None:
    # best 100 us, median 150 us: 50% > 15% every round -> MAX_ROUNDS rounds, marked unsteady
    timing = steady_timing(lambda: None, CPU, warmup=0, repeat=3, clock=clock_of([100_000, 150_000, 200_000]))
    assert timing.rounds == MAX_ROUNDS and timing.samples == 3 * MAX_ROUNDS
    assert timing.spread == pytest.approx(0.5)
    assert not timing.steady
    assert "UNSTEADY" in timing.describe() and f"{UNSTEADY_SPREAD:.0%}" in timing.describe()


def test_a_steady_retry_ends_the_rounds_and_keeps_the_best_of_all() -> None:
    # round 1: 50, 200, 200 us (unsteady); round 2: 90, 91, 92 us (steady); best over both rounds: 50
    timing = steady_timing(
        lambda: None,
        CPU,
        warmup=0,
        repeat=3,
        clock=clock_of([50_000, 200_000, 200_000, 90_000, 91_000, 92_000]),
    )
    assert timing.rounds == 2 and timing.steady
    assert timing.best_s == pytest.approx(50e-6)
    assert timing.spread == pytest.approx(91 / 90 - 1)


def test_calls_per_sample_divide_the_sample() -> None:
    calls: list[None] = []
    timing = steady_timing(
        lambda: calls.append(None), CPU, warmup=2, repeat=4, calls=10, clock=clock_of([1_000])
    )
    assert len(calls) == 2 + 4 * 10
    assert timing.best_s == pytest.approx(1e-6 / 10)  # each 1 us sample held 10 calls


# --- the sweep --------------------------------------------------------------------------------------


def test_sweep_sizes_double() -> None:
    assert sweep_sizes(16 * KiB, 256 * KiB) == [16 * KiB, 32 * KiB, 64 * KiB, 128 * KiB, 256 * KiB]
    assert format_bytes(32 * MiB) == "32 MiB" and format_bytes(1536) == "1.5 KiB"


def test_sweep_counts_bytes_without_write_allocate() -> None:
    points = bandwidth_sweep(CPU, [96 * KiB], repeat=2, min_sample_s=1e-5)
    by_kernel = {p.kernel: p for p in points}
    assert set(by_kernel) == {"sum", "copy", "mul_", "triad", "sum-x"}
    w = 96 * KiB
    assert by_kernel["sum"].bytes_per_call == w  # x read
    assert by_kernel["copy"].bytes_per_call == w  # w/2 read + w/2 written
    assert by_kernel["mul_"].bytes_per_call == 2 * w  # x read, x written
    assert by_kernel["triad"].bytes_per_call == w  # w/3 + w/3 read, w/3 written
    assert by_kernel["sum-x"].bytes_per_call == (8 * MiB // w) * w  # x read 85 times
    assert all(p.working_set_bytes == w and p.rate_bytes_per_s > 0 for p in points)


# --- the level finder -------------------------------------------------------------------------------


def _point(kernel: str, size: int, gb_per_s: float, *, spread: float = 0.0) -> SweepPoint:
    seconds = size / (gb_per_s * 1e9)
    return SweepPoint(kernel, size, size, Timing(seconds, seconds * (1 + spread), spread, 5, 1))


def _curve(rates: dict[int, float], kernel: str = "sum") -> list[SweepPoint]:
    return [_point(kernel, size, rate) for size, rate in rates.items()]


# The shape this project's 2-core EPYC shows: L1 32 KiB ~200, L2 1 MiB ~115, LLC 32 MiB ~95, DRAM ~27 GB/s.
EPYC = {
    16 * KiB: 196, 32 * KiB: 201, 64 * KiB: 115, 128 * KiB: 115, 256 * KiB: 115, 512 * KiB: 111,
    1 * MiB: 94, 2 * MiB: 96, 4 * MiB: 97, 8 * MiB: 95, 16 * MiB: 70, 32 * MiB: 41, 64 * MiB: 25,
    128 * MiB: 24, 256 * MiB: 27, 512 * MiB: 28, 1 * GiB: 29,
}  # fmt: skip
EPYC_SYSFS = (
    KnownCache(1, 32 * KiB, 32 * KiB, "index0 = 32 KiB"),
    KnownCache(2, 1 * MiB, 1 * MiB, "index2 = 1 MiB"),
    KnownCache(3, 32 * MiB, 32 * MiB, "index3 = 32 MiB"),
)


def test_levels_of_the_epyc_curve_with_sysfs() -> None:
    found = find_levels(_curve(EPYC), kind="cpu", known=EPYC_SYSFS)
    assert [(lv.name, lv.capacity_bytes) for lv in found.levels] == [
        ("L1", 32 * KiB),  # plateau ends between 32 and 64 KiB; sysfs 32 KiB lies in it
        ("L2", 1 * MiB),  # between 512 KiB and 1 MiB
        ("LLC", 32 * MiB),  # between 16 MiB (70: nearer 95 than 27) and 32 MiB
    ]
    assert [lv.bandwidth_bytes_per_s / 1e9 for lv in found.levels] == pytest.approx([201, 115, 97])
    assert found.dram_bytes_per_s / 1e9 == pytest.approx(29)  # best at >= 4 x 32 MiB
    assert found.dram_point.working_set_bytes == 1 * GiB
    assert "index3 = 32 MiB" in found.notes["cache_levels.LLC.capacity_bytes"]


def test_levels_without_sysfs_take_the_plateau_ends() -> None:
    found = find_levels(_curve(EPYC), kind="cpu")
    assert [(lv.name, lv.capacity_bytes) for lv in found.levels] == [
        ("L1", 32 * KiB),
        ("L2", 512 * KiB),
        ("LLC", 16 * MiB),  # the last size whose rate is nearer the LLC's than DRAM's
    ]


@pytest.mark.parametrize("known", [EPYC_SYSFS, ()], ids=["sysfs", "no-sysfs"])
def test_a_noise_dip_inside_a_plateau_is_not_a_level(known: tuple[KnownCache, ...]) -> None:
    noisy = dict(EPYC)
    noisy[4 * MiB] = 40  # one busy moment inside the LLC plateau
    found = find_levels(_curve(noisy), kind="cpu", known=known)
    assert [lv.name for lv in found.levels] == ["L1", "L2", "LLC"]
    assert found.levels[-1].capacity_bytes == (32 * MiB if known else 16 * MiB)


def test_a_lost_llc_plateau_does_not_rename_the_l2() -> None:
    busy = {**EPYC, 1 * MiB: 30, 2 * MiB: 29, 4 * MiB: 28, 8 * MiB: 30, 16 * MiB: 27, 32 * MiB: 28}
    found = find_levels(_curve(busy), kind="cpu", known=EPYC_SYSFS)
    assert [(lv.name, lv.capacity_bytes) for lv in found.levels] == [("L1", 32 * KiB), ("L2", 1 * MiB)]


def test_a_cache_the_os_reports_is_recovered_where_another_kernel_still_sees_it() -> None:
    # Under load the read kernels lost both the L2 and the LLC plateau, but the in-place kernel ran
    # at 120 GB/s on an 8 MiB working set, 4x DRAM: the LLC is plainly there and must not be dropped
    # (every byte of a CNN would go to DRAM). The L2 range shows nothing faster than DRAM: not recovered.
    busy = {**EPYC, 64 * KiB: 30, 128 * KiB: 29, 256 * KiB: 30, 512 * KiB: 28}
    busy.update({1 * MiB: 30, 2 * MiB: 29, 4 * MiB: 28, 8 * MiB: 30, 16 * MiB: 27, 32 * MiB: 28})
    points = [*_curve(busy), _point("mul_", 8 * MiB, 120)]
    found = find_levels(points, kind="cpu", known=EPYC_SYSFS)
    assert [(lv.name, lv.capacity_bytes) for lv in found.levels] == [("L1", 32 * KiB), ("LLC", 32 * MiB)]
    assert found.levels[-1].bandwidth_bytes_per_s / 1e9 == pytest.approx(120)
    assert "no read plateau ended there" in found.notes["cache_levels.LLC.capacity_bytes"]


def test_an_inner_level_measured_slower_is_raised_to_the_outer_one() -> None:
    # The in-place kernel is dispatch-bound at small sizes: 130 GB/s at 512 KiB, 180 at 8 MiB.
    points = [*_curve(EPYC), _point("mul_", 512 * KiB, 130), _point("mul_", 8 * MiB, 180)]
    found = find_levels(points, kind="cpu", known=EPYC_SYSFS)
    rates = {lv.name: lv.bandwidth_bytes_per_s / 1e9 for lv in found.levels}
    assert rates == pytest.approx({"L1": 201, "L2": 180, "LLC": 180})
    assert "raised to LLC's rate" in found.notes["cache_levels.L2.bandwidth_bytes_per_s"]
    capacities = [lv.capacity_bytes for lv in found.levels]
    assert capacities == sorted(set(capacities))  # strictly increasing
    assert all(lv.bandwidth_bytes_per_s >= found.dram_bytes_per_s for lv in found.levels)


def test_dram_is_the_fastest_kernel_well_beyond_the_caches() -> None:
    points = [*_curve(EPYC), _point("mul_", 512 * MiB, 47), _point("mul_", 32 * MiB, 66)]
    found = find_levels(points, kind="cpu", known=EPYC_SYSFS)
    assert found.dram_bytes_per_s / 1e9 == pytest.approx(47)  # 32 MiB is not >= 4 x the LLC
    assert found.notes["memory_bandwidth_bytes_per_s"].startswith("best sustained at working sets >= 4x")
    assert "mul_ on a 512 MiB working set" in found.notes["memory_bandwidth_bytes_per_s"]


def test_a_flat_curve_has_no_levels() -> None:
    found = find_levels(_curve({s: 30.0 for s in sweep_sizes(16 * KiB, 64 * MiB)}), kind="cpu")
    assert found.levels == ()
    assert found.dram_bytes_per_s == pytest.approx(30e9)


def test_a_gpu_keeps_one_level_named_l2() -> None:
    rates = {64 * KiB: 3000, 1 * MiB: 3100, 8 * MiB: 3000, 32 * MiB: 2900, 128 * MiB: 1500, 512 * MiB: 1500}
    known = (KnownCache(2, 50 * MiB, 50 * MiB, "L2_cache_size = 50 MiB"),)
    found = find_levels(_curve(rates), kind="gpu", known=known)
    assert [(lv.name, lv.capacity_bytes) for lv in found.levels] == [("L2", 50 * MiB)]
    assert found.dram_bytes_per_s == pytest.approx(1500e9)


def test_best_by_size_keeps_the_fastest_kernel() -> None:
    best = best_by_size(
        [_point("sum", 1 * MiB, 90), _point("mul_", 1 * MiB, 140), _point("sum", 2 * MiB, 80)]
    )
    assert [(p.kernel, p.working_set_bytes) for p in best] == [("mul_", 1 * MiB), ("sum", 2 * MiB)]


# --- sysfs --------------------------------------------------------------------------------------------


def _fake_sysfs(root: Path, entries: list[tuple[int, str, str, str]]) -> Path:
    for index, (level, kind, size, shared) in enumerate(entries):
        directory = root / f"index{index}"
        directory.mkdir(parents=True)
        for name, text in (
            ("level", str(level)),
            ("type", kind),
            ("size", size),
            ("shared_cpu_list", shared),
        ):
            (directory / name).write_text(text + "\n", encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("threads", "l2_usable", "l3_usable"), [(1, 1 * MiB, 32 * MiB), (2, 2 * MiB, 32 * MiB)]
)
def test_sysfs_caches_add_up_private_caches_per_thread(
    tmp_path: Path, threads: int, l2_usable: int, l3_usable: int
) -> None:
    root = _fake_sysfs(
        tmp_path,
        [
            (1, "Data", "32K", "0"),
            (1, "Instruction", "32K", "0"),
            (2, "Unified", "1024K", "0"),
            (3, "Unified", "32768K", "0-1"),
        ],
    )
    caches = sysfs_caches(threads, root)
    assert [(c.level, c.size_bytes) for c in caches] == [(1, 32 * KiB), (2, 1 * MiB), (3, 32 * MiB)]
    assert [c.usable_bytes for c in caches] == [32 * KiB * threads, l2_usable, l3_usable]
