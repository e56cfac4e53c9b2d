"""Measured ceilings that are ceilings: against plain torch calls timed in the same test, and the
plumbing around them (threads, the cache key, --refresh-like rewrites, steadiness) with the benchmarks
replaced by fakes, so that those tests are fast and deterministic."""

from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from layerprof.errors import InvalidArgumentError
from layerprof.hardware import ceilings
from layerprof.hardware.files import load_devices
from layerprof.hardware.levels import KnownCache, sysfs_caches
from layerprof.hardware.measure import cache_path, measure_device
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.steadiness import Timing, UnsteadyMeasurementWarning
from layerprof.hardware.sweep import SweepPoint

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# --- fakes: the benchmarks replaced, the pipeline (levels, spec, cache, threads) real -----------------

STEADY = Timing(1e-3, 1.01e-3, 0.01, 5, 1)
UNSTEADY = Timing(1e-3, 1.6e-3, 0.6, 15, 3)
CURVE = {
    16 * KiB: 196, 32 * KiB: 201, 64 * KiB: 115, 256 * KiB: 115, 512 * KiB: 111, 1 * MiB: 94,
    4 * MiB: 97, 8 * MiB: 95, 16 * MiB: 70, 32 * MiB: 41, 64 * MiB: 25, 256 * MiB: 27, 1 * GiB: 29,
}  # fmt: skip
SYSFS = (
    KnownCache(1, 32 * KiB, 32 * KiB, "index0 = 32 KiB"),
    KnownCache(2, 1 * MiB, 1 * MiB, "index2 = 1 MiB"),
    KnownCache(3, 32 * MiB, 32 * MiB, "index3 = 32 MiB"),
)


class Fakes:
    """What the fake benchmarks return; tests change the fields between measurements."""

    def __init__(self) -> None:
        self.gemm_flops_per_s = 100e9
        self.gemm_timing = STEADY
        self.dram_timing = STEADY
        self.threads_seen: list[int] = []
        self.gemm_error: Exception | None = None
        self.conv_flops_per_s = 50e9  # below the GEMM: the GEMM's figure stands unless a test says so

    def gemm(self, key: str, device: torch.device, sizes: object) -> tuple[float, int, Timing]:
        self.threads_seen.append(torch.get_num_threads())
        if self.gemm_error is not None:
            raise self.gemm_error
        return self.gemm_flops_per_s, 512, self.gemm_timing

    def sweep(
        self,
        device: torch.device,
        sizes: list[int],
        *,
        progress: Callable[[int], None] | None = None,
        **_: object,
    ) -> list[SweepPoint]:
        points = []
        for size, rate in CURVE.items():
            if progress is not None:
                progress(size)
            timing = self.dram_timing if size == 1 * GiB else STEADY
            points.append(SweepPoint("sum", size, int(rate * 1e9 * timing.best_s), timing))
        return points


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    fake = Fakes()
    monkeypatch.setattr(ceilings, "gemm_flops_per_s", fake.gemm)
    monkeypatch.setattr(
        ceilings, "conv_flops_per_s", lambda *a: (fake.conv_flops_per_s, "8x256x14x14 3x3 conv", STEADY)
    )
    monkeypatch.setattr(ceilings, "eager_fma_flops_per_s", lambda *a: (10e9, STEADY))
    monkeypatch.setattr(ceilings, "reduce_flops_per_s", lambda *a: (20e9, STEADY, 4096))
    monkeypatch.setattr(ceilings, "bandwidth_sweep", fake.sweep)
    monkeypatch.setattr(ceilings, "launch_overhead_s", lambda *a: 5e-6)
    monkeypatch.setattr(ceilings, "_known_caches", lambda *a: SYSFS)
    return fake


@pytest.fixture
def other_thread_count() -> Iterator[int]:
    saved = torch.get_num_threads()
    yield 1 if saved != 1 else 2
    torch.set_num_threads(saved)


