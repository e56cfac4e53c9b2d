"""What a watch() table says: which step it sampled (the first one too), and a total that says it holds
the forward and the backward (issue #13)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import layerprof
from layerprof.report.facade import Report


def small() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def train(model: nn.Module, steps: int) -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(2, 3, 6, 6, generator=generator)
        y = torch.randint(0, 5, (2,), generator=generator)
        F.cross_entropy(model(x), y).backward()


def watched(steps: int, every: int, **kwargs: object) -> list[Report]:
    reports: list[Report] = []
    model = small()
    with layerprof.watch(model, every=every, target=None, sink=reports.append, **kwargs):  # type: ignore[arg-type]
        train(model, steps)
    return reports


def test_a_run_as_long_as_every_gets_the_table_of_its_first_step() -> None:
    reports = watched(100, every=100)
    assert [r.step for r in reports] == [0]
    assert reports[0].table().splitlines()[0] == "layerprof: Sequential (2x3x6x6), step 0"


def test_the_first_step_then_every_nth_after_it() -> None:
    reports = watched(102, every=100)  # steps 0 (timed at 1) and 100 (timed at 101)
    assert [r.step for r in reports] == [0, 100]
    assert [r.table().splitlines()[0] for r in reports] == [
        "layerprof: Sequential (2x3x6x6), step 0",
        "layerprof: Sequential (2x3x6x6), step 100",
    ]
    assert [str(r).splitlines()[0] for r in reports] == [r.table().splitlines()[0] for r in reports]


def test_every_one_samples_every_other_step() -> None:
    # A sample takes two steps (counted, then timed): with every=1 steps 0, 2, 4 are sampled.
    assert [r.step for r in watched(6, every=1)] == [0, 2, 4]


def test_the_total_of_a_sampled_step_is_the_step_not_the_forward() -> None:
    (report,) = watched(2, every=10)
    total = report.total
    assert total.phase == "step"
    assert report.forward and report.backward
    assert total.flops == sum(r.flops for r in report.forward) + sum(r.flops for r in report.backward)
    assert total.bytes_read == sum(r.bytes_read for r in report.layers)
    # the table's last data line: the totals, phase "step"
    line = next(ln for ln in report.table().splitlines() if ln.startswith("total"))
    assert line.split()[:3] == ["total", "Sequential", "step"]
    assert report.to_dict()["total"]["phase"] == "step" and report.to_dict()["step"] == 0


def test_a_forward_only_sample_has_a_forward_total() -> None:
    (report,) = watched(2, every=10, backward=False)
    assert not report.backward and report.total.phase == "forward"
    assert report.total.flops == sum(r.flops for r in report.forward)


def test_analyze_has_no_step_and_its_training_total_is_a_step() -> None:
    model = small()
    forward = layerprof.analyze(model, input_size=(2, 3, 6, 6))
    assert forward.step is None and forward.total.phase == "forward"
    assert forward.table().splitlines()[0] == "layerprof: Sequential (2x3x6x6)"
    both = layerprof.analyze(model, input_size=(2, 3, 6, 6), backward=True)
    assert both.total.phase == "step"
    assert both.total.flops == sum(r.flops for r in both.layers)


def test_the_jsonl_sink_and_the_schema_carry_the_step(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    path = tmp_path / "samples.jsonl"
    model = small()
    with layerprof.watch(model, every=3, target=None, sink=path):
        train(model, 5)  # steps 0 and 3
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["step"] for line in lines] == [0, 3]
    schema = json.loads(
        resources.files("layerprof.report").joinpath("data", "report.schema.json").read_text(encoding="utf-8")
    )
    for line in lines:
        jsonschema.Draft202012Validator(schema).validate(line)
        assert line["total"]["phase"] == "step"
    bad = {**lines[0], "step": -1}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
