"""report.to_trace() and ``audit --format trace``: Chrome trace-event JSON, checked against the format's
rules by reading the file back (valid JSON, complete events with ts/dur in microseconds, pid/tid,
metadata naming the process and threads, proper nesting), and against the report it came from."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import layerprof
from layerprof.cli import main
from layerprof.core.records import LayerRow
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.table import get_device
from layerprof.report.facade import Report
from layerprof.roofline.verdicts import judge

T4 = get_device("t4")
METADATA_NAMES = {"process_name", "process_labels", "process_sort_index", "thread_name", "thread_sort_index"}

# -- the format's rules, written out independently of the exporter -------------------------------------


def _ns(microseconds: float) -> int:
    return round(microseconds * 1000)


def check_trace_format(document: Any) -> list[dict[str, Any]]:
    """The complete events of a trace-event JSON object, after checking every rule the viewers rely on.

    Returns the ``X`` events, each with ``"parent"`` added: the index (in the returned list) of the
    innermost event on the same thread that encloses it, None at the top.
    """
    assert isinstance(document, dict) and isinstance(document["traceEvents"], list)
    assert document.get("displayTimeUnit", "ms") in ("ms", "ns")
    complete: list[dict[str, Any]] = []
    named_processes: set[int] = set()
    named_threads: set[tuple[int, int]] = set()
    for event in document["traceEvents"]:
        assert event["ph"] in ("X", "M"), event
        assert isinstance(event["name"], str) and event["name"], event
        for key in ("pid", "tid"):
            assert isinstance(event[key], int) and not isinstance(event[key], bool), event
        assert isinstance(event["args"], dict), event
        if event["ph"] == "M":
            assert event["name"] in METADATA_NAMES, event
            if event["name"] == "process_name":
                named_processes.add(event["pid"])
            if event["name"] == "thread_name":
                named_threads.add((event["pid"], event["tid"]))
            if event["name"].endswith("_name"):
                assert isinstance(event["args"]["name"], str) and event["args"]["name"]
            continue
        for key in ("ts", "dur"):
            value = event[key]
            assert isinstance(value, (int, float)) and not isinstance(value, bool), event
            assert math.isfinite(value) and value >= 0, event
        assert isinstance(event["cat"], str), event
        complete.append(dict(event))
    assert complete, "no complete events"
    for event in complete:
        assert event["pid"] in named_processes, f"process {event['pid']} has no process_name"
        assert (event["pid"], event["tid"]) in named_threads, f"thread {event['tid']} has no thread_name"
    _check_nesting(complete)
    return complete


def _check_nesting(events: list[dict[str, Any]]) -> None:
    """On each thread, two slices are disjoint or one holds the other; record each one's parent."""

    def key(i: int) -> tuple[int, int, int]:
        return events[i]["tid"], _ns(events[i]["ts"]), -_ns(events[i]["dur"])

    order = sorted(range(len(events)), key=key)
    stack: list[int] = []
    thread = None
    for index in order:
        event = events[index]
        if event["tid"] != thread:
            stack, thread = [], event["tid"]
        start, end = _ns(event["ts"]), _ns(event["ts"]) + _ns(event["dur"])
        while stack and start >= _end(events[stack[-1]]) and not _holds(events[stack[-1]], start, end):
            stack.pop()
        if stack:
            parent = events[stack[-1]]
            assert _holds(parent, start, end), f"{event['name']} overlaps {parent['name']} without nesting"
        event["parent"] = stack[-1] if stack else None
        stack.append(index)


def _end(event: dict[str, Any]) -> int:
    return _ns(event["ts"]) + _ns(event["dur"])


def _holds(event: dict[str, Any], start: int, end: int) -> bool:
    return _ns(event["ts"]) <= start and end <= _end(event)


def expected_parent(name: str, phase: str) -> str:
    """The enclosing range a row's or container's slice belongs in, from the name alone."""
    module, glue, _ = name.partition("/")
    if module.startswith("("):
        return phase
    if glue:
        return module
    return module.rpartition(".")[0] or phase


