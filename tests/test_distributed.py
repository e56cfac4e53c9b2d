"""layerprof under torch.distributed: per-rank samples gathered to rank 0, DDP's all-reduce timed.

The pure parts (intervals, ring bytes, merging samples, the table) are tested in this process. The
real thing runs in two processes on the gloo backend over loopback (``_launch``): each writes what
it saw to a JSON file in ``tmp_path``; the parent joins them with a timeout and kills leftovers.
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import os
import socket
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

import layerprof
from layerprof.core.units import milliseconds
from layerprof.distributed.allreduce import ALLREDUCE_ROW, hidden_ms, ring_allreduce_bytes, union_ms
from layerprof.distributed.gather import GatherError, RankGather, configured_timeout, default_timeout
from layerprof.distributed.merge import RankRow, RankSample, merge_ranks, with_allreduce
from layerprof.errors import InvalidArgumentError
from layerprof.report.facade import AllreduceTime, Report

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

TIMEOUT_S = 30  # the process group's timeout in the children; the parent waits a little longer


class Small(nn.Module):
    """conv -> relu -> pool -> linear: 3 classes from 3x8x8 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))  # type: ignore[no-any-return]


# -- pure arithmetic -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("intervals", "union", "before_4"),
    [
        ([], 0.0, 0.0),
        ([(0.0, 2.0)], 2.0, 2.0),
        ([(0.0, 2.0), (1.0, 3.0)], 3.0, 3.0),  # overlapping: 0..3
        ([(0.0, 1.0), (2.0, 3.0)], 2.0, 2.0),  # apart: 1 + 1
        ([(1.0, 6.0), (2.0, 3.0)], 5.0, 3.0),  # nested: 1..6; before 4: 1..4
        ([(3.0, 5.0), (0.0, 1.0), (4.5, 7.0)], 5.0, 2.0),  # 0..1 + 3..7; before 4: 1 + 1
        ([(5.0, 6.0)], 1.0, 0.0),  # all after the backward
    ],
    ids=["none", "one", "overlapping", "apart", "nested", "unsorted", "after"],
)
def test_union_and_hidden_part_of_intervals(
    intervals: list[tuple[float, float]], union: float, before_4: float
) -> None:
    assert union_ms(intervals) == pytest.approx(union)
    assert hidden_ms(intervals, 4.0) == pytest.approx(before_4)


@pytest.mark.parametrize(
    ("payload", "ranks", "each_way"),
    [
        (1000, 1, 0),  # 2 * 0 / 1 * 1000
        (1000, 2, 1000),  # 2 * 1 / 2 * 1000
        (1000, 4, 1500),  # 2 * 3 / 4 * 1000
        (1000, 8, 1750),  # 2 * 7 / 8 * 1000
    ],
    ids=["1-rank", "2-ranks", "4-ranks", "8-ranks"],
)
def test_ring_allreduce_bytes_sent_and_received(payload: int, ranks: int, each_way: int) -> None:
    assert ring_allreduce_bytes(payload, ranks) == (each_way, each_way)


# -- merging samples (in this process) ----------------------------------------------------------------
def timed_report(times: dict[str, float], total_ms: float) -> Report:
    """analyze()'s report of Small with ``times`` put on its forward rows (rank 0's sample)."""
    report = layerprof.analyze(Small(), input_size=(2, 3, 8, 8), target="t4")
    rows = tuple(replace(r, time_ms=times[r.name], time_iqr_ms=0.0) for r in report.layers)
    return replace(report, layers=rows, total=replace(report.total, time_ms=total_ms))


def sample_of(report: Report, rank: int, times: dict[str, float], total_ms: float) -> RankSample:
    rows = tuple(RankRow(r.phase, r.name, times[r.name], 0.0, r.flops, r.bytes_total) for r in report.layers)
    return RankSample(rank=rank, step=4, rows=rows, total_ms=total_ms, allreduce=None)


RANK_TIMES = [  # conv, relu, pool, fc per rank; rank 1 is slow in conv
    {"conv": 1.0, "relu": 0.5, "pool": 0.25, "fc": 0.125},
    {"conv": 3.0, "relu": 0.5, "pool": 0.25, "fc": 0.125},
    {"conv": 2.0, "relu": 0.4, "pool": 0.25, "fc": 0.125},
]
RANK_TOTALS = [2.0, 4.0, 3.0]