def test_the_spec_carries_levels_memory_and_a_source_for_every_figure(fakes: Fakes, tmp_path: Path) -> None:
    spec = measure_device("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=1)
    assert [(lv.name, lv.capacity_bytes) for lv in spec.cache_levels] == [
        ("L1", 32 * KiB),
        ("L2", 1 * MiB),
        ("LLC", 32 * MiB),
    ]
    assert spec.memory_bandwidth_bytes_per_s == pytest.approx(29e9)
    assert spec.matrix_peak_flops_per_s["float32"] == 100e9
    assert spec.vector_peak_flops_per_s["float32"] == 20e9  # the reduction beat the addcmul_ chain
    assert "stride-0" in spec.sources["vector_peak_flops_per_s.float32"]
    page = __import__("os").sysconf("SC_PAGE_SIZE")
    assert spec.memory_bytes == page * __import__("os").sysconf("SC_PHYS_PAGES")
    figures = ["memory_bandwidth_bytes_per_s", "matrix_peak_flops_per_s.float32", "launch_overhead_s"]
    figures += [
        f"cache_levels.{lv.name}.{k}"
        for lv in spec.cache_levels
        for k in ("capacity_bytes", "bandwidth_bytes_per_s")
    ]
    for figure in figures:
        assert "; 1 torch thread" in spec.sources[figure], figure
    assert "sum on a 1 GiB working set" in spec.sources["memory_bandwidth_bytes_per_s"]
    assert load_devices(cache_path("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=1)) == (spec,)


def test_threads_are_set_for_the_measurement_and_restored(fakes: Fakes, other_thread_count: int) -> None:
    saved = torch.get_num_threads()
    measure_device("cpu", dtypes=(torch.float32,), cache=False, threads=other_thread_count)
    assert fakes.threads_seen == [other_thread_count]
    assert torch.get_num_threads() == saved
    fakes.gemm_error = RuntimeError("GEMM failed")
    with pytest.raises(RuntimeError, match="GEMM failed"):
        measure_device("cpu", dtypes=(torch.float32,), cache=False, threads=other_thread_count)
    assert torch.get_num_threads() == saved  # restored when the measurement raises too


def test_the_default_thread_count_is_torchs(fakes: Fakes, tmp_path: Path) -> None:
    spec = measure_device("cpu", dtypes=(torch.float32,), cache_dir=tmp_path)
    assert fakes.threads_seen == [torch.get_num_threads()]
    count = torch.get_num_threads()
    assert spec.sources["launch_overhead_s"].endswith(f"{count} torch thread{'s' if count != 1 else ''}")


def test_threads_are_part_of_the_cache_key(fakes: Fakes, tmp_path: Path) -> None:
    one = measure_device("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=1)
    fakes.gemm_flops_per_s = 150e9
    two = measure_device("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=2)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and "__t1__" in files[0] and "__t2__" in files[1]
    fakes.gemm_flops_per_s = 1e9  # reading back measures nothing
    assert measure_device("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=1) == one
    assert measure_device("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=2) == two
    assert two.matrix_peak_flops_per_s["float32"] == 150e9
    assert len(fakes.threads_seen) == 2


def test_refresh_measures_again_and_rewrites_the_cache(fakes: Fakes, tmp_path: Path) -> None:
    measure_device("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=1)
    fakes.gemm_flops_per_s = 123e9
    assert (
        measure_device("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=1).matrix_peak_flops_per_s[
            "float32"
        ]
        == 100e9
    )  # cached
    fresh = measure_device("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=1, refresh=True)
    assert fresh.matrix_peak_flops_per_s["float32"] == 123e9
    (written,) = load_devices(cache_path("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=1))
    assert written == fresh


def test_no_cache_neither_reads_nor_writes(fakes: Fakes, tmp_path: Path) -> None:
    measure_device("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=1)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    fakes.gemm_flops_per_s = 77e9
    spec = measure_device("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=1, cache=False)
    assert spec.matrix_peak_flops_per_s["float32"] == 77e9  # not read
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before  # not written
    empty = tmp_path / "empty"
    measure_device("cpu", dtypes=(torch.float32,), cache_dir=empty, threads=1, cache=False)
    assert not empty.exists()


@pytest.mark.parametrize("which", ["gemm", "dram"])
def test_an_unsteady_figure_is_marked_warned_and_not_cached(
    fakes: Fakes, tmp_path: Path, which: str, caplog: pytest.LogCaptureFixture
) -> None:
    if which == "gemm":
        fakes.gemm_timing = UNSTEADY
        figure = "matrix_peak_flops_per_s.float32"
    else:
        fakes.dram_timing = UNSTEADY
        figure = "memory_bandwidth_bytes_per_s"
    with caplog.at_level(logging.WARNING), pytest.warns(UnsteadyMeasurementWarning, match=figure):
        spec = measure_device("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=1)
    assert "UNSTEADY: median 60% above best" in spec.sources[figure]
    assert sum("UNSTEADY" in source for source in spec.sources.values()) == 1
    assert list(tmp_path.iterdir()) == []  # not cached
    assert any("not cached" in record.getMessage() for record in caplog.records)
    fakes.gemm_timing = fakes.dram_timing = STEADY
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a steady measurement warns of nothing
        measure_device("cpu", dtypes=(torch.float32,), cache_dir=tmp_path, threads=1)
    assert len(list(tmp_path.iterdir())) == 1


def test_progress_hears_every_step(fakes: Fakes) -> None:
    heard: list[tuple[int, int, str]] = []
    measure_device(
        "cpu", dtypes=(torch.float32,), cache=False, threads=1, progress=lambda *step: heard.append(step)
    )
    labels = [label for _, _, label in heard]
    assert labels[0] == "matrix peak float32" and labels[-1] == "launch overhead"
    assert "bandwidth at 16 KiB" in labels and "bandwidth at 1 GiB" in labels
    assert [done for done, _, _ in heard] == list(range(len(heard)))
    assert all(done < total for done, total, _ in heard)


@pytest.mark.parametrize("threads", [0, -1, True, 2.0, "2"])
def test_bad_thread_counts_are_refused_by_name(threads: object) -> None:
    with pytest.raises(InvalidArgumentError, match=f"threads must be an int of at least 1, got {threads!r}"):
        measure_device("cpu", cache=False, threads=threads)  # type: ignore[arg-type]


# --- real measurements, against plain torch calls timed in the same test -----------------------------


def _best_seconds(fn: Callable[[], object], repeat: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        begin = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - begin)
    return best


def _plain_mm_flops_per_s() -> float:
    """The best of 20 plain ``torch.mm`` calls at n = 512 and 1024 (on a loaded machine only short calls
    find the moments when the core is free, as the measurement's best-of-repeats does)."""
    best = 0.0
    for n in (512, 1024):
        a, b = torch.randn(n, n), torch.randn(n, n)
        best = max(best, 2 * n**3 / _best_seconds(lambda a=a, b=b: torch.mm(a, b), 20))
    return best


def _plain_conv_flops_per_s() -> float:
    """The best of 10 plain 3x3 ``conv2d`` calls on 8x512x7x7, in direct-convolution FLOPs (a measured
    matrix peak is the faster of the GEMM and the convolution: the roof holds for the counted FLOPs)."""
    x, w = torch.randn(8, 512, 7, 7), torch.randn(512, 512, 3, 3)
    seconds = _best_seconds(lambda: torch.nn.functional.conv2d(x, w, padding=1), 10)
    return 2 * 8 * 512 * 7 * 7 * 512 * 9 / seconds


def _plain_copy_bytes_per_s(nbytes: int = 64 * MiB) -> float:
    """The best of 20 plain copies of 64 MiB (a 128 MiB working set: 4x this machine's LLC)."""
    source = torch.ones(nbytes // 4)
    target = torch.empty_like(source)
    return 2 * nbytes / _best_seconds(lambda: target.copy_(source), 20)  # read + written


@pytest.fixture(scope="module")
def measured_here() -> Iterator[tuple[DeviceSpec, float]]:
    """One real measurement with one thread, and a plain copy timed just after its sweep."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnsteadyMeasurementWarning)  # a busy machine: still a ceiling
            spec = measure_device("cpu", dtypes=(torch.float32,), cache=False, threads=1)
        with torch.inference_mode():
            copy = _plain_copy_bytes_per_s()
    finally:
        torch.set_num_threads(saved)
    yield spec, copy


def test_measured_matrix_peak_is_within_25_percent_of_a_plain_mm_or_conv(
    monkeypatch: pytest.MonkeyPatch, one_torch_thread: None
) -> None:
    # The real GEMM path of measure_device; the sweep cut short (its figures are tested below).
    cut = ceilings.sizes_for
    monkeypatch.setattr(
        ceilings, "sizes_for", lambda *a: dataclasses.replace(cut(*a), sweep_max_bytes=256 * KiB)
    )
    ratios = []
    measured = plain = 0.0
    for _ in range(5):  # the machine is shared: a busy moment gets four more tries
        with torch.inference_mode():
            plain = max(plain, _plain_mm_flops_per_s(), _plain_conv_flops_per_s())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UnsteadyMeasurementWarning)
            spec = measure_device("cpu", dtypes=(torch.float32,), cache=False, threads=1)
        measured = max(measured, spec.matrix_peak_flops_per_s["float32"])
        with torch.inference_mode():
            plain = max(plain, _plain_mm_flops_per_s(), _plain_conv_flops_per_s())
        ratios.append(measured / plain)  # best against best, over the same stretch of time
        if 0.75 <= ratios[-1] <= 1.25:
            break
    assert 0.75 <= ratios[-1] <= 1.25, f"measured / the faster of plain torch.mm and conv2d: {ratios}"


def test_measured_dram_bandwidth_is_at_least_a_plain_copys(
    measured_here: tuple[DeviceSpec, float],
) -> None:
    spec, copy = measured_here
    assert spec.memory_bandwidth_bytes_per_s >= copy


def test_measured_levels_are_increasing_and_agree_with_sysfs(
    measured_here: tuple[DeviceSpec, float],
) -> None:
    spec, _ = measured_here
    capacities = [lv.capacity_bytes for lv in spec.cache_levels]
    assert capacities == sorted(set(capacities))
    assert all(lv.bandwidth_bytes_per_s >= spec.memory_bandwidth_bytes_per_s for lv in spec.cache_levels)
    known = sysfs_caches(1)
    if not known:
        pytest.skip("no /sys/devices/system/cpu/cpu0/cache here")
    assert spec.cache_levels, "the sweep found no cache level at all"
    sizes = {k.size_bytes for k in known} | {k.usable_bytes for k in known}
    assert set(capacities) <= sizes  # every level is a cache the OS reports
    for level in spec.cache_levels:  # named after the cache it matched: the last one the OS lists is LLC
        (match,) = {k.level for k in known if level.capacity_bytes in (k.size_bytes, k.usable_bytes)}
        assert level.name == ("LLC" if match == known[-1].level else f"L{match}")


def test_the_sweep_is_bounded_by_free_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ceilings, "available_memory_bytes", lambda device: 100 * MiB)
    sizes = ceilings.sizes_for(torch.device("cpu"), quick=False)
    assert sizes.sweep_max_bytes == 16 * MiB  # the largest doubling of 16 KiB within 100 MiB / 4
    monkeypatch.setattr(ceilings, "available_memory_bytes", lambda device: None)
    assert ceilings.sizes_for(torch.device("cpu"), quick=False).sweep_max_bytes == 1 * GiB


def test_a_convolution_faster_than_the_gemm_sets_the_matrix_peak(fakes: Fakes, tmp_path: Path) -> None:
    # oneDNN's 3x3 convolutions beat torch.mm on this CPU (Winograd does less work than the direct
    # formula layerprof charges): the roof must hold for the FLOPs the rows are charged.
    fakes.conv_flops_per_s = 120e9
    spec = measure_device("cpu", cache=False, dtypes=("float32",))
    assert spec.matrix_peak_flops_per_s["float32"] == 120e9
    source = spec.sources["matrix_peak_flops_per_s.float32"]
    assert "3x3 conv" in source and "direct convolution" in source and "100 GFLOP/s" in source
