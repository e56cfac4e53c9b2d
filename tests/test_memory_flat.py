"""Memory stays flat (issue #12): repeated watch() steps, analyze() and profile() calls keep no tensor
alive. The live-tensor count is exact, so the test asserts it; RSS is noisy and is left to
benchmarks/bench_memory_flat.py (figures in the README)."""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

import layerprof


def _live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def _growth(warmup: int, calls: int, step: Callable[[], object]) -> int:
    for _ in range(warmup):
        step()
    before = _live_tensors()
    for _ in range(calls):
        step()
    return _live_tensors() - before


def _model() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )  # fmt: skip


def test_watch_steps_keep_no_tensor_alive() -> None:
    net = _model()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))
    reports: list[int] = []

    def step() -> None:
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()

    with layerprof.watch(net, every=5, target="t4", sink=lambda r: reports.append(len(r.layers))):
        assert _growth(20, 100, step) == 0
    assert len(reports) >= 20  # sampling really happened: 120 steps, one report every 5 or so


def test_analyze_and_profile_calls_keep_no_tensor_alive() -> None:
    net = _model().eval()
    x = torch.randn(4, 3, 8, 8)
    assert _growth(5, 30, lambda: layerprof.analyze(net, input_size=(4, 3, 8, 8), target="t4")) == 0
    assert _growth(5, 30, lambda: layerprof.analyze(net, x, target="t4")) == 0
    assert _growth(3, 10, lambda: layerprof.profile(net, x, target="t4", warmup=1, repeat=2)) == 0