def merged_three_ranks() -> Report:
    base = timed_report(RANK_TIMES[0], RANK_TOTALS[0])
    samples = [sample_of(base, rank, t, RANK_TOTALS[rank]) for rank, t in enumerate(RANK_TIMES)]
    return merge_ranks(base, samples)


def test_merge_takes_the_median_of_every_row_and_keeps_each_rank() -> None:
    merged = merged_three_ranks()
    assert merged.world_size == 3 and merged.ranks is not None
    assert merged.ranks.times("forward", "conv") == (1.0, 3.0, 2.0)
    assert merged.row("conv").time_ms == 2.0  # median(1, 3, 2)
    assert merged.row("relu").time_ms == 0.5  # median(0.5, 0.5, 0.4)
    assert merged.total.time_ms == 3.0  # median(2, 4, 3)
    assert merged.ranks.total_ms == (2.0, 4.0, 3.0)
    # The coverage is worked out again: (2 + 0.5 + 0.25 + 0.125) / 3
    assert merged.coverage == pytest.approx(2.875 / 3.0)
    # Counts are rank 0's, and the rows still add up to the totals.
    assert merged.total.flops == sum(r.flops for r in merged.layers)
    assert merged.row("conv").flops == 2 * 2 * 4 * 8 * 8 * 3 * 9 + 2 * 4 * 8 * 8  # MACs x 2 + bias


def table_cells(report: Report, **options: Any) -> dict[str, dict[str, str]]:
    """Row name -> column header -> cell, from the table in tabulate's tsv format."""
    lines = report.table(fmt="tsv", **options).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("layer "))
    headers = [cell.strip() for cell in lines[start].split("\t")]
    rows = [[cell.strip() for cell in line.split("\t")] for line in lines[start + 1 :] if "\t" in line]
    return {row[0]: dict(zip(headers, row, strict=True)) for row in rows}


SLOWEST = ("max ms", "max rank", "max/med")


def test_the_gathered_table_shows_the_slowest_rank_and_flags_stragglers() -> None:
    report = merged_three_ranks()
    cells = table_cells(report)
    # conv: slowest is rank 1 at 3 ms, median 2 ms: 3 / 2 = 1.50 > 1.2, a straggler
    assert cells["conv"]["median ms"] == milliseconds(2.0)
    assert [cells["conv"][h] for h in SLOWEST] == [milliseconds(3.0), "1", "1.50*"]
    # relu: 0.5 on ranks 0 and 1 (the lower rank is named), median 0.5: 1.00
    assert [cells["relu"][h] for h in SLOWEST] == [milliseconds(0.5), "0", "1.00"]
    # totals: 4 ms on rank 1, median 3: 4 / 3 = 1.33 > 1.2
    assert [cells["total"][h] for h in SLOWEST] == [milliseconds(4.0), "1", "1.33*"]
    text = report.table()
    assert "median over 3 ranks" in text and "above 1.2" in text
    assert "max ms" not in timed_report(RANK_TIMES[0], 2.0).table()  # one process: no such columns


def test_a_higher_threshold_flags_nothing_and_rolled_up_rows_sum_each_rank() -> None:
    base = timed_report(RANK_TIMES[0], RANK_TOTALS[0])
    samples = [sample_of(base, rank, t, RANK_TOTALS[rank]) for rank, t in enumerate(RANK_TIMES)]
    cells = table_cells(merge_ranks(base, samples, straggler_threshold=1.6))
    assert (cells["conv"]["max/med"], cells["total"]["max/med"]) == ("1.50", "1.33")  # below 1.6
    rolled = table_cells(merge_ranks(base, samples), depth=0)
    # (root) at depth 0 sums each rank's rows: rank 1 has 3 + 0.5 + 0.25 + 0.125 = 3.875
    assert [rolled["(root)"][h] for h in SLOWEST[:2]] == [milliseconds(3.875), "1"]


