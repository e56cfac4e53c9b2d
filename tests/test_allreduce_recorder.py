"""layerprof.distributed.allreduce: the comm hook's recorder on the shared clock, in one process.

DDP's own all-reduce is swapped for futures the test completes by hand, and the clock for one that
reads scripted times, so every interval is known: bucket 1 runs 0-4 ms, bucket 2 runs 2-8 ms, the
backward ends at 6 ms. Their union is 8 ms; 6 ms of it lie before the backward's end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.distributed as dist

from layerprof.distributed import allreduce
from layerprof.distributed.allreduce import ALLREDUCE_ROW, AllreduceRecorder
from layerprof.timing.clocks import CpuClock

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

MS = 1_000_000  # nanoseconds


class ScriptedClock(CpuClock):
    """A CPU clock whose stamps are given in advance (nanoseconds)."""

    def __init__(self, stamps: list[int]) -> None:
        super().__init__()
        self.stamp = iter(stamps).__next__


class Bucket:
    def __init__(self, numel: int) -> None:
        self._buffer = torch.zeros(numel)

    def buffer(self) -> torch.Tensor:
        return self._buffer


@pytest.fixture
def pending(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[torch.futures.Future[torch.Tensor]]]:
    """DDP's allreduce_hook replaced by one that hands back futures the test completes."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    futures: list[torch.futures.Future[torch.Tensor]] = []

    def fake_allreduce(_group: object, bucket: Bucket) -> torch.futures.Future[torch.Tensor]:
        future: torch.futures.Future[torch.Tensor] = torch.futures.Future()
        futures.append(future)
        return future

    monkeypatch.setattr(default_hooks, "allreduce_hook", fake_allreduce)
    yield futures


def test_buckets_are_timed_on_one_axis_and_the_hidden_part_is_before_the_backward_end(
    pending: list[torch.futures.Future[torch.Tensor]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # start 1, start 2, end 1, the backward's end, end 2
    clock = ScriptedClock([0, 2 * MS, 4 * MS, 6 * MS, 8 * MS])
    monkeypatch.setattr(allreduce, "clock_for", lambda device: clock)
    recorder = AllreduceRecorder(process_group=None)
    recorder.start()
    recorder.run(Bucket(10))  # type: ignore[arg-type]
    recorder.run(Bucket(5))  # type: ignore[arg-type]
    pending[0].set_result(torch.zeros(10))
    recorder.backward_over()
    pending[1].set_result(torch.zeros(5))
    measured = recorder.read(world_size=2)
    assert measured is not None
    row, times = measured
    assert times.time_ms == pytest.approx(8.0)
    assert times.hidden_ms == pytest.approx(6.0)
    assert (times.buckets, times.payload_bytes) == (2, 60)
    assert row.name == ALLREDUCE_ROW and row.calls == 2 and row.dtype == "float32"
    assert (row.bytes_read, row.bytes_written) == (60, 60)  # ring over 2 ranks: 2 (N - 1) / N = 1
    assert row.time_ms == pytest.approx(8.0)
    assert not recorder.recording  # read ends the recording


def test_a_backward_end_stamped_before_any_bucket_hides_nothing(
    pending: list[torch.futures.Future[torch.Tensor]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The backward's end is stamped on the idle clock, before the first bucket chose its own: the
    # two share no time axis, so nothing is known to be hidden.
    clock = ScriptedClock([1 * MS, 3 * MS])
    monkeypatch.setattr(allreduce, "clock_for", lambda device: clock)
    recorder = AllreduceRecorder(process_group=None)
    recorder.start()
    recorder.backward_over()
    recorder.run(Bucket(4))  # type: ignore[arg-type]
    pending[0].set_result(torch.zeros(4))
    measured = recorder.read(world_size=4)
    assert measured is not None
    _, times = measured
    assert times.time_ms == pytest.approx(2.0)
    assert times.hidden_ms == 0.0


def test_a_recorder_that_is_not_recording_only_reduces(
    pending: list[torch.futures.Future[torch.Tensor]],
) -> None:
    recorder = AllreduceRecorder(process_group=None)
    future = recorder.run(Bucket(3))  # type: ignore[arg-type]
    assert future is pending[0]  # DDP's own all-reduce, untouched
    recorder.backward_over()
    assert recorder.read(world_size=2) is None
