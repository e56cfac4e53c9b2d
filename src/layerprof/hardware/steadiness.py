"""Timing one micro-benchmark steadily: warm-up, repeats, the best sample, and whether the repeats agree.

A ceiling is the best sustained rate, so every figure is the **best** (shortest) sample of its repeats,
taken after warm-up calls. Under load the repeats spread: when the median sample is more than
:data:`UNSTEADY_SPREAD` (15%) slower than the best one, the round is repeated (up to
:data:`MAX_ROUNDS` rounds in all); the best sample over all rounds is kept, and if the last round still
spreads, the measurement is marked unsteady. :func:`~layerprof.hardware.measure.measure_device` then says
so in the figure's source, logs a warning, emits an :class:`UnsteadyMeasurementWarning` and does not cache
the result.

CUDA work is timed with events created up front and read after one synchronize; CPU work with
``time.perf_counter_ns``. ``calls`` runs the function that many times per sample (short CPU kernels, so
that one sample is long enough for the clock); a sample's time is per call.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = [
    "MAX_ROUNDS",
    "UNSTEADY_SPREAD",
    "Clock",
    "Timing",
    "UnsteadyMeasurementWarning",
    "steady_timing",
    "synchronize",
]

#: A round is unsteady when its median sample is more than this fraction slower than its best one.
UNSTEADY_SPREAD = 0.15
#: Rounds of repeats a measurement gets before an unsteady one is kept as it is (and marked).
MAX_ROUNDS = 3

#: Returns nanoseconds, like ``time.perf_counter_ns`` (tests substitute a fake one).
Clock = Callable[[], int]


class UnsteadyMeasurementWarning(UserWarning):
    """A measured ceiling whose repeats kept disagreeing (the machine was busy): kept, but not cached."""


@dataclass(frozen=True, slots=True)
class Timing:
    """Seconds per call of one measurement: the best sample over all rounds, the median of the last
    round, how much slower that median is than the last round's best (``spread``: 0.1 = 10%), and how
    many samples and rounds it took."""

    best_s: float
    median_s: float
    spread: float
    samples: int
    rounds: int

    @property
    def steady(self) -> bool:
        return self.spread <= UNSTEADY_SPREAD

    def describe(self) -> str:
        """``best of 10 (2 rounds)``, with ``unsteady: median 31% above best`` when it is."""
        text = f"best of {self.samples}" + (f" ({self.rounds} rounds)" if self.rounds > 1 else "")
        if not self.steady:
            # Rounded up: a 15.4% spread reads "16%", over the 15% threshold, never "15%".
            above = math.ceil(round(self.spread * 100, 6))
            text += f", UNSTEADY: median {above}% above best (threshold {UNSTEADY_SPREAD:.0%})"
        return text


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cuda_samples(fn: Callable[[], object], device: torch.device, repeat: int, calls: int) -> list[float]:
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(repeat)]  # type: ignore[no-untyped-call]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(repeat)]  # type: ignore[no-untyped-call]
    torch.cuda.synchronize(device)
    for start, end in zip(starts, ends, strict=True):
        start.record()
        for _ in range(calls):
            fn()
        end.record()
    torch.cuda.synchronize(device)
    return [float(s.elapsed_time(e)) / 1e3 / calls for s, e in zip(starts, ends, strict=True)]


def _cpu_samples(fn: Callable[[], object], repeat: int, calls: int, clock: Clock) -> list[float]:
    samples = []
    for _ in range(repeat):
        begin = clock()
        for _ in range(calls):
            fn()
        samples.append((clock() - begin) / 1e9 / calls)
    return samples


def steady_timing(
    fn: Callable[[], object],
    device: torch.device,
    *,
    warmup: int,
    repeat: int,
    calls: int = 1,
    clock: Clock = time.perf_counter_ns,
    max_rounds: int = MAX_ROUNDS,
) -> Timing:
    """Time ``fn`` on ``device``: ``warmup`` untimed calls, then rounds of ``repeat`` samples of ``calls``
    calls each until a round is steady or ``max_rounds`` rounds are done (``clock`` times CPU work)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    best = float("inf")
    samples = 0
    rounds = 0
    median = spread = float("inf")
    while rounds < max_rounds:
        rounds += 1
        if device.type == "cuda":
            taken = _cuda_samples(fn, device, repeat, calls)
        else:
            taken = _cpu_samples(fn, repeat, calls, clock)
        taken = [max(t, 1e-12) for t in taken]
        samples += len(taken)
        best = min(best, *taken)
        median = float(statistics.median(taken))
        spread = median / min(taken) - 1.0  # judged on the last round; the best may come from any
        if spread <= UNSTEADY_SPREAD:
            break
    return Timing(best_s=best, median_s=median, spread=spread, samples=samples, rounds=rounds)