def test_counts_that_differ_between_ranks_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    base = timed_report(RANK_TIMES[0], RANK_TOTALS[0])
    other = sample_of(base, 1, RANK_TIMES[1], RANK_TOTALS[1])
    other = replace(other, rows=(replace(other.rows[0], flops=other.rows[0].flops + 1), *other.rows[1:]))
    with caplog.at_level(logging.WARNING, logger="layerprof.distributed.merge"):
        merged = merge_ranks(base, [sample_of(base, 0, RANK_TIMES[0], 2.0), other])
    assert "differ on rank 1" in caplog.text and "conv" in caplog.text
    assert merged.row("conv").flops == base.row("conv").flops  # rank 0's kept


def test_the_allreduce_row_adds_its_bytes_and_the_exposed_time_to_the_step() -> None:
    base = timed_report(RANK_TIMES[0], RANK_TOTALS[0])
    payload = 1000
    sent, received = ring_allreduce_bytes(payload, 2)
    row = replace(
        base.layers[0],
        name=ALLREDUCE_ROW,
        kind="allreduce",
        phase="backward",
        flops=0,
        matrix_flops=0,
        params=0,
        bytes_read=sent,
        bytes_written=received,
        time_ms=1.5,
    )
    report = with_allreduce(
        base, row, AllreduceTime(buckets=2, payload_bytes=payload, time_ms=1.5, hidden_ms=1.0)
    )
    assert report.row(ALLREDUCE_ROW, "backward").bytes_total == 2000  # 1000 x 2 (2 - 1) / 2 x 2
    assert report.total.bytes_total == base.total.bytes_total + 2000
    assert report.total.time_ms == 2.0 + (1.5 - 1.0)  # the part the backward did not hide
    text = report.table()
    assert "DDP all-reduce: 1.50 ms over 2 buckets" in text and "67% hidden behind the backward" in text


def test_gathered_reports_validate_against_the_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(
        resources.files("layerprof.report").joinpath("data", "report.schema.json").read_text(encoding="utf-8")
    )
    document = json.loads(merged_three_ranks().to_json())
    jsonschema.Draft202012Validator(schema).validate(document)
    conv = next(r for r in document["ranks"]["rows"] if r["name"] == "conv")
    assert conv == {"phase": "forward", "name": "conv", "time_ms": [1.0, 3.0, 2.0]}
    assert document["ranks"]["world_size"] == 3 and document["allreduce"] is None


# -- one process: the watcher's integration point and the arguments ------------------------------------
class RecordingTap:
    """A gather helper that records what the watcher tells it."""

    def __init__(self, feeds_sink: bool) -> None:
        self.calls: list[str] = []
        self._feeds = feeds_sink

    def attach(self, model: nn.Module) -> None:
        self.calls.append("attach")

    def timing_started(self) -> None:
        self.calls.append("timing")

    def backward_over(self) -> None:
        self.calls.append("backward over")

    def dropped(self) -> None:
        self.calls.append("dropped")

    def close(self) -> None:
        self.calls.append("close")

    @property
    def feeds_sink(self) -> bool:
        return self._feeds

    def finish(self, report: Report, step: int) -> Report:
        self.calls.append(f"finish {step}")
        return replace(report, model_name="finished")


def train_small(model: nn.Module, steps: int) -> None:
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        x, y = torch.randn(2, 3, 8, 8, generator=generator), torch.randint(0, 3, (2,), generator=generator)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize("feeds_sink", [True, False], ids=["rank-0", "other-rank"])
def test_the_watcher_tells_its_gather_helper_each_stage(feeds_sink: bool) -> None:
    tap = RecordingTap(feeds_sink)
    reports: list[Report] = []
    watcher = layerprof.watch(Small(), every=2, target=None, sink=reports.append, gather=tap)
    with watcher:
        train_small(watcher.model, 3)  # step 0 counted, 1 timed; 2 counted, removed in flight
    assert tap.calls == ["attach", "timing", "backward over", "finish 0", "close"]
    assert watcher.last_report is not None and watcher.last_report.model_name == "finished"
    assert [r.model_name for r in reports] == (["finished"] if feeds_sink else [])


