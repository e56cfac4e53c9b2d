"""Memory stays flat: long runs of watch(), analyze() and profile() keep RSS and live tensors level.

    python benchmarks/bench_memory_flat.py [--steps 1000 --analyze 300 --profile 100]

Each phase runs a warm-up (caches, allocator pools and lazy imports fill up), then its calls; RSS
(from /proc/self/statm) and the number of live torch tensors (gc) are read before and after. Flat
means the growth after warm-up is noise: a few MiB of RSS, no tensors.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import layerprof


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance on torch's deprecated module aliases warns
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.Dropout(0.1),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
    )  # fmt: skip


def measured(label: str, warmup: int, calls: int, step: Callable[[], None]) -> tuple[float, int]:
    for _ in range(warmup):
        step()
    rss_before, tensors_before = rss_mib(), live_tensors()
    for _ in range(calls):
        step()
    rss_growth, tensor_growth = rss_mib() - rss_before, live_tensors() - tensors_before
    print(f"{label:<34} {calls:>5} calls  RSS {rss_growth:+7.2f} MiB  live tensors {tensor_growth:+d}")
    return rss_growth, tensor_growth


def _drop(report: object) -> None:
    """The caller lets each report go, as a loop that prints and forgets it does."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--analyze", type=int, default=300)
    parser.add_argument("--profile", type=int, default=100)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    net = model()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    reports: list[int] = []
    watcher = layerprof.watch(
        net, every=5, target="t4", sink=lambda report: reports.append(len(report.layers))
    )

    def train_step() -> None:
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    print(f"layerprof {layerprof.__version__}, torch {torch.__version__}, python {sys.version.split()[0]}")
    measured("watch(every=5) training steps", 50, args.steps, train_step)
    watcher.remove()
    net.eval()
    measured(
        "analyze(input_size=)", 20, args.analyze, lambda: _drop(layerprof.analyze(net, input_size=x.shape))
    )
    measured("analyze(real inputs)", 10, args.analyze, lambda: _drop(layerprof.analyze(net, x, target="t4")))
    measured(
        "profile(warmup=1, repeat=3)", 5, args.profile, lambda: _drop(layerprof.profile(net, x, repeat=3))
    )
    print(f"watch() emitted {len(reports)} reports")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
