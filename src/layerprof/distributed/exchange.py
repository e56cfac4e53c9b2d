"""How the ranks' samples travel to rank 0: through the process group's key-value store, with no collective.

Every rank but rank 0 posts its sample of step *s* under the key ``s/RANK`` and then records *s* under
``latest/RANK``, and goes on: it waits for nobody. Rank 0 waits for the sample of its own step from
every other rank, reads it and deletes its key. So samples are matched by their step, never by their
order of arrival: a rank that skipped a step (its sample was dropped, say) cannot have its next
sample taken for it. When a rank's latest step is past the one rank 0 waits for, that step will never
come from it: :meth:`SampleExchange.collect` says so (:class:`Skipped`) at once, and the next samples
line up again by themselves. A rank keeps its last :data:`KEPT` posts in the store (older ones are
deleted), for a rank 0 that runs behind; samples travel pickled and compressed.

No collective means that a rank which does not come (dead, hung, or no longer sampling) leaves no
process group half-used: DDP's all-reduces, on the same group, go on as before. The price is that
rank 0 learns of a dead rank only when its wait times out, or, when the step's all-reduce failed (a
rank is gone), after :data:`GRACE_S` at most, the time it leaves the samples still on their way.

The keys live under a namespace that every rank derives alike (see :func:`namespace`).
"""

from __future__ import annotations

import itertools
import os
import pickle
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from layerprof.distributed.gather_error import GatherError, waited
from layerprof.distributed.merge import RankSample

__all__ = ["GRACE_S", "KEPT", "SampleExchange", "Skipped", "namespace"]

#: Posts a rank keeps in the store: the latest ones, for a rank 0 up to that many samples behind (a
#: rank without DDP can run ahead). A resnet50 sample is about 2 kB once compressed.
KEPT = 8
#: How long rank 0 still waits for samples once the step's all-reduce failed (a rank is gone).
GRACE_S = 2.0
_POLL_FIRST_S = 0.001
_POLL_MAX_S = 0.05

_gathers = itertools.count()  # one number per gather helper, taken in the same order on every rank


def namespace(label: str) -> str:
    """A fresh key prefix for one gather helper: the same on every rank as long as every rank makes
    its helpers in the same order (as it makes its watchers and calls ``profile``). ``label`` (the
    model's class) keeps the helpers of two different models, made out of order, from reading each
    other's samples; a restart under torchrun gets keys of its own."""
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    return f"layerprof/gather/{attempt}/{next(_gathers)}/{label}/"


@dataclass(frozen=True, slots=True)
class Skipped:
    """Rank 0's step cannot be gathered: these ranks went past it without a sample of it."""

    step: int
    latest: dict[int, int]  # rank -> the latest step it posted

    def describe(self) -> str:
        return ", ".join(
            f"rank {rank} (its latest: step {step})" for rank, step in sorted(self.latest.items())
        )


class SampleExchange:
    """One gather helper's keys in ``store`` (the default process group's, or any c10d Store)."""

    def __init__(self, store: Any, prefix: str, rank: int, world_size: int) -> None:
        # torch.distributed's (which mypy cannot see there); imported here: torch may be built without it
        from torch._C._distributed_c10d import PrefixStore

        self.store = PrefixStore(prefix, store)
        self.rank = rank
        self.world_size = world_size
        self._posted: deque[int] = deque()

    # -- every rank but 0 ----------------------------------------------------------------------------
    def post(self, sample: RankSample) -> None:
        """Send ``sample`` to rank 0 and go on; raises :class:`GatherError` when the store is gone."""
        try:
            packed = zlib.compress(pickle.dumps(sample))
            self.store.set(_key(sample.step, self.rank), packed)  # type: ignore[arg-type]
            self.store.set(_latest(self.rank), str(sample.step))
            self._posted.append(sample.step)
            while len(self._posted) > KEPT:
                self.store.delete_key(_key(self._posted.popleft(), self.rank))
        except RuntimeError as error:  # DistStoreError, DistNetworkError: the store's host is gone
            raise GatherError(
                f"layerprof: rank {self.rank} could not send its sample of step {sample.step} to rank 0 "
                f"(rank 0, or the store's host, is gone): {type(error).__name__}: {error}"
            ) from error

    # -- rank 0 --------------------------------------------------------------------------------------
    def collect(
        self, own: RankSample, timeout_s: float, *, failure: BaseException | None = None
    ) -> list[RankSample] | Skipped:
        """Every rank's sample of ``own.step`` in rank order (``own`` first), or :class:`Skipped`.

        Raises :class:`GatherError` naming the ranks whose sample did not come within ``timeout_s``
        (or within :data:`GRACE_S` once ``failure``, the step's failed all-reduce, says a rank is gone).
        """
        step = own.step
        started = time.monotonic()
        limit = min(timeout_s, GRACE_S) if failure is not None else timeout_s
        got: dict[int, RankSample] = {0: own}
        waiting = [rank for rank in range(self.world_size) if rank != 0]
        pause = _POLL_FIRST_S
        while True:
            waiting = [rank for rank in waiting if not self._take(step, rank, got)]
            if not waiting:
                return [got[rank] for rank in range(self.world_size)]
            ahead = {rank: latest for rank in waiting if (latest := self._latest(rank)) is not None}
            ahead = {rank: latest for rank, latest in ahead.items() if latest > step}
            # A rank may have posted this step just before moving on: look again before giving it up.
            ahead = {rank: latest for rank, latest in ahead.items() if not self._take(step, rank, got)}
            if ahead:
                return Skipped(step, ahead)
            elapsed = time.monotonic() - started
            if elapsed >= limit:
                raise self._missing(step, waiting, elapsed, timeout_s, failure)
            time.sleep(min(pause, limit - elapsed))
            pause = min(2 * pause, _POLL_MAX_S)

    def _take(self, step: int, rank: int, got: dict[int, RankSample]) -> bool:
        key = _key(step, rank)
        if not self.store.check([key]):
            return False
        sample = pickle.loads(zlib.decompress(self.store.get(key)))  # the job's own ranks wrote it
        self.store.delete_key(key)
        if not isinstance(sample, RankSample) or (sample.rank, sample.step) != (rank, step):
            raise GatherError(
                f"layerprof: the store holds no sample of step {step} of rank {rank} under its key"
            )
        got[rank] = sample
        return True

    def _latest(self, rank: int) -> int | None:
        key = _latest(rank)
        return int(self.store.get(key)) if self.store.check([key]) else None

    def _missing(
        self, step: int, ranks: list[int], elapsed: float, timeout_s: float, failure: BaseException | None
    ) -> GatherError:
        names = ", ".join(
            f"rank {rank} (its latest: {'none' if latest is None else f'step {latest}'})"
            for rank, latest in ((rank, self._latest(rank)) for rank in ranks)
        )
        if failure is None:
            why = "it died, hangs, or stopped sampling"
        else:
            first = str(failure).strip().splitlines()[0] if str(failure).strip() else ""
            why = (
                "the step's all-reduce failed, so a rank died or left the process group: "
                f"{type(failure).__name__}: {first:.300}"
            )
        error = GatherError(
            f"layerprof: rank 0 could not gather the sample of step {step}: no sample of it came from "
            f"{names} {waited(elapsed, timeout_s)} ({why})",
            tuple(ranks),
        )
        error.__cause__ = failure
        return error


def _key(step: int, rank: int) -> str:
    return f"{step}/{rank}"


def _latest(rank: int) -> str:
    return f"latest/{rank}"