def test_rank_gather_without_torch_distributed_changes_nothing() -> None:
    assert not dist.is_initialized()
    reports: list[Report] = []
    model = Small()
    with layerprof.watch(model, every=2, target=None, sink=reports.append, gather=RankGather()):
        train_small(model, 3)
    assert len(reports) == 1
    assert reports[0].ranks is None and reports[0].allreduce is None and reports[0].world_size == 1
    assert not any(r.name == ALLREDUCE_ROW for r in reports[0].layers)  # not DDP: no all-reduce row


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"straggler_threshold": 0.9}, "straggler_threshold"),
        ({"straggler_threshold": "1.2"}, "straggler_threshold"),
        ({"straggler_threshold": True}, "straggler_threshold"),
        ({"every_rank_sink": 1}, "every_rank_sink"),
        ({"time_allreduce": None}, "time_allreduce"),
        ({"timeout": 30}, "timeout"),
        ({"timeout": timedelta(seconds=-1)}, "timeout"),
    ],
    ids=[
        "threshold-below-1",
        "threshold-str",
        "threshold-bool",
        "sink-int",
        "allreduce-none",
        "timeout-int",
        "timeout-negative",
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(InvalidArgumentError, match=named):
        RankGather(**kwargs)


def test_a_gather_helper_serves_one_watcher() -> None:
    gather = RankGather()
    first, second = Small(), Small()
    with layerprof.watch(first, every=2, target=None, gather=gather):
        with pytest.raises(InvalidArgumentError, match="its own"):
            layerprof.watch(second, every=2, target=None, gather=gather)
        assert not second._forward_pre_hooks  # the refused watcher took its hook off


def test_a_refused_gather_helper_is_not_closed_by_the_watcher_it_refused() -> None:
    class Refusing(RecordingTap):
        def attach(self, model: nn.Module) -> None:
            super().attach(model)
            raise InvalidArgumentError("refused")

    tap = Refusing(feeds_sink=True)
    with pytest.raises(InvalidArgumentError, match="refused"):
        layerprof.watch(Small(), every=2, target=None, gather=tap)
    assert tap.calls == ["attach"]  # no close: it never served that watcher


def test_gather_must_be_a_gather_helper() -> None:
    with pytest.raises(InvalidArgumentError, match="gather"):
        layerprof.watch(Small(), gather=object())  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="gather"):
        layerprof.profile(Small(), torch.randn(1, 3, 8, 8), gather=object())  # type: ignore[arg-type]


# -- two processes on gloo -----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(
    worker: Callable[..., None], tmp_path: Path, *args: Any, wait_for: tuple[int, ...] = (0, 1)
) -> list[int | None]:
    """Run ``worker(rank, port, tmp_path, *args)`` in two spawned processes; wait for the ranks in
    ``wait_for`` (at most the process group's timeout and a minute), kill the others; exit codes."""
    context = multiprocessing.get_context("spawn")
    port = _free_port()
    processes = [context.Process(target=worker, args=(rank, port, tmp_path, *args)) for rank in range(2)]
    for process in processes:
        process.start()
    deadline = time.monotonic() + TIMEOUT_S + 60
    try:
        for rank in wait_for:
            processes[rank].join(max(0.0, deadline - time.monotonic()))
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)
    return [process.exitcode for process in processes]


def _init(rank: int, port: int, timeout_s: float = TIMEOUT_S) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=timeout_s),
    )


def _write(tmp_path: Path, rank: int, result: dict[str, Any]) -> None:
    (tmp_path / f"rank{rank}.json").write_text(json.dumps(result), encoding="utf-8")


