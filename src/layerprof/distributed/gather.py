"""layerprof under ``torch.distributed``: each rank samples its own step, rank 0 gets one table.

Under DDP every rank runs :func:`layerprof.watch` (or :func:`layerprof.profile`) on its own model and
samples its own step. ``every`` counts forwards, and every rank runs the same forwards, so all ranks
sample the same step numbers. A :class:`RankGather` passed as ``gather=`` turns those per-rank
samples into one report on rank 0::

    watcher = layerprof.watch(ddp_model, every=100, gather=layerprof.RankGather())

**Gathering.** When a sample is over, every rank sends rank 0 its row times and counts (plain
numbers: no tensor, no model), with the step it sampled and its kind (train, or forward only),
through the process group's key-value store (:mod:`layerprof.distributed.exchange`): the other ranks
do not wait, rank 0 waits for every rank's sample *of its own step*. Rank 0 builds one report: the
counts are rank 0's (DDP runs the same model on the same shapes everywhere, so they agree; they are
compared, and a disagreement is logged), each row's time is the median over the ranks, and
``report.ranks`` (:class:`~layerprof.report.facade.RankTimes`) keeps every rank's time of every row.
Its table adds the slowest rank's time and number, and flags the stragglers: rows whose slowest rank
takes more than ``straggler_threshold`` (1.2) times the median. Only rank 0's sink gets a report,
unless ``every_rank_sink=True``, when the other ranks' sinks get their own.

**Ranks out of step.** Samples of different steps or kinds are never merged. When a rank has gone
past rank 0's step without a sample of it (its sample was dropped: its timed forward raised, say),
rank 0 drops its own sample of that step with a warning naming the ranks and their steps, and its
sink gets no report of it; training goes on, and the next samples, matched by step, line up again.
Samples of one step but different kinds are dropped the same way.

**Failures.** A rank whose sample does not come within the timeout (``RankGather(timeout=...)``;
by default half the process group's, so that under DDP the ranks waiting for rank 0 in their next
all-reduce are still waiting when it gives up) makes rank 0 raise :class:`GatherError`, naming the
ranks and saying how long it really waited. When the step's all-reduce failed (a rank died), rank 0
waits no more than :data:`~layerprof.distributed.exchange.GRACE_S` for it. A rank that cannot send
its sample (the store's host is gone) raises one too. The gather runs where the sample ends, often
inside ``loss.backward()``; an error there would break DDP's reducer for every later step, so a
watcher's gather holds it and raises it at the next forward of the model, or at ``remove()``: after
the backward, where training can go on (the process group is untouched) or stop cleanly. Each
sample is gathered on its own: after a GatherError the next one is gathered again.

**The all-reduce** (:mod:`layerprof.distributed.allreduce`): a comm hook that DDP keeps for
the model's life times each bucket during a sample's timing step; the sample gets a row of its own,
``(ddp)/allreduce``, and ``report.allreduce`` says how much of it the backward hides.

Limits: every rank must make its watchers (and call ``profile``) in the same order, as SPMD code
does: that order names each gather's keys. Under DDP a sample one rank drops stalls rank 0 at the
gather until the timeout (the dropping rank blocks in its next all-reduce, before it can post a
later sample). Watch the ``DistributedDataParallel`` module itself (its rows are ``module.conv1``,
...; its own forward work, the buffer broadcast, is in ``(root)`` rows). ``gradient_as_bucket_view``
and ``static_graph`` make no difference; ``no_sync()`` steps have no all-reduce, hence no row.
"""

from __future__ import annotations

import logging
import weakref
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.hooks import RemovableHandle

from layerprof.distributed.allreduce import AllreduceRecorder, recorder_of
from layerprof.distributed.exchange import SampleExchange, Skipped, namespace
from layerprof.distributed.gather_error import GatherError
from layerprof.distributed.merge import STRAGGLER_THRESHOLD, RankSample, merge_ranks, with_allreduce
from layerprof.errors import InvalidArgumentError
from layerprof.report.facade import Report

__all__ = ["GatherError", "RankGather", "configured_timeout", "default_gather", "default_timeout"]

logger = logging.getLogger(__name__)

