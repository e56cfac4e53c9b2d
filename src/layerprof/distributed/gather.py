"""layerprof under ``torch.distributed``: each rank samples its own step, rank 0 gets one table.

Under DDP every rank runs :func:`layerprof.watch` (or :func:`layerprof.profile`) on its own model and
samples its own step. ``every`` counts forwards, and every rank runs the same forwards, so all ranks
sample the same step numbers. A :class:`RankGather` passed as ``gather=`` turns those per-rank
samples into one report on rank 0::

    watcher = layerprof.watch(ddp_model, every=100, gather=layerprof.RankGather())

**Gathering.** When a sample is over, every rank sends rank 0 its row times and counts (plain
numbers: no tensor, no model) with ``torch.distributed.gather_object``. Rank 0 builds one report:
the counts are rank 0's (DDP runs the same model on the same shapes everywhere, so they agree; they
are compared, and a disagreement is logged), each row's time is the median over the ranks, and
``report.ranks`` (:class:`~layerprof.report.facade.RankTimes`) keeps every rank's time of every row. Its
table adds the slowest rank's time and number, and flags the stragglers: rows whose slowest rank
takes more than ``straggler_threshold`` (1.2) times the median. Only rank 0's sink gets a report,
unless ``every_rank_sink=True``, when the other ranks' sinks get their own.

Before each gather a monitored barrier (gloo's; on another backend, on a gloo group made at the
first gather) waits for every rank, so that a rank that died or stopped sampling makes rank 0 raise
:class:`GatherError`, naming the ranks that did not answer, within the process group's timeout
(``init_process_group(timeout=...)``, or ``RankGather(timeout=...)``), instead of hanging.

**The all-reduce** (:mod:`layerprof.distributed.allreduce`): a comm hook that DDP keeps for
the model's life times each bucket during a sample's timing step; the sample gets a row of its own,
``(ddp)/allreduce``, and ``report.allreduce`` says how much of it the backward hides.

Limits: every rank must take the same samples; a sample one rank drops (its timed forward raised,
say) leaves the others waiting at the gather until the timeout. Watch the
``DistributedDataParallel`` module itself (its rows are ``module.conv1``, ...; its own forward work,
the buffer broadcast, is in ``(root)`` rows). ``gradient_as_bucket_view`` and ``static_graph`` make
no difference; ``no_sync()`` steps have no all-reduce, hence no row.
"""

from __future__ import annotations

import re
import typing
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from layerprof.distributed.allreduce import AllreduceRecorder, recorder_of
from layerprof.distributed.merge import STRAGGLER_THRESHOLD, RankSample, merge_ranks, with_allreduce
from layerprof.errors import InvalidArgumentError, LayerprofError
from layerprof.report.facade import Report

__all__ = ["GatherError", "RankGather", "configured_timeout", "default_gather"]