def _read(tmp_path: Path, rank: int) -> dict[str, Any]:
    path = tmp_path / f"rank{rank}.json"
    assert path.exists(), f"rank {rank} wrote no result (it crashed; see the captured stderr)"
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _ddp_resnet18_worker(rank: int, port: int, tmp_path: Path) -> None:
    import torchvision
    from torch.nn.parallel import DistributedDataParallel

    result: dict[str, Any] = {"rank": rank}
    try:
        _init(rank, port)
        torch.manual_seed(0)
        base = torchvision.models.resnet18(num_classes=10)
        plain = DistributedDataParallel(copy.deepcopy(base))
        watched = DistributedDataParallel(base)
        generator = torch.Generator().manual_seed(rank)  # each rank its own data, as DDP does
        data = [
            (torch.randn(2, 3, 32, 32, generator=generator), torch.randint(0, 10, (2,), generator=generator))
            for _ in range(3)
        ]
        reports: list[Report] = []
        # No gather argument: under torch.distributed with 2 ranks, watch() gathers by default.
        watcher = layerprof.watch(watched, every=2, target=None, sink=reports.append)
        # The other model's watcher does not time the all-reduce, and feeds every rank's sink.
        plain_reports: list[Report] = []
        every_rank = RankGather(every_rank_sink=True, time_allreduce=False)
        plain_watcher = layerprof.watch(
            plain, every=2, target=None, sink=plain_reports.append, gather=every_rank
        )
        for model in (plain, watched):
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
            for x, y in data:  # forward 2 counted, forward 3 timed
                F.cross_entropy(model(x), y).backward()
                optimizer.step()
                optimizer.zero_grad()
        watcher.remove()
        plain_watcher.remove()
        assert watcher.last_report is not None
        result["plain_sink"] = [(r.world_size, r.allreduce is None) for r in plain_reports]
        result["sink_calls"] = len(reports)
        result["report"] = watcher.last_report.to_dict()
        result["table"] = watcher.last_report.table()
        result["params"] = sum(p.numel() for p in base.parameters())
        result["same_as_unwatched"] = all(
            torch.equal(a, b)
            for a, b in zip(plain.state_dict().values(), watched.state_dict().values(), strict=True)
        )
        result["weights_sum"] = float(sum(p.double().sum() for p in watched.parameters()))
        profiled = layerprof.profile(base, data[0][0], target=None, warmup=1, repeat=2, gather=RankGather())
        result["profile_world_size"] = profiled.world_size
        timeout = configured_timeout(None)
        result["configured_timeout_s"] = None if timeout is None else timeout.total_seconds()
        result["default_timeout_s"] = default_timeout().total_seconds()
        dist.destroy_process_group()
    except BaseException:
        result["error"] = traceback.format_exc()
    _write(tmp_path, rank, result)


@pytest.mark.timeout(TIMEOUT_S + 90)
def test_ddp_resnet18_on_two_ranks_gives_rank_0_one_table(tmp_path: Path) -> None:
    codes = _launch(_ddp_resnet18_worker, tmp_path)
    zero, one = _read(tmp_path, 0), _read(tmp_path, 1)
    assert "error" not in zero, zero["error"]
    assert "error" not in one, one["error"]
    assert codes == [0, 0]
    # Rank 0's sink got one gathered report; rank 1's sink got nothing.
    assert zero["sink_calls"] == 1 and one["sink_calls"] == 0
    # every_rank_sink: rank 1's sink gets its own report, rank 0's the gathered one; no all-reduce timed
    assert zero["plain_sink"] == [[2, True]] and one["plain_sink"] == [[1, True]]
    gathered, own = zero["report"], one["report"]  # rank 1's last_report is its own sample
    assert gathered["ranks"]["world_size"] == 2 and own["ranks"] is None
    times = {(r["phase"], r["name"]): r["time_ms"] for r in gathered["ranks"]["rows"]}
    assert len(times) == len(gathered["layers"])
    for row in gathered["layers"]:
        per_rank = times[(row["phase"], row["name"])]
        assert len(per_rank) == 2 and None not in per_rank, row["name"]
        assert row["time_ms"] == pytest.approx(statistics.median(per_rank)), row["name"]
    for row in own["layers"]:  # rank 1's column is rank 1's own times; its counts are rank 0's
        assert times[(row["phase"], row["name"])][1] == row["time_ms"], row["name"]
    counts = {
        (r["phase"], r["name"]): (r["flops"], r["bytes_read"], r["bytes_written"]) for r in own["layers"]
    }
    assert counts == {(r["phase"], r["name"]): (r["flops"], r["bytes_read"], r["bytes_written"])
                      for r in gathered["layers"]}  # fmt: skip
    assert gathered["ranks"]["total_ms"][1] == own["total"]["time_ms"]
    assert gathered["total"]["time_ms"] == pytest.approx(statistics.median(gathered["ranks"]["total_ms"]))

    # The all-reduce row: resnet18's gradients, float32, sent and received in a ring of 2.
    params = zero["params"]
    assert (
        params == 11_181_642
    )  # resnet18 with 10 classes: 11_689_512 - 512 * (1000 - 10) weights - 990 biases
    allreduce = next(r for r in gathered["layers"] if r["name"] == ALLREDUCE_ROW)
    assert allreduce["phase"] == "backward" and allreduce["flops"] == 0
    # params x 4 bytes x 2 (2 - 1) / 2 each way, x 2 ways, summed over the buckets
    assert allreduce["bytes_read"] == allreduce["bytes_written"] == params * 4 * 2 * (2 - 1) // 2
    assert allreduce["bytes_read"] + allreduce["bytes_written"] == params * 4 * 2
    assert allreduce["time_ms"] > 0 and allreduce["calls"] == gathered["allreduce"]["buckets"] >= 1
    assert gathered["allreduce"]["payload_bytes"] == params * 4
    assert 0 <= gathered["allreduce"]["hidden_ms"] <= gathered["allreduce"]["time_ms"]
    assert "c10d.allreduce_" not in gathered["unsupported"]  # the counter never saw it

    table = zero["table"]
    assert "median ms" in table and "max rank" in table and ALLREDUCE_ROW in table
    assert (
        "median over 2 ranks" in table
        and "DDP all-reduce:" in table
        and "hidden behind the backward" in table
    )
    # The comm hook leaves training as DDP's own all-reduce does, on every rank.
    assert zero["same_as_unwatched"] and one["same_as_unwatched"]
    assert zero["weights_sum"] == one["weights_sum"]
    assert zero["profile_world_size"] == 2 and one["profile_world_size"] == 1
    # The group's own timeout, not torch's 30-minute default; rank 0 waits for samples half of it.
    assert zero["configured_timeout_s"] == TIMEOUT_S
    assert zero["default_timeout_s"] == TIMEOUT_S / 2


