"""``layerprof.watch``: a per-layer table, forward and backward, every N steps of a training run.

A :class:`~layerprof.api.watcher.Watcher` puts one hook on the model: a forward pre-hook on the root
that counts forwards. Nothing else is installed between samples. It samples the first forward (step
0) and every ``every``-th after it (steps ``every``, ``2 * every``, ..., counting from 0: a run of 100
steps under ``every=100`` gets one table), each in two consecutive steps, so that the counter never
pollutes the times:

1. **Counting step** (step *k*): a :class:`~layerprof.walk.collect.Collector` on every module and the
   dispatch-mode counter (:class:`~layerprof.walk.collect.OpCounter`) price every aten op, forward and
   backward. The root pre-hook enters the mode (:class:`~layerprof.api.counting_mode.CountingMode`);
   the collector's module hooks come off when the root's forward returns; the mode stays on through
   the loss and the backward, whose ops are charged to the row of the forward op that made each
   autograd node. Nothing is timed.
2. **Timing step** (the next forward of the same kind: same ``training`` flag, grad mode, autocast
   state and input shapes; forwards of another kind in between, such as validation, are let through
   untouched): :class:`~layerprof.timing.layers.LayerTimer` hooks time each module's forward and
   :class:`~layerprof.timing.backward.BackwardTimer` hooks on the autograd nodes time the backward,
   row by row (how nodes are matched to rows is explained in :mod:`layerprof.timing.backward`).
   Nothing is counted.

The report (forward rows with their times, backward rows with their backward times, and a ``total``
row whose phase is ``step`` when it sums both) is built and handed to the sink when the timing step is
over; the counts of step *k* go with the times of step *k + 1*, and the report says ``step`` *k*
(``report.step``, the table's title line). A sample is one forward and its backward, not one
optimizer step, so gradient accumulation (several forwards and backwards per ``optimizer.step()``)
samples micro-batches.

**When a step is over.** When the forward runs with grad disabled or none of its outputs needs a
gradient (an eval step), the step ends when the root's forward returns, and the sample has no backward
rows. Otherwise it ends when the backward through the model's outputs is over: a pre-hook on the
first node to run queues an engine callback (``Variable._execution_engine.queue_callback``). When no
backward comes (validation with grad enabled), the step ends when the next forward of the model
starts. The dispatch mode of the counting step can only leave the mode stack on the thread that
entered it and outside the engine, so after its backward it stays on the stack, passing ops through
untouched, until the next forward starts (or :meth:`Watcher.flush` / :meth:`Watcher.remove` is
called). Likewise, when the engine ends a CUDA backward on one of its device threads, the report is
emitted on the training thread at the next forward, :meth:`Watcher.flush` or :meth:`Watcher.remove`.
A ``KeyboardInterrupt`` (any BaseException) raised inside a sampled forward skips torch's always_call
forward hooks, so nothing of layerprof runs before the caller catches it: the sample's hooks and
mode come off at the next :meth:`Watcher.flush`, forward, or :meth:`Watcher.remove` (leaving a
``with layerprof.watch(...)`` block included).

**A backward that raises** (a hook, an autograd Function) never ends, and the engine never runs its
end callback. While the counted forward awaits its backward, the counting mode reports the first op
the engine runs: a backward has begun (its end callback is queued then). If the next forward starts
before that backward ended, it raised: the sample is **dropped**, with a warning naming the step,
so that it is never reported as a step without backward rows nor with half of them. A backward that
ends without reaching the model's outputs is another graph's (a GAN's other network): the sample
waits on. A timed backward that raises leaves its sample reported with untimed backward rows (the
counts are whole).

**Sinks.** A sink is often called from inside ``loss.backward()`` (an engine callback): an error it
raises is logged (ERROR on ``layerprof.api.watch``, with the traceback) and the training step goes on,
its gradients whole; ``strict=True`` raises it instead after the step, at the next forward of the
model, :meth:`Watcher.flush` or :meth:`Watcher.remove` (:class:`~layerprof.api.sinks.GuardedSink`).

**Where it lives.** The life cycle of a sample is one state machine, a table from (phase, event) to
transition (:mod:`layerprof.api.watch_states`); the counting mode is entered and left by one helper
(:mod:`layerprof.api.counting_mode`); a sample's data and report are in
:mod:`layerprof.api.watch_sample`; :class:`~layerprof.api.watcher.Watcher` turns torch's hooks and
callbacks into events and runs each transition's action.

**Across ranks.** Under ``torch.distributed`` each rank samples its own step. A ``gather`` helper
(:class:`layerprof.RankGather`, see :mod:`layerprof.distributed.gather`) is told when each timing step starts
and when its backward's last node ran, and turns the finished report into what this rank's sink gets:
one report gathered from every rank on rank 0, with a row for DDP's gradient all-reduce.

Limits: one forward is one sample, so a model called twice before one backward (two inputs through
one network) is sampled without its backward; a forward whose control flow depends on its data gets
its backward untimed (and says so in the log); a backward called on another thread than the counted
forward is not counted (the mode is per thread); checkpointed (recomputed) forwards are not supported
(a forward inside the counted backward drops the sample). A backward whose very first node raises
before any op ran cannot be told from no backward at all: that sample is reported without backward
rows, as a validation step with grad enabled is.
"""