class GatherError(LayerprofError, RuntimeError):
    """A sample could not be gathered: a rank did not answer in time (it died or stopped sampling).

    ``missing_ranks`` names the ranks that did not answer, when the barrier could tell (else empty).
    """

    def __init__(self, message: str, missing_ranks: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.missing_ranks = missing_ranks


# -- the public face -------------------------------------------------------------------------------
_MISSING = re.compile(r"Ranks? ([\d, ]+) failed to pass monitoredBarrier")


def _check_threshold(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1.0:
        raise InvalidArgumentError(f"straggler_threshold must be a number >= 1, got {value!r}")
    return float(value)


class RankGather:
    """Gather the samples of every rank to rank 0 and time DDP's all-reduce (see the module doc).

    Pass one to ``layerprof.watch(ddp_model, gather=RankGather())`` (one per watcher) or to
    ``layerprof.profile(model, inputs, gather=RankGather())``. Without ``torch.distributed``
    initialised, or with one rank, nothing is gathered (the all-reduce row is still added).

    ``straggler_threshold``: slowest rank / median above which a row is flagged (default 1.2).
    ``every_rank_sink``: the other ranks' sinks get their own (ungathered) reports too.
    ``time_allreduce``: register the comm hook that times DDP's all-reduce (a watched DDP model).
    ``timeout``: how long rank 0 waits for the others at a gather (default: the process group's).
    """

    def __init__(
        self,
        *,
        straggler_threshold: float = STRAGGLER_THRESHOLD,
        every_rank_sink: bool = False,
        time_allreduce: bool = True,
        timeout: timedelta | None = None,
    ) -> None:
        self.straggler_threshold = _check_threshold(straggler_threshold)
        for name, flag in (("every_rank_sink", every_rank_sink), ("time_allreduce", time_allreduce)):
            if not isinstance(flag, bool):
                raise InvalidArgumentError(f"{name} must be True or False, got {flag!r}")
        if timeout is not None and (not isinstance(timeout, timedelta) or timeout <= timedelta(0)):
            raise InvalidArgumentError(f"timeout must be a positive datetime.timedelta, got {timeout!r}")
        self.every_rank_sink = every_rank_sink
        self.time_allreduce = time_allreduce
        self.timeout = timeout
        self._recorder: AllreduceRecorder | None = None
        self._attached = False
        self._barrier_group: Any = None  # a gloo group for the barrier and the gather, when made

    def __repr__(self) -> str:
        return (
            f"RankGather(straggler_threshold={self.straggler_threshold}, "
            f"every_rank_sink={self.every_rank_sink}, time_allreduce={self.time_allreduce})"
        )

    # -- what a Watcher calls ------------------------------------------------------------------------
    def attach(self, model: nn.Module) -> None:
        """The watcher of ``model`` is made: register (or find) the comm hook on a DDP model."""
        if self._attached:
            raise InvalidArgumentError("this RankGather already serves a watcher; give each watcher its own")
        self._attached = True
        if self.time_allreduce and dist.is_available():
            self._recorder = recorder_of(model)

    def timing_started(self) -> None:
        if self._recorder is not None:
            self._recorder.start()

    def backward_over(self) -> None:
        if self._recorder is not None:
            self._recorder.backward_over()

    def dropped(self) -> None:
        """The sample in flight was dropped: stop recording."""
        if self._recorder is not None:
            self._recorder.clear()

    def close(self) -> None:
        """The watcher is removed: the comm hook stays on the model (DDP cannot take it off) and idles."""
        if self._recorder is not None:
            self._recorder.clear()
            self._recorder = None

    @property
    def feeds_sink(self) -> bool:
        """Whether this rank's sink gets the reports: rank 0's, or every rank's with every_rank_sink."""
        return self.every_rank_sink or _rank_and_size()[0] == 0

    # -- what watch() and profile() call -------------------------------------------------------------
    def finish(self, report: Report, step: int) -> Report:
        """This rank's sample is over: the all-reduce row added, then the gather (a collective every
        rank must reach). Returns the gathered report on rank 0, this rank's own elsewhere."""
        rank, world_size = _rank_and_size()
        if self._recorder is not None:
            measured = self._recorder.read(world_size)
            if measured is not None:
                report = with_allreduce(report, *measured)
        if world_size == 1:
            return report
        samples = self._gather(RankSample.of(report, rank, step), rank, world_size, step)
        if samples is None:
            return report
        return merge_ranks(report, samples, straggler_threshold=self.straggler_threshold)

    def _gather(self, sample: RankSample, rank: int, world_size: int, step: int) -> list[RankSample] | None:
        group = self._group()
        try:
            timeout = self.timeout or configured_timeout(group)
            dist.monitored_barrier(group=group, timeout=timeout, wait_all_ranks=True)
        except RuntimeError as error:
            missing = _missing_ranks(str(error))
            who = f"rank {', '.join(map(str, missing))}" if missing else "a rank"
            raise GatherError(
                f"layerprof: rank {rank} could not gather the sample of step {step}: {who} did not reach "
                f"it (died, or stopped sampling). torch.distributed said: {error}",
                missing,
            ) from error
        gathered: list[Any] | None = [None] * world_size if rank == 0 else None
        try:
            dist.gather_object(sample, gathered, dst=0, group=group)
        except RuntimeError as error:
            raise GatherError(
                f"layerprof: rank {rank} could not gather the sample of step {step}: {error}"
            ) from error
        if gathered is None:
            return None
        return sorted(typing.cast(list[RankSample], gathered), key=lambda s: s.rank)

    def _group(self) -> Any:
        """The group to gather over: the default one on gloo, else a gloo group made now (every rank
        reaches its first gather together), whose barrier can name a missing rank."""
        if dist.get_backend() == dist.Backend.GLOO:
            return None
        if self._barrier_group is None:
            self._barrier_group = dist.new_group(
                backend="gloo", timeout=self.timeout or configured_timeout(None)
            )
        return self._barrier_group


def configured_timeout(group: Any) -> timedelta | None:
    """The timeout ``group`` (None: the default group) was made with, e.g. by
    ``init_process_group(timeout=...)``; None when torch does not say. (A monitored barrier given no
    timeout waits torch's default, 30 minutes, whatever the group was made with.)"""
    process_group = dist.group.WORLD if group is None else group
    if process_group is None:
        return None
    for device in ("cpu", "cuda"):
        try:
            timeout = process_group._get_backend(torch.device(device)).options._timeout
        except (AttributeError, RuntimeError):
            continue
        if isinstance(timeout, timedelta):
            return timeout
    return None


def _rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _missing_ranks(message: str) -> tuple[int, ...]:
    found = _MISSING.search(message)
    if found is None:
        return ()
    return tuple(int(part) for part in found.group(1).replace(",", " ").split())


def default_gather(gather: object) -> Any:
    """``gather`` as watch() and profile() take it: ``None`` gathers (with a fresh
    :class:`RankGather`) exactly when ``torch.distributed`` runs with more than one rank; ``True``
    always does (one rank gathers to itself); ``False`` never gathers; anything else is used as given."""
    if gather is False:
        return None
    if gather is True:
        return RankGather()
    if gather is None:
        running = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        return RankGather() if running else None
    return gather