HANG_TIMEOUT_S = 4  # how long rank 0 waits for a rank that hangs


def _dying_rank_worker(rank: int, port: int, tmp_path: Path, how: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    result: dict[str, Any] = {"rank": rank}
    try:
        _init(rank, port)
        model = DistributedDataParallel(Small())
        # Rank 0 gathers; rank 1 trains the same steps but never reaches the gather: it stops after.
        gather = RankGather(timeout=timedelta(seconds=HANG_TIMEOUT_S)) if rank == 0 else False
        started = time.monotonic()
        try:
            with layerprof.watch(model, every=2, target=None, sink=lambda report: None, gather=gather):
                train_small(model, 3)  # forward 3 is timed: rank 0 gathers at the end of its backward
        except GatherError as error:  # held through the backward, raised by remove()
            result.update(error=type(error).__name__, message=str(error), missing=list(error.missing_ranks))
        result["waited_s"] = time.monotonic() - started
    except BaseException:
        result["crash"] = traceback.format_exc()
    _write(tmp_path, rank, result)
    if rank == 1 and how == "hangs":
        time.sleep(TIMEOUT_S + 60)  # alive, but never at the gather; the parent kills it
    if rank == 1:
        raise SystemExit("rank 1 stops before the gather")
    os._exit(0)  # a process group whose peer died cannot be torn down cleanly


@pytest.mark.timeout(TIMEOUT_S + 90)
@pytest.mark.parametrize("how", ["dies", "hangs"])
def test_a_rank_that_never_reaches_the_gather_makes_rank_0_raise_naming_it(tmp_path: Path, how: str) -> None:
    codes = _launch(_dying_rank_worker, tmp_path, how, wait_for=(0,))
    zero = _read(tmp_path, 0)
    assert "crash" not in zero, zero["crash"]
    assert codes[0] == 0, "rank 0 hung or crashed"
    assert zero.get("error") == "GatherError", zero
    assert zero["missing"] == [1] and "rank 1" in zero["message"]
    # A rank that sends no sample, dead or alive, is given up after the gather's timeout.
    assert HANG_TIMEOUT_S <= zero["waited_s"] < HANG_TIMEOUT_S + 10


def test_default_gather_is_on_only_with_several_ranks() -> None:
    from layerprof.distributed.gather import default_gather

    assert not dist.is_initialized()
    assert default_gather(None) is None  # no process group: nothing to gather
    assert default_gather(False) is None
    mine = RankGather()
    assert default_gather(mine) is mine


def test_gather_true_asks_for_a_rank_gather() -> None:
    from layerprof.distributed.gather import default_gather

    assert isinstance(default_gather(True), RankGather)
