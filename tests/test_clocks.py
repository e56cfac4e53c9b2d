"""layerprof.timing.clocks: the one CPU-clock / CUDA-event pair every timer reads.

Times are checked against a known sleep with loose bounds only (a sleep lasts at least as long as
asked, and a loaded CI machine may make it much longer): nothing here asserts speed.
"""

from __future__ import annotations

import threading
import time

import pytest
import torch

from layerprof.timing.clocks import Clock, CpuClock, CudaClock, Stamp, clock_for

SLEEP_S = 0.02
# A sleep is never shorter than asked; perf_counter_ns and time.sleep may round by a tick, so the
# lower bound keeps a little slack. The upper bound only catches a wrong unit (s or us for ms).
LOWER_MS = SLEEP_S * 1e3 * 0.9
UPPER_MS = 5_000.0

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")


def test_clock_for_picks_cuda_events_only_for_a_cuda_device() -> None:
    assert isinstance(clock_for("cpu"), CpuClock)
    assert isinstance(clock_for(torch.device("meta")), CpuClock)
    # Making a CUDA clock touches no GPU: its events are made on reserve() or the first stamp.
    cuda = clock_for("cuda:0")
    assert isinstance(cuda, CudaClock) and cuda.device == torch.device("cuda:0")


def test_the_cpu_stamp_is_perf_counter_ns_itself() -> None:
    # A hook binds clock.stamp and calls it: on the CPU that must cost a bare clock read, no frame.
    assert CpuClock().stamp is time.perf_counter_ns


def test_the_cpu_clock_measures_a_sleep() -> None:
    clock = CpuClock()
    start = clock.stamp()
    time.sleep(SLEEP_S)
    end = clock.stamp()
    clock.synchronize()
    assert LOWER_MS <= clock.elapsed_ms(start, end) <= UPPER_MS


def test_time_ms_measures_a_sleeping_call() -> None:
    calls: list[int] = []

    def sleep() -> None:
        calls.append(1)
        time.sleep(SLEEP_S)

    elapsed = CpuClock().time_ms(sleep)
    assert calls == [1]
    assert LOWER_MS <= elapsed <= UPPER_MS


def test_cpu_times_are_nanosecond_differences_taken_as_ints() -> None:
    clock = CpuClock()
    # Taken as ints first: no rounding, even where perf_counter_ns is far from zero.
    origin = 10**15
    assert clock.since_ms(origin, [origin, origin + 2_500_000, origin + 1]) == [0.0, 2.5, 1e-6]
    assert clock.elapsed_ms(origin + 1_000_000, origin + 4_000_000) == 3.0


def test_the_cpu_clock_has_nothing_to_reserve_or_recycle() -> None:
    clock = CpuClock()
    clock.reserve(1000)
    clock.recycle([1, 2, 3])
    assert clock.stamp is time.perf_counter_ns


def test_a_clock_subclass_gets_since_ms_and_time_ms_from_elapsed_ms() -> None:
    class Ticks(Clock):
        """A clock that counts calls: each stamp is one millisecond after the last."""

        def __init__(self) -> None:
            self.device = torch.device("cpu")
            self.ticks = iter(range(100))
            self.stamp = lambda: next(self.ticks)

        def synchronize(self) -> None:
            return None

        def elapsed_ms(self, start: Stamp, end: Stamp) -> float:
            assert isinstance(start, int) and isinstance(end, int)
            return float(end - start)

    clock = Ticks()
    assert clock.since_ms(3, [3, 5, 9]) == [0.0, 2.0, 6.0]
    assert clock.time_ms(lambda: clock.stamp()) == 2.0  # start, the call's own stamp, end


# -- CUDA -------------------------------------------------------------------------------------------
@pytest.mark.cuda
@needs_cuda
def test_the_cuda_clock_measures_a_sleep_on_the_device() -> None:
    clock = clock_for("cuda")
    clock.reserve(2)
    cycles = 50_000_000  # torch.cuda._sleep spins the GPU for this many clock cycles
    elapsed = clock.time_ms(lambda: torch.cuda._sleep(cycles))  # type: ignore[no-untyped-call]
    assert 0.0 < elapsed <= UPPER_MS
    start = clock.stamp()
    time.sleep(SLEEP_S)  # the host sleeps; events time the stream, which had nothing to do
    end = clock.stamp()
    clock.synchronize()
    assert 0.0 <= clock.elapsed_ms(start, end) <= UPPER_MS


@pytest.mark.cuda
@needs_cuda
def test_cuda_events_are_reused_once_recycled() -> None:
    clock = CudaClock(torch.device("cuda"))
    clock.reserve(2)
    first = [clock.stamp(), clock.stamp()]
    clock.synchronize()
    times = clock.since_ms(first[0], first)
    assert times[0] == 0.0 and times[1] >= 0.0
    clock.recycle(first)
    again = [clock.stamp(), clock.stamp()]
    assert {id(e) for e in again} == {id(e) for e in first}


@pytest.mark.cuda
@needs_cuda
def test_threads_stamping_at_once_never_share_an_event() -> None:
    clock = CudaClock(torch.device("cuda"))
    clock.reserve(64)
    stamps: list[Stamp] = []
    lock = threading.Lock()

    def stamp_some() -> None:
        taken = [clock.stamp() for _ in range(32)]
        with lock:
            stamps.extend(taken)

    threads = [threading.Thread(target=stamp_some) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clock.synchronize()
    assert len({id(s) for s in stamps}) == len(stamps) == 128  # 64 reserved, 64 made on the way