#: torch's own default timeout of a process group, when the group does not say its own.
_TORCH_DEFAULT_TIMEOUT = timedelta(minutes=30)


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
    ``timeout``: how long rank 0 waits for the others' samples (default: half the process group's).
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
        self._prefix: str | None = None  # this helper's keys in the store, named at attach or first use
        self._exchange: SampleExchange | None = None
        self._model: weakref.ref[nn.Module] | None = None  # the watched model, to raise a held error
        self._held: GatherError | None = None
        self._held_hook: RemovableHandle | None = None

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
        self._model = weakref.ref(model)
        self._prefix = namespace(type(model).__name__)
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
        """The watcher is removed: the comm hook stays on the model (DDP cannot take it off) and idles.
        A held :class:`GatherError` is raised here, if the model's next forward has not raised it."""
        if self._recorder is not None:
            self._recorder.clear()
            self._recorder = None
        self._raise_held()

    @property
    def feeds_sink(self) -> bool:
        """Whether this rank's sink gets the reports: rank 0's, or every rank's with every_rank_sink."""
        return self.every_rank_sink or _rank_and_size()[0] == 0

    # -- what watch() and profile() call -------------------------------------------------------------
    def finish(self, report: Report, step: int) -> Report | None:
        """This rank's sample is over: the all-reduce row added, then the gather. Returns the gathered
        report on rank 0, this rank's own elsewhere, None when rank 0 drops the sample (ranks out of
        step; logged). Inside an autograd engine callback (a watcher's sample ends in the backward) a
        failure is held, to be raised at the model's next forward or at :meth:`close`, and None returned."""
        try:
            return self._finish(report, step)
        except Exception as error:
            if self._model is None or not _in_autograd_engine():
                raise
            if isinstance(error, GatherError):
                held = error
            else:  # a layerprof bug must not break the user's backward either
                held = GatherError(
                    f"layerprof: the sample of step {step} could not be gathered: "
                    f"{type(error).__name__}: {error}"
                )
                held.__cause__ = error
            self._hold(held)
            return None

    def _finish(self, report: Report, step: int) -> Report | None:
        rank, world_size = _rank_and_size()
        failure: RuntimeError | None = None
        if self._recorder is not None:
            try:
                measured = self._recorder.read(world_size)
            except RuntimeError as error:  # the all-reduce failed: a rank died or left the group
                failure, measured = error, None
            if measured is not None:
                report = with_allreduce(report, *measured)
        if world_size == 1:
            return report
        exchange = self._exchange_for(report, rank, world_size)
        sample = RankSample.of(report, rank, step)
        if rank != 0:
            exchange.post(sample)
            return report
        collected = exchange.collect(sample, self._timeout_s(), failure=failure)
        if isinstance(collected, Skipped):
            logger.warning(
                "layerprof: the sample of step %d is not gathered: %s went past it without a sample of "
                "it; samples of different steps are never merged, so rank 0's sink gets no report of "
                "step %d (the next samples line up again)",
                step, collected.describe(), step,
            )  # fmt: skip
            return None
        if len({s.kind for s in collected}) > 1:
            logger.warning(
                "layerprof: the sample of step %d is not gathered: the ranks sampled different kinds of "
                "step (%s), which are never merged; rank 0's sink gets no report of it",
                step, ", ".join(s.describe() for s in collected),
            )  # fmt: skip
            return None
        if failure is not None:
            logger.warning(
                "layerprof: the all-reduce of step %d failed; its sample has no all-reduce row", step
            )
        return merge_ranks(report, collected, straggler_threshold=self.straggler_threshold)

    def _exchange_for(self, report: Report, rank: int, world_size: int) -> SampleExchange:
        if self._exchange is None:
            if self._prefix is None:  # profile(): named at its one gather
                self._prefix = namespace(report.model_name)
            store: Any = None
            cause: Exception | None = None
            try:
                store = dist.distributed_c10d._get_default_store()
            except (AttributeError, RuntimeError, ValueError) as error:
                cause = error
            if store is None:  # the MPI backend has no store
                raise GatherError(
                    f"layerprof: rank {rank} cannot gather samples: the process group has no key-value "
                    f"store ({dist.get_backend()} backend); pass gather=False"
                ) from cause
            self._exchange = SampleExchange(store, self._prefix, rank, world_size)
        return self._exchange

    def _timeout_s(self) -> float:
        return (self.timeout or default_timeout()).total_seconds()

    # -- a failure held until after the backward -----------------------------------------------------
    def _hold(self, error: GatherError) -> None:
        if self._held is not None:
            logger.error("layerprof: %s (not raised: an earlier GatherError is held)", error)
            return
        self._held = error
        model = self._model() if self._model is not None else None
        if model is not None:  # first among the pre-hooks: the failed forward is not counted
            self._held_hook = model.register_forward_pre_hook(self._raise_held_hook, prepend=True)

    def _raise_held_hook(self, _module: nn.Module, _args: Any) -> None:
        self._raise_held()

    def _raise_held(self) -> None:
        error, self._held = self._held, None
        hook, self._held_hook = self._held_hook, None
        if hook is not None:
            hook.remove()
        if error is not None:
            raise error


def _in_autograd_engine() -> bool:
    """Whether this runs inside a backward (an engine callback included), where an error must not rise."""
    current = getattr(torch._C, "_current_graph_task_id", None)
    return current is None or current() != -1


def configured_timeout(group: Any) -> timedelta | None:
    """The timeout ``group`` (None: the default group) was made with, e.g. by
    ``init_process_group(timeout=...)``; None when torch does not say."""
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


def default_timeout() -> timedelta:
    """How long rank 0 waits for the others' samples by default: half the default process group's
    timeout (torch's 30 minutes when the group does not say), so that ranks blocked in their next
    collective, waiting for rank 0, still wait when it gives up."""
    return (configured_timeout(None) or _TORCH_DEFAULT_TIMEOUT) / 2


def _rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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