from __future__ import annotations

from torch import nn

from layerprof.api.compiled import is_compiled, unwrap_compiled
from layerprof.api.sample_tap import SampleTap
from layerprof.api.sinks import SinkArg, resolve_sink
from layerprof.api.watcher import Watcher
from layerprof.distributed.gather import default_gather
from layerprof.hardware.targets import TargetArg

__all__ = ["watch"]


def watch(
    model: nn.Module,
    *,
    every: int = 100,
    target: TargetArg = "auto",
    backward: bool = True,
    sink: SinkArg = None,
    gather: SampleTap | bool | None = None,
    strict: bool = False,
    nvtx: bool = False,
    cache_model: bool = True,
) -> Watcher:
    """Sample the first training step of ``model`` and one in every ``every`` forwards after it (steps
    0, ``every``, ``2 * every``, ...): a per-layer report of the
    forward and the backward (FLOPs, bytes, times, roofline verdicts on ``target``) goes to ``sink``
    (see :mod:`layerprof.api.sinks`). Between samples the model carries one forward pre-hook on its root.

    ``backward=False`` samples forwards only. ``watcher.remove()`` (or leaving ``with watch(...)``)
    takes every hook off, a sample in flight included, and lets go of the model. How a step is
    sampled: :mod:`layerprof.api.watch`. A sampled step whose backward raised is dropped (a warning
    names the step), not reported.

    A sink that raises never breaks the training step: its error is logged and training goes on.
    ``strict=True`` raises it after the step instead: at the next forward of the model, at
    ``watcher.flush()`` or at ``watcher.remove()``, never inside the backward.

    Under ``torch.distributed`` with several ranks (DDP), rank 0's sink gets one report of every
    rank's sample, with DDP's all-reduce in a row of its own (:mod:`layerprof.distributed.gather`); pass a
    ``layerprof.RankGather(...)`` to configure it, ``gather=False`` to keep each rank's own.

    A ``torch.compile``'d model is sampled through the module it wraps (rows named as its layers),
    with a warning: times of compiled code are not per layer.

    ``nvtx=True`` also pushes an NVTX range named after each layer's row around its forward and its
    backward, every step, until the watcher is removed (:mod:`layerprof.api.nvtx`).

    ``cache_model=False``: the DRAM-only verdicts (README, "The cache-aware roofline").
    """
    if is_compiled(model):
        unwrap_compiled(model, timed=True)  # the warning only: the watcher hooks the wrapper itself
    return Watcher(
        model,
        every=every,
        target=target,
        backward=backward,
        sink=resolve_sink(sink),
        gather=default_gather(gather),
        strict=strict,
        nvtx=nvtx,
        cache_model=cache_model,
    )
