"""The TensorBoard sink: what watch() writes is read back from the event file, value by value."""

from __future__ import annotations

import builtins
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import layerprof
from conftest import import_or_skip_outside_ci
from layerprof.api.sinks import TensorBoard, resolve_sink
from layerprof.errors import InvalidArgumentError

event_accumulator = import_or_skip_outside_ci("tensorboard.backend.event_processing.event_accumulator")


def _train(sink: Any, steps: int) -> list[layerprof.Report]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    seen: list[layerprof.Report] = []
    x, y = torch.randn(2, 3, 8, 8), torch.tensor([0, 1])
    tensorboard = resolve_sink(sink)

    def both(report: layerprof.Report) -> None:  # the sink under test, and a record of what it got
        seen.append(report)
        tensorboard(report, report.step if report.step is not None else -1)

    with layerprof.watch(model, every=2, target="t4", sink=both):
        for _ in range(steps):
            F.cross_entropy(model(x), y).backward()
    return seen


def _events(folder: Path) -> Any:
    accumulator = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def test_every_sample_lands_as_scalars_and_a_table(tmp_path: Path) -> None:
    reports = _train(f"tensorboard:{tmp_path / 'runs'}", steps=6)
    assert [r.step for r in reports] == [0, 2, 4]  # step 0, then every 2
    events = _events(tmp_path / "runs")
    tags = set(events.Tags()["scalars"])
    for report in reports:
        for row in report.layers:
            base = f"layerprof/{row.phase}/{row.name}"
            assert f"{base}/compute_bound@t4" in tags
            values = {e.step: e.value for e in events.Scalars(f"{base}/compute_bound@t4")}
            assert values[report.step] == (1.0 if row.roofline["t4"].bound == "compute" else 0.0)
            if row.time_ms is not None:
                times = {e.step: e.value for e in events.Scalars(f"{base}/time_ms")}
                assert times[report.step] == pytest.approx(row.time_ms, rel=1e-6)
                rates = {e.step: e.value for e in events.Scalars(f"{base}/flops_per_s")}
                assert rates[report.step] == pytest.approx(row.flops / (row.time_ms * 1e-3), rel=1e-5)
        flops = {e.step: e.value for e in events.Scalars("layerprof/total/flops")}
        assert flops[report.step] == pytest.approx(report.total.flops, rel=1e-6)
    texts = events.Tensors("layerprof/table/text_summary")  # what add_text("layerprof/table", ...) writes
    assert [t.step for t in texts] == [0, 2, 4]
    first = texts[0].tensor_proto.string_val[0].decode()
    assert first.splitlines()[0] == "    " + reports[0].table().splitlines()[0]


def test_a_writer_of_your_own(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "mine"))
    sink = layerprof.sinks.TensorBoard(writer)
    assert resolve_sink(sink) is sink
    _train(sink, steps=2)  # a sample is counted on step 0 and timed on step 1
    writer.close()
    assert "layerprof/forward/0/compute_bound@t4" in _events(tmp_path / "mine").Tags()["scalars"]


def test_bad_tensorboard_sinks(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidArgumentError, match="names no log directory"):
        resolve_sink("tensorboard:")
    with pytest.raises(InvalidArgumentError, match="needs a SummaryWriter or a log directory, got int"):
        TensorBoard(3)
    real_import = builtins.__import__

    def no_tensorboard(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "torch.utils.tensorboard":
            raise ImportError("no tensorboard")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(InvalidArgumentError, match="pip install tensorboard"):
        resolve_sink("tensorboard:runs/x")
