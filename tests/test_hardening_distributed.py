"""Issue #12's findings about gathering samples across ranks, each written so that it failed before its fix.

1. Ranks out of step (no DDP keeping them together): a rank whose sample was dropped sends its next
   one, and rank 0 merged two different steps into one report. Samples now carry their step and kind,
   rank 0 merges only samples of one step and kind, and drops (with a warning) a step a rank skipped,
   so the next samples line up again.
2. Under DDP a GatherError was raised from inside ``loss.backward()`` (an engine callback), which left
   DDP's reducer broken; it is now held and raised at the next forward of the model or at ``remove()``,
   and training goes on. A rank that dies outright gives rank 0 a GatherError naming it, whose message
   says how long rank 0 really waited, within the group's timeout.

The multi-process tests reuse ``tests/test_distributed.py``'s launcher: two spawned processes on gloo
over loopback, each writing what it saw to a JSON file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import traceback
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F

import layerprof
from layerprof.distributed import exchange as exchange_module
from layerprof.distributed.exchange import SampleExchange, Skipped
from layerprof.distributed.gather import GatherError, RankGather
from layerprof.distributed.merge import RankSample, merge_ranks
from layerprof.errors import InvalidArgumentError
from layerprof.report.facade import Report
from test_distributed import RANK_TIMES, Small, _init, _launch, _read, _write, sample_of, timed_report

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


class _Messages(logging.Handler):
    """The messages logged on ``layerprof`` loggers, at WARNING and above."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _listen() -> _Messages:
    handler = _Messages()
    logging.getLogger("layerprof").addHandler(handler)
    return handler