def read_back(report: Report, tmp_path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    path = tmp_path / "model.trace.json"
    text = report.to_trace(path)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert json.loads(text) == document
    return document, check_trace_format(document)


def check_against_report(report: Report, events: list[dict[str, Any]]) -> None:
    """Every row once on the rows' thread, back to back, forward first, inside the right ranges."""
    rows_thread = [e for e in events if e["tid"] == 1]
    row_events = [e for e in rows_thread if e["cat"] in ("forward", "backward")]
    assert [(e["cat"], e["name"]) for e in row_events] == [(r.phase, r.name) for r in report.layers]
    for row, event in zip(report.layers, row_events, strict=True):
        assert event["dur"] == pytest.approx((row.time_ms or 0.0) * 1000, abs=1e-3)
        args = event["args"]
        assert (args["flops"], args["bytes_read"], args["bytes_written"]) == (
            row.flops, row.bytes_read, row.bytes_written,
        )  # fmt: skip
        assert args["bound"] == row.bound and args["time_ms"] == row.time_ms
        for target in report.targets:
            assert args[f"bound@{target.name}"] == row.roofline[target.name].bound
        parent = events[event["parent"]]
        assert parent["name"] == expected_parent(row.name, row.phase), row.name
    for previous, following in itertools.pairwise(row_events):
        assert _ns(following["ts"]) == _end(previous)  # back to back, in the report's order
    forward = [e for e in row_events if e["cat"] == "forward"]
    backward = [e for e in row_events if e["cat"] == "backward"]
    if backward:
        assert max(_end(e) for e in forward) <= min(_ns(e["ts"]) for e in backward)
    for event in rows_thread:
        if event["cat"] == "container":
            phase = events[_phase_of(events, event)]["name"]
            assert events[event["parent"]]["name"] == expected_parent(event["name"], phase)
            assert {"flops", "bytes_read", "bytes_written", "bound", "time_ms"} <= set(event["args"])
        if event["cat"] == "phase":
            assert event["parent"] is None
            assert event["args"]["flops"] == sum(r.flops for r in report.layers if r.phase == event["name"])


def _phase_of(events: list[dict[str, Any]], event: dict[str, Any]) -> int:
    index = event["parent"]
    while events[index]["parent"] is not None:
        index = events[index]["parent"]
    return int(index)


# -- models ---------------------------------------------------------------------------------------------


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x)) + x  # type: ignore[no-any-return]  # the glue row stage.0/add


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.stage = nn.Sequential(Block(4), Block(4))
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stage(self.stem(x)).mean(dim=(2, 3)))  # type: ignore[no-any-return]


# -- a profiled model ---------------------------------------------------------------------------------


def test_a_profiled_model_becomes_a_valid_nested_trace(tmp_path: Path) -> None:
    torch.manual_seed(0)
    report = layerprof.profile(Net().eval(), torch.randn(2, 3, 8, 8), target="t4", warmup=1, repeat=3)
    document, events = read_back(report, tmp_path)
    check_against_report(report, events)
    names = {e["name"] for e in events if e["cat"] == "container"}
    assert names == {"stage", "stage.0", "stage.1"}
    assert events[next(i for i, e in enumerate(events) if e["name"] == "stage.0/add")]["parent"] is not None
    assert not [e for e in events if e["tid"] == 2]  # no kernel times asked for: no kernel thread
    assert "synthesised" in document["otherData"]["note"]
    process = next(e for e in document["traceEvents"] if e["name"] == "process_name")
    assert process["args"]["name"] == "layerprof: Net"