def _batch(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(2, 3, 8, 8, generator=generator), torch.randint(0, 3, (2,), generator=generator)


# -- 1. samples of different steps are never merged -----------------------------------------------------
class _FailsOnce(Small):
    """Small whose forward raises once, when ``fail_next`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("a bad batch")
        return super().forward(x)


EVERY = 2
OUT_OF_STEP_FORWARDS = 8  # every=2: three or four samples, each timed at the forward after its own


def _out_of_step_worker(rank: int, port: int, tmp_path: Path) -> None:
    result: dict[str, Any] = {"rank": rank}
    try:
        _init(rank, port, timeout_s=30)
        logged = _listen()
        # No DDP: nothing but the gather ties the ranks together. On rank 1 the timing step of the
        # first sample (the first forward with a sample in flight) raises, so that sample is dropped.
        model = _FailsOnce()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(rank)
        sink = tmp_path / f"sink{rank}.jsonl"
        gather = RankGather(every_rank_sink=True, timeout=timedelta(seconds=20))
        errors: list[str] = []
        with layerprof.watch(model, every=EVERY, target=None, sink=str(sink), gather=gather) as watcher:
            for _ in range(OUT_OF_STEP_FORWARDS):
                if rank == 1 and watcher.in_flight and not errors:
                    model.fail_next = True
                x, y = _batch(generator)
                try:
                    F.cross_entropy(model(x), y).backward()
                except RuntimeError as error:  # the bad batch, or (before the fix) a GatherError
                    errors.append(f"{type(error).__name__}: {error}")
                optimizer.step()
                optimizer.zero_grad()
        lines = sink.read_text(encoding="utf-8").splitlines() if sink.exists() else []
        result["sink"] = [json.loads(line) for line in lines]
        result["errors"] = errors
        result["logged"] = logged.messages
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:
        result["crash"] = traceback.format_exc()
    _write(tmp_path, rank, result)
    os._exit(0)


@pytest.mark.timeout(120)
def test_rank_0_never_merges_samples_of_different_steps_and_the_next_ones_line_up(tmp_path: Path) -> None:
    codes = _launch(_out_of_step_worker, tmp_path)
    zero, one = _read(tmp_path, 0), _read(tmp_path, 1)
    assert "crash" not in zero, zero["crash"]
    assert "crash" not in one, one["crash"]
    assert codes == [0, 0]
    assert one["errors"] == ["RuntimeError: a bad batch"] and zero["errors"] == [], (zero, one)
    # Rank 1's own reports (every_rank_sink): every sample but its first, which it dropped.
    own = {line["step"]: line for line in one["sink"]}
    assert len(own) >= 2, one
    first = min(own) - EVERY  # the step rank 1 dropped and rank 0 sampled
    # Rank 0 reports exactly the steps every rank sampled, each gathered from both ranks' samples of
    # it: rank 1's column is rank 1's own report of that same step.
    assert [line["step"] for line in zero["sink"]] == sorted(own), zero
    for line in zero["sink"]:
        assert line["ranks"]["world_size"] == 2
        assert line["ranks"]["total_ms"][1] == own[line["step"]]["total"]["time_ms"], line["step"]
    # The step rank 0 could not gather is said in a warning naming the rank and its latest step (any
    # later one: without DDP rank 1 may have run ahead by then).
    skipped = [m for m in zero["logged"] if f"step {first} is not gathered" in m]
    assert len(skipped) == 1, zero["logged"]
    latest = re.search(r"rank 1 \(its latest: step (\d+)\)", skipped[0])
    assert latest is not None and int(latest.group(1)) in own, skipped[0]


def test_merge_ranks_refuses_samples_of_different_steps_or_kinds() -> None:
    base = timed_report(RANK_TIMES[0], 2.0)
    zero = sample_of(base, 0, RANK_TIMES[0], 2.0)
    one = sample_of(base, 1, RANK_TIMES[1], 4.0)
    with pytest.raises(InvalidArgumentError, match=r"rank 0: step 4.*rank 1: step 6"):
        merge_ranks(base, [zero, replace(one, step=6)])
    with pytest.raises(InvalidArgumentError, match=r"step 4 \(forward-only\), rank 1: step 4 \(train\)"):
        merge_ranks(base, [zero, replace(one, kind="train")])
    assert merge_ranks(base, [zero, one]).ranks is not None  # one step, one kind: merged


def test_a_sample_carries_its_step_and_its_kind() -> None:
    forward_only = timed_report(RANK_TIMES[0], 2.0)
    sample = RankSample.of(forward_only, rank=1, step=8)
    assert (sample.rank, sample.step, sample.kind) == (1, 8, "forward-only")
    trained = layerprof.analyze(Small(), input_size=(2, 3, 8, 8), backward=True)
    assert RankSample.of(trained, rank=0, step=8).kind == "train"


# -- 2. a GatherError surfaces where training can go on ------------------------------------------------
STALL_S = 3  # how long rank 0 waits for a rank that stopped sampling
GROUP_S = 25  # the process group's timeout: rank 1 waits for rank 0 in DDP's all-reduce meanwhile
STEPS = 6  # training steps on each rank


def _stopped_sampling_worker(rank: int, port: int, tmp_path: Path, where: str) -> None:
    from torch.nn.parallel import DistributedDataParallel

    result: dict[str, Any] = {"rank": rank, "surfaced": [], "backward_s": []}
    try:
        _init(rank, port, timeout_s=GROUP_S)
        torch.manual_seed(0)
        model = DistributedDataParallel(Small())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(rank)
        # Rank 1 has stopped sampling: its watcher does not gather. Rank 0's does.
        gather = RankGather(timeout=timedelta(seconds=STALL_S)) if rank == 0 else False
        watcher = layerprof.watch(model, every=2, target=None, sink=lambda report: None, gather=gather)

        def surfaced(where: str, error: GatherError) -> None:
            result["surfaced"].append([where, list(error.missing_ranks), str(error)])

        def train_step() -> bool:
            x, y = _batch(generator)
            try:
                output = model(x)
            except GatherError as error:
                surfaced("forward", error)
                return False
            loss = F.cross_entropy(output, y)
            started = time.monotonic()
            try:
                loss.backward()
            except GatherError as error:
                surfaced("backward", error)
            result["backward_s"].append(time.monotonic() - started)
            optimizer.step()
            optimizer.zero_grad()
            return True

        # Both ranks train STEPS steps through DDP. Rank 0's first timing step waits for rank 1's
        # sample at the end of its backward; the error comes out at the next forward or at remove().
        steps = tries = 0
        while steps < STEPS and tries < STEPS + 2:
            tries += 1
            steps += train_step()
            stalled = rank == 0 and result["backward_s"] and result["backward_s"][-1] >= STALL_S - 0.5
            if stalled and where == "remove" and watcher.attached:
                try:
                    watcher.remove()
                except GatherError as error:
                    surfaced("remove", error)
            if result["surfaced"]:
                watcher.remove()  # and training goes on without layerprof
        watcher.remove()
        result["steps"] = steps
        result["weights"] = [float(p.double().sum()) for p in model.parameters()]
        dist.barrier()
        dist.destroy_process_group()
    except BaseException:
        result["crash"] = traceback.format_exc()
    _write(tmp_path, rank, result)
    os._exit(0)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["forward", "remove"])
def test_a_gather_error_is_raised_after_the_backward_and_ddp_trains_on(tmp_path: Path, where: str) -> None:
    codes = _launch(_stopped_sampling_worker, tmp_path, where)
    zero, one = _read(tmp_path, 0), _read(tmp_path, 1)
    assert "crash" not in zero, zero["crash"]
    assert "crash" not in one, one["crash"]
    assert codes == [0, 0]
    # Raised once, on rank 0, at the next forward of the model or at remove(); never from backward().
    assert len(zero["surfaced"]) == 1, zero["surfaced"]
    surfaced, missing, message = zero["surfaced"][0]
    assert surfaced == where and missing == [1]
    assert "rank 1" in message and re.search(r"the sample of step \d+", message), message
    assert max(zero["backward_s"]) >= STALL_S - 0.5  # a backward waited for rank 1, then returned
    assert one["surfaced"] == []
    # Both ranks trained every step through DDP, which kept their weights equal.
    assert zero["steps"] == one["steps"] == STEPS
    assert zero["weights"] == one["weights"]


DIE_GROUP_S = 6  # the group's timeout when a rank dies (small: rank 0 must not wait longer)


def _dies_outright_worker(rank: int, port: int, tmp_path: Path) -> None:
    from torch.nn.parallel import DistributedDataParallel

    result: dict[str, Any] = {"rank": rank}
    try:
        _init(rank, port, timeout_s=DIE_GROUP_S)
        torch.manual_seed(0)
        model = DistributedDataParallel(Small())
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        generator = torch.Generator().manual_seed(rank)
        logged = _listen()
        watcher = layerprof.watch(model, every=2, target=None, sink=lambda report: None)  # gathers
        raised: list[str] = []
        for _ in range(4):
            timing = watcher.in_flight  # a sample is counted: this step times it
            x, y = _batch(generator)
            output = model(x)
            if rank == 1 and timing:
                _write(tmp_path, rank, {"rank": rank, "died_at": time.time()})
                os._exit(3)  # dies outright in the timing step, before its backward's all-reduce
            try:
                F.cross_entropy(output, y).backward()
            except Exception as error:  # DDP's own error for the all-reduce with a dead rank
                raised.append(f"{type(error).__name__}: {error}")
                result["backward_failed_at"] = time.time()
                break
            optimizer.step()
            optimizer.zero_grad()
        result["raised"] = raised
        try:
            watcher.remove()
        except GatherError as error:
            result.update(gather_error=str(error), missing=list(error.missing_ranks), at=time.time())
        result["logged"] = logged.messages
    except BaseException:
        result["crash"] = traceback.format_exc()
    _write(tmp_path, rank, result)
    os._exit(0)  # a process group whose peer died cannot be torn down cleanly


_WAITED = re.compile(r"after (\d+(?:\.\d+)?) s")


@pytest.mark.timeout(120)
def test_a_rank_that_dies_gives_rank_0_a_gather_error_naming_it_within_the_timeout(tmp_path: Path) -> None:
    codes = _launch(_dies_outright_worker, tmp_path, wait_for=(0, 1))
    zero, one = _read(tmp_path, 0), _read(tmp_path, 1)
    assert "crash" not in zero, zero["crash"]
    assert codes == [0, 3]
    assert len(zero["raised"]) == 1 and "GatherError" not in zero["raised"][0]  # backward: DDP's error
    assert "gather_error" in zero, "rank 0 got no GatherError naming the rank that died"
    assert zero["missing"] == [1] and "rank 1" in zero["gather_error"]
    assert zero["at"] - one["died_at"] < DIE_GROUP_S  # within the group's timeout
    # The message states how long rank 0 really waited (not the full timeout it did not wait).
    waited = _WAITED.search(zero["gather_error"])
    assert waited is not None and "timeout left" in zero["gather_error"], zero["gather_error"]
    assert float(waited.group(1)) <= zero["backward_failed_at"] - one["died_at"] + 0.5


# -- the store exchange and the held error, in this process -------------------------------------------
def _sample(rank: int, step: int) -> RankSample:
    base = timed_report(RANK_TIMES[0], 2.0)
    return replace(sample_of(base, rank, RANK_TIMES[rank], 2.0 + rank), step=step)


def test_rank_0_takes_each_ranks_sample_of_its_own_step_never_a_later_one() -> None:
    store = dist.HashStore()
    one, two = SampleExchange(store, "t/", 1, 3), SampleExchange(store, "t/", 2, 3)
    zero = SampleExchange(store, "t/", 0, 3)
    for step in (2, 4):
        one.post(_sample(1, step))
    two.post(_sample(2, 4))  # rank 2 skipped step 2
    skipped = zero.collect(_sample(0, 2), timeout_s=5)
    assert isinstance(skipped, Skipped) and skipped.latest == {2: 4}
    assert skipped.describe() == "rank 2 (its latest: step 4)"
    got = zero.collect(_sample(0, 4), timeout_s=5)
    assert isinstance(got, list) and [(s.rank, s.step) for s in got] == [(0, 4), (1, 4), (2, 4)]
    assert got[1].total_ms == 3.0 and got[2].total_ms == 4.0  # each rank's own sample
    assert not store.check(["t//4/1"]) and not store.check(["t//4/2"])  # read, then deleted


def test_a_rank_keeps_only_its_latest_posts_in_the_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(exchange_module, "KEPT", 2)
    store = dist.HashStore()
    one, zero = SampleExchange(store, "t/", 1, 2), SampleExchange(store, "t/", 0, 2)
    for step in (2, 4, 6):
        one.post(_sample(1, step))
    assert [store.check([f"t//{step}/1"]) for step in (2, 4, 6)] == [False, True, True]
    skipped = zero.collect(_sample(0, 2), timeout_s=5)  # rank 0 three samples behind: given up
    assert isinstance(skipped, Skipped) and skipped.latest == {1: 6}


def test_the_timeout_names_the_missing_ranks_and_states_the_time_waited() -> None:
    store = dist.HashStore()
    SampleExchange(store, "t/", 1, 3).post(_sample(1, 2))
    zero = SampleExchange(store, "t/", 0, 3)
    started = time.monotonic()
    with pytest.raises(GatherError) as caught:
        zero.collect(_sample(0, 2), timeout_s=0.3)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 2.0
    assert caught.value.missing_ranks == (2,)  # rank 1 sent its sample
    message = str(caught.value)
    assert "step 2" in message and "rank 2 (its latest: none)" in message and "rank 1" not in message
    assert "after 0.30 s, the whole of its 0.3 s timeout" in message


def test_a_failed_all_reduce_cuts_the_wait_short_and_says_how_much_was_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(exchange_module, "GRACE_S", 0.2)
    zero = SampleExchange(dist.HashStore(), "t/", 0, 2)
    failure = RuntimeError("Connection reset by peer\nAt: a traceback")
    started = time.monotonic()
    with pytest.raises(GatherError) as caught:
        zero.collect(_sample(0, 2), timeout_s=5, failure=failure)
    assert time.monotonic() - started < 2.0  # not the 5 s timeout
    message = str(caught.value)
    assert re.search(r"after 0\.2\d s, with 4\.[78]\d s of its 5 s timeout left", message), message
    assert "RuntimeError: Connection reset by peer)" in message  # its first line
    assert caught.value.__cause__ is failure and caught.value.missing_ranks == (1,)


def _finish_in_a_backward(gather: RankGather, report: Report, step: int) -> list[Report | None]:
    """``gather.finish`` called from an autograd engine callback, as a watcher's sample ends."""
    outcome: list[Report | None] = []
    x = torch.ones(2, requires_grad=True)
    y = (x * 2).sum()
    engine = torch.autograd.Variable._execution_engine  # type: ignore[attr-defined]
    assert y.grad_fn is not None
    y.grad_fn.register_prehook(
        lambda _g: engine.queue_callback(lambda: outcome.append(gather.finish(report, step)))
    )
    y.backward()  # must not raise
    return outcome


@pytest.mark.parametrize("where", ["forward", "close"])
def test_a_gather_error_inside_the_backward_is_held_and_raised_once_after_it(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    model, gather = Small(), RankGather()
    gather.attach(model)
    report = timed_report(RANK_TIMES[0], 2.0)

    def failing(report: Report, step: int) -> Report:
        raise GatherError(f"layerprof: no sample of step {step} came", (1,))

    monkeypatch.setattr(gather, "_finish", failing)
    assert _finish_in_a_backward(gather, report, 2) == [None]
    x = torch.randn(1, 3, 8, 8)
    if where == "forward":
        with pytest.raises(GatherError, match="step 2"):
            model(x)
        model(x)  # raised once: the next forward runs
        gather.close()
    else:
        with pytest.raises(GatherError, match="step 2"):
            gather.close()
        model(x)
    assert not model._forward_pre_hooks  # the hook that raised it is gone
    with pytest.raises(GatherError, match="step 4"):  # outside a backward: raised at once
        gather.finish(report, 4)


def test_a_layerprof_bug_inside_the_backward_is_held_as_a_gather_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, gather = Small(), RankGather()
    gather.attach(model)

    def buggy(report: Report, step: int) -> Report:
        raise KeyError("a bug")

    monkeypatch.setattr(gather, "_finish", buggy)
    assert _finish_in_a_backward(gather, timed_report(RANK_TIMES[0], 2.0), 2) == [None]
    with pytest.raises(GatherError, match="KeyError") as caught:
        model(torch.randn(1, 3, 8, 8))
    assert isinstance(caught.value.__cause__, KeyError)
    with pytest.raises(KeyError):  # outside a backward it is not dressed up
        gather.finish(timed_report(RANK_TIMES[0], 2.0), 4)