def test_a_watched_training_step_has_forward_then_backward(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    reports: list[Report] = []
    with layerprof.watch(model, every=2, target="t4", sink=reports.append):
        for _ in range(4):
            x, y = torch.randn(2, 3, 8, 8), torch.randint(0, 5, (2,))
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            optimizer.zero_grad()
    report = reports[0]
    assert report.backward
    _, events = read_back(report, tmp_path)
    check_against_report(report, events)
    assert [e["name"] for e in events if e["cat"] == "phase"] == ["forward", "backward"]


# -- a hand-made report: every position known ----------------------------------------------------------


def _row(name: str, time_ms: float | None, phase: str = "forward", flops: int = 1000) -> LayerRow:
    row = LayerRow(
        name=name, kind="Op", phase=phase, flops=flops, matrix_flops=flops // 2,  # type: ignore[arg-type]
        bytes_read=400, bytes_written=100, time_ms=time_ms, time_iqr_ms=None if time_ms is None else 0.01,
    )  # fmt: skip
    return judge(row, [T4])


def hand_made(
    kernels: dict[str, float] | None = None, times: Mapping[str, float | None] = MappingProxyType({})
) -> Report:
    spec: dict[str, float | None] = {
        "stem": 1.0, "block.conv": 2.0, "block/add": 0.5, "(root)/cat": 0.25, "block.relu": 0.75,
        "head.fc": 1.5, "bwd:head.fc": 3.0, "bwd:block.conv": 4.0, "bwd:(ddp)/allreduce": 1.0,
    }  # fmt: skip
    spec.update(times)
    layers = tuple(
        _row(name.removeprefix("bwd:"), ms, "backward" if name.startswith("bwd:") else "forward")
        for name, ms in spec.items()
    )
    total = judge(LayerRow(name="total", kind="Net", flops=9000, time_ms=6.0), [T4], rows=layers)
    return Report(
        layers=layers,
        total=total,
        targets=(T4,),
        model_name="Net",
        module_kinds={"block": "Block", "head": "Head"},
        kernel_time_ms=kernels,
    )


def spans(events: list[dict[str, Any]], tid: int = 1) -> list[tuple[str, str, int, int, str | None]]:
    """(category, name, start us, end us, parent name) of a thread's slices, in the file's order."""
    return [
        (
            e["cat"],
            e["name"],
            _ns(e["ts"]) // 1000,
            _end(e) // 1000,
            None if e["parent"] is None else events[e["parent"]]["name"],
        )
        for e in events
        if e["tid"] == tid
    ]


def test_a_hand_made_report_is_laid_out_back_to_back(tmp_path: Path) -> None:
    report = hand_made()
    _, events = read_back(report, tmp_path)
    check_against_report(report, events)
    assert spans(events) == [
        ("phase", "forward", 0, 6000, None),
        ("forward", "stem", 0, 1000, "forward"),
        ("container", "block", 1000, 3500, "forward"),
        ("forward", "block.conv", 1000, 3000, "block"),
        ("forward", "block/add", 3000, 3500, "block"),
        ("forward", "(root)/cat", 3500, 3750, "forward"),
        ("container", "block", 3750, 4500, "forward"),  # block runs again: a second range
        ("forward", "block.relu", 3750, 4500, "block"),
        ("container", "head", 4500, 6000, "forward"),
        ("forward", "head.fc", 4500, 6000, "head"),
        ("phase", "backward", 6000, 14000, None),
        ("container", "head", 6000, 9000, "backward"),
        ("backward", "head.fc", 6000, 9000, "head"),
        ("container", "block", 9000, 13000, "backward"),
        ("backward", "block.conv", 9000, 13000, "block"),
        ("backward", "(ddp)/allreduce", 13000, 14000, "backward"),
    ]
    first_block = next(e for e in events if e["name"] == "block")
    assert first_block["args"]["kind"] == "Block" and first_block["args"]["rows"] == 2
    assert first_block["args"]["flops"] == 2000 and first_block["args"]["time_ms"] == pytest.approx(2.5)
    assert first_block["args"]["bound@t4"] == "memory"  # 2000 FLOPs over 1000 bytes, far under T4's ridge
    backward = next(e for e in events if e["name"] == "backward")
    assert backward["args"]["flops"] == 3000 and backward["args"]["rows"] == 3


def test_kernel_times_get_their_own_thread_under_their_rows(tmp_path: Path) -> None:
    report = hand_made(kernels={"stem": 0.0, "block.conv": 1.5, "head.fc": 2.0})
    document, events = read_back(report, tmp_path)
    check_against_report(report, events)
    assert spans(events, tid=2) == [
        ("kernel", "block.conv", 1000, 2500, None),
        ("kernel", "head.fc", 4500, 6000, None),  # 2 ms of kernels cut to its row's 1.5 ms
    ]
    kernels = {e["name"]: e["args"] for e in events if e["tid"] == 2}
    assert kernels["block.conv"] == {"kernel_time_ms": 1.5, "time_ms": 2.0, "clipped": False}
    assert kernels["head.fc"] == {"kernel_time_ms": 2.0, "time_ms": 1.5, "clipped": True}
    threads = {e["tid"]: e["args"]["name"] for e in document["traceEvents"] if e["name"] == "thread_name"}
    assert set(threads) == {1, 2} and "kernel" in threads[2].lower()
    order = {
        e["tid"]: e["args"]["sort_index"] for e in document["traceEvents"] if e["name"] == "thread_sort_index"
    }
    assert order[1] < order[2]  # the kernels' track sits under the rows'


def test_an_untimed_row_in_a_timed_report_is_a_marked_zero_length_slice(tmp_path: Path) -> None:
    _, events = read_back(hand_made(times={"block/add": None}), tmp_path)
    add = next(e for e in events if e["name"] == "block/add")
    assert add["dur"] == 0 and add["args"]["untimed"] is True and add["args"]["time_ms"] is None


def test_an_untimed_report_is_refused() -> None:
    report = layerprof.analyze(Net(), input_size=(1, 3, 8, 8), target="t4")
    with pytest.raises(InvalidArgumentError, match=r"no measured times.*profile"):
        report.to_trace()


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_a_time_that_cannot_be_laid_out_is_refused(bad: float) -> None:
    with pytest.raises(InvalidArgumentError, match=r"block\.conv"):
        hand_made(times={"block.conv": bad}).to_trace()


# -- the command line -----------------------------------------------------------------------------------

MODELS = """
from torch import nn


def tiny():
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.Sequential(nn.ReLU(), nn.Flatten()), nn.Linear(1024, 5)
    )
"""


@pytest.fixture
def models_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # audit reads ./pyproject.toml
    path = tmp_path / "trace_models.py"
    path.write_text(MODELS, encoding="utf-8")
    return path


def test_audit_writes_a_trace(models_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tiny.trace.json"
    argv = ["audit", f"{models_file}:tiny", "--input-size", "1,3,16,16", "--target", "t4", "--device", "cpu"]
    timed = ["--time", "--warmup", "1", "--repeat", "2"]
    code = main([*argv, *timed, "--format", "trace", "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out == "" and "trace report written to" in captured.err
    events = check_trace_format(json.loads(out.read_text(encoding="utf-8")))
    assert [e["name"] for e in events if e["cat"] == "forward"] == ["0", "1.0", "1.1", "2"]
    assert [e["name"] for e in events if e["cat"] == "container"] == ["1"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--output", "x.trace.json"], "--format trace lays out measured times: it needs --time"),
        (["--time"], "--format trace writes a file: give --output FILE"),
    ],
    ids=["without-time", "without-output"],
)
def test_audit_trace_usage_errors(
    models_file: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["audit", f"{models_file}:tiny", "--target", "t4", "--format", "trace", *extra]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and captured.out == ""


# -- on a GPU: CUDA kernel times --------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_kernel_times_sit_inside_their_rows(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Net().eval().cuda()
    x = torch.randn(8, 3, 32, 32, device="cuda")
    report = layerprof.profile(model, x, target=None, repeat=5, kernel_time=True)
    assert report.kernel_time_ms is not None
    _, events = read_back(report, tmp_path)
    check_against_report(report, events)
    rows = {e["name"]: e for e in events if e["cat"] == "forward"}
    kernels = [e for e in events if e["tid"] == 2]
    assert kernels, "no kernel slices"
    assert {e["name"] for e in kernels} == {name for name, ms in report.kernel_time_ms.items() if ms > 0}
    for kernel in kernels:
        row = rows[kernel["name"]]
        assert kernel["ts"] == row["ts"] and _end(kernel) <= _end(row)
        assert kernel["args"]["kernel_time_ms"] == report.kernel_time_ms[kernel["name"]]
        assert kernel["args"]["clipped"] == (report.kernel_time_ms[kernel["name"]] * 1000 > row["dur"] + 1e-3)
