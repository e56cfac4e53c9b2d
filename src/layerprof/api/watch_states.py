"""The life cycle of one ``layerprof.watch`` sample, as a table from (phase, event) to a transition.

Pure bookkeeping (no torch): :class:`SampleState` holds the phase, and every flag the watcher reads
is a property derived from it. :meth:`SampleState.fire` looks an event up in :data:`TRANSITIONS` and
moves to the next phase; the :class:`~layerprof.api.watcher.Watcher` then runs the transition's
:class:`Action`. A pair missing from the table is either in :data:`IGNORED` (an event that can
legitimately arrive and needs nothing, listed with the reason) or illegal: the sample is dropped with
the :attr:`Action.REFUSE` action, so that a sequence this table did not foresee can never leave a
hook or the counting mode behind, nor break the training run. A finished sample (emitted or
dropped) ignores every event: its hooks and callbacks may still fire once after it ended.

An action may answer with a follow-up event (the verdict of a comparison, say), and a transition
may name one in ``then``; the watcher fires it from the new phase.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["IGNORED", "OFF_THREAD", "TRANSITIONS", "Action", "Event", "Phase", "SampleState", "Transition"]


class Phase(enum.Enum):
    NEW = "new"  # made at a sampling forward; nothing installed yet
    COUNT_FORWARD = "count forward"  # the counting mode counts, the collector's module hooks are on
    AWAIT_BACKWARD = "await backward"  # the counted forward returned outputs that need a gradient
    BACKWARD_RUNNING = "backward running"  # a backward runs ops, and has not reached those outputs yet
    COUNT_BACKWARD = "count backward"  # that backward reached the model: its end callback is queued
    COUNTED_OFF_THREAD = "counted off thread"  # the engine ended it on another thread: rows read later
    ARMED = "armed"  # the counts are in; the timer's hooks wait for a forward of the same kind
    LETTING_THROUGH = "letting through"  # a forward of another kind runs without the timer's hooks
    TIME_FORWARD = "time forward"
    TIME_BACKWARD = "time backward"  # the timed forward returned; the backward timer's hooks wait
    TIMED_OFF_THREAD = "timed off thread"  # the engine ended the timed backward on another thread
    EMITTED = "emitted"  # the report went to the sink
    DROPPED = "dropped"  # abandoned or removed; nothing of it stays installed


class Event(enum.Enum):
    FORWARD_STARTED = "forward started"  # the root pre-hook, on the sampling thread
    FORWARD_ENDED = "forward ended"  # the root's forward returned; no output leads to a followed backward
    FORWARD_ENDED_WITH_GRAD = "forward ended with grad"  # ... and some output does
    FORWARD_RAISED = "forward raised"  # the root's always_call forward hook, with an Exception in flight
    BACKWARD_SEEN = "backward seen"  # the counting mode met an op run by the autograd engine
    BACKWARD_OVER = "backward over"  # the end callback of that backward (queued by WATCH_BACKWARD)
    COUNTED_BACKWARD_STARTED = "counted backward started"  # a pre-hook on a counted output's node
    COUNTED_BACKWARD_OVER = "counted backward over"  # its end callback, on the counting thread
    COUNTED_BACKWARD_OVER_OFF_THREAD = "counted backward over off thread"  # on another (device) thread
    SAME_KIND = "same kind"  # MEET_FORWARD's verdicts on a forward met while armed
    OTHER_KIND = "other kind"
    WAITED_TOO_LONG = "waited too long"
    NOTHING_TO_TIME = "nothing to time"  # TIME_BACKWARD found no node of the backward to hook
    TIMED_BACKWARD_OVER = "timed backward over"  # the backward timer's end callback, on the timing thread
    TIMED_BACKWARD_OVER_OFF_THREAD = "timed backward over off thread"
    FLUSH = "flush"  # Watcher.flush(), on the training thread, outside any forward
    REMOVED = "removed"  # Watcher.remove()
    HANDLER_RAISED = "handler raised"  # an action raised (KeyboardInterrupt included)


class Action(enum.Enum):
    """What the watcher does on a transition (one method of the Watcher each)."""

    NOTHING = "nothing"
    START_COUNTING = "start counting"  # the collector's hooks, the root forward hook, the mode entered
    FOLLOW_BACKWARD = "follow backward"  # module hooks off, pre-hooks on the outputs' nodes, timer on
    WATCH_BACKWARD = "watch backward"  # queue the engine callback that says a backward ended
    COUNTS_IN = "counts in"  # module hooks off, END_COUNTING, timer on (a step without backward)
    QUEUE_END = "queue end"  # queue the engine callback that ends the counted backward
    END_COUNTING = "end counting"  # leave the mode (not from an engine callback), read rows, drop graph
    MEET_FORWARD = "meet forward"  # leave the mode; answer SAME_KIND, OTHER_KIND or WAITED_TOO_LONG
    START_TIMING = "start timing"
    LET_THROUGH = "let through"  # the timer's hooks off, a root forward hook to re-arm after it
    REARM = "rearm"  # that hook off, a fresh timer on
    LEAVE_MODE = "leave mode"
    TIME_BACKWARD = "time backward"  # hook the backward's nodes; answer NOTHING_TO_TIME when none
    TELL_GATHER = "tell gather"  # the gather helper hears that the timed backward is over
    TELL_GATHER_AND_EMIT = "tell gather and emit"
    EMIT = "emit"  # build the report, release, hand it to the sink
    DROP = "drop"  # log why, tell the gather helper, release
    ABANDON = "abandon"  # DROP, logged as a warning: the step it sampled failed (its backward raised)
    DROP_INTERRUPTED = "drop interrupted"  # DROP from the root pre-hook; the collector off at its end
    REFUSE = "refuse"  # an illegal event: log it, then as DROP
    RELEASE = "release"  # take everything off, silently (remove(), a handler that raised)


@dataclass(frozen=True, slots=True)
class Transition:
    to: Phase
    action: Action = Action.NOTHING
    then: Event | None = None  # fired next from ``to`` when the action answers nothing
    why: str = ""  # for DROP and REFUSE: the log's reason (``{every}`` is the watcher's ``every``)


P, E, A = Phase, Event, Action
_END_COUNTING_THEN_MEET = Transition(P.ARMED, A.END_COUNTING, then=E.FORWARD_STARTED)


def _drop(why: str) -> Transition:
    return Transition(P.DROPPED, A.DROP, why=why)


# A backward that never ended before the next forward raised (its engine callback never ran); a
# forward of the model inside the backward (recomputation) is not supported and lands here too.
_BACKWARD_RAISED = Transition(
    P.DROPPED,
    A.ABANDON,
    why="its counted backward raised (or ran a forward of the model): its backward rows would be incomplete",
)


TERMINAL: frozenset[Phase] = frozenset({P.EMITTED, P.DROPPED})
LIVE: tuple[Phase, ...] = tuple(p for p in Phase if p not in TERMINAL)

TRANSITIONS: Mapping[tuple[Phase, Event], Transition] = {
    (P.NEW, E.FORWARD_STARTED): Transition(P.COUNT_FORWARD, A.START_COUNTING),
    # -- the counting step
    (P.COUNT_FORWARD, E.FORWARD_ENDED_WITH_GRAD): Transition(P.AWAIT_BACKWARD, A.FOLLOW_BACKWARD),
    (P.COUNT_FORWARD, E.FORWARD_ENDED): Transition(P.ARMED, A.COUNTS_IN),
    # A forward starting before ours returned: ours raised past its hooks (a BaseException skips
    # torch's always_call hooks). flush() runs outside forwards, so it means the same.
    (P.COUNT_FORWARD, E.FORWARD_STARTED): Transition(
        P.DROPPED, A.DROP_INTERRUPTED, why="the counted forward raised"
    ),
    (P.COUNT_FORWARD, E.FLUSH): _drop("the counted forward did not return"),
    (P.AWAIT_BACKWARD, E.COUNTED_BACKWARD_STARTED): Transition(P.COUNT_BACKWARD, A.QUEUE_END),
    (P.AWAIT_BACKWARD, E.FORWARD_STARTED): _END_COUNTING_THEN_MEET,  # no backward came (validation)
    # A backward's first ops (the loss's nodes) run before it reaches the model's outputs; one that
    # ends without reaching them is another graph's (a GAN's other network), not this step's.
    (P.AWAIT_BACKWARD, E.BACKWARD_SEEN): Transition(P.BACKWARD_RUNNING, A.WATCH_BACKWARD),
    (P.BACKWARD_RUNNING, E.COUNTED_BACKWARD_STARTED): Transition(P.COUNT_BACKWARD, A.QUEUE_END),
    (P.BACKWARD_RUNNING, E.BACKWARD_OVER): Transition(P.AWAIT_BACKWARD),
    (P.BACKWARD_RUNNING, E.FORWARD_STARTED): _BACKWARD_RAISED,  # before it reached the model
    (P.COUNT_BACKWARD, E.COUNTED_BACKWARD_OVER): Transition(P.ARMED, A.END_COUNTING),
    (P.COUNT_BACKWARD, E.COUNTED_BACKWARD_OVER_OFF_THREAD): Transition(P.COUNTED_OFF_THREAD),
    (P.COUNT_BACKWARD, E.FORWARD_STARTED): _BACKWARD_RAISED,
    (P.COUNTED_OFF_THREAD, E.FLUSH): Transition(P.ARMED, A.END_COUNTING),
    (P.COUNTED_OFF_THREAD, E.FORWARD_STARTED): _END_COUNTING_THEN_MEET,
    # -- between the two steps
    (P.ARMED, E.FORWARD_STARTED): Transition(P.ARMED, A.MEET_FORWARD),
    (P.ARMED, E.SAME_KIND): Transition(P.TIME_FORWARD, A.START_TIMING),
    (P.ARMED, E.OTHER_KIND): Transition(P.LETTING_THROUGH, A.LET_THROUGH),
    (P.ARMED, E.WAITED_TOO_LONG): _drop("no forward like the counted one came in {every} forwards"),
    (P.ARMED, E.FLUSH): Transition(P.ARMED, A.LEAVE_MODE),
    (P.LETTING_THROUGH, E.FORWARD_ENDED): Transition(P.ARMED, A.REARM),
    (P.LETTING_THROUGH, E.FORWARD_ENDED_WITH_GRAD): Transition(P.ARMED, A.REARM),
    (P.LETTING_THROUGH, E.FORWARD_STARTED): _drop("a forward let through before the timing step raised"),
    (P.LETTING_THROUGH, E.FLUSH): _drop("a forward let through before the timing step did not return"),
    # -- the timing step
    (P.TIME_FORWARD, E.FORWARD_ENDED): Transition(P.EMITTED, A.EMIT),
    (P.TIME_FORWARD, E.FORWARD_ENDED_WITH_GRAD): Transition(P.TIME_BACKWARD, A.TIME_BACKWARD),
    (P.TIME_FORWARD, E.FORWARD_STARTED): _drop("its timed forward did not finish"),
    (P.TIME_FORWARD, E.FLUSH): _drop("its timed forward did not return"),
    (P.TIME_BACKWARD, E.NOTHING_TO_TIME): Transition(P.EMITTED, A.EMIT),
    (P.TIME_BACKWARD, E.TIMED_BACKWARD_OVER): Transition(P.EMITTED, A.TELL_GATHER_AND_EMIT),
    (P.TIME_BACKWARD, E.TIMED_BACKWARD_OVER_OFF_THREAD): Transition(P.TIMED_OFF_THREAD, A.TELL_GATHER),
    (P.TIME_BACKWARD, E.FORWARD_STARTED): Transition(P.EMITTED, A.EMIT),  # no backward came: no times
    (P.TIMED_OFF_THREAD, E.FLUSH): Transition(P.EMITTED, A.EMIT),
    (P.TIMED_OFF_THREAD, E.FORWARD_STARTED): Transition(P.EMITTED, A.EMIT),
    # -- from any live phase
    **{(p, E.FORWARD_RAISED): _drop("the forward raised") for p in LIVE},
    **{(p, E.REMOVED): Transition(P.DROPPED, A.RELEASE) for p in LIVE},
    **{(p, E.HANDLER_RAISED): Transition(P.DROPPED, A.RELEASE) for p in LIVE},
}

#: The event an engine callback ending a backward fires instead when it runs on another thread.
OFF_THREAD: Mapping[Event, Event] = {
    E.COUNTED_BACKWARD_OVER: E.COUNTED_BACKWARD_OVER_OFF_THREAD,
    E.TIMED_BACKWARD_OVER: E.TIMED_BACKWARD_OVER_OFF_THREAD,
}

_AFTER_COUNTED_FORWARD = (P.AWAIT_BACKWARD, P.BACKWARD_RUNNING, P.COUNT_BACKWARD, P.COUNTED_OFF_THREAD)
_AFTER_COUNTING = (P.ARMED, P.LETTING_THROUGH, P.TIME_FORWARD, P.TIME_BACKWARD, P.TIMED_OFF_THREAD)
_FORWARD_ENDS = (E.FORWARD_ENDED, E.FORWARD_ENDED_WITH_GRAD)
_COUNTED_ENDS = (E.COUNTED_BACKWARD_OVER, E.COUNTED_BACKWARD_OVER_OFF_THREAD)

#: Events that can arrive in a live phase and need nothing, each with the reason.
IGNORED: Mapping[tuple[Phase, Event], str] = {
    (P.AWAIT_BACKWARD, E.FLUSH): "no backward has come yet",
    (P.BACKWARD_RUNNING, E.FLUSH): "a backward runs; the next forward tells whether it raised",
    # The mode reports an op when the phase awaits a backward: two device threads may both see that.
    (P.BACKWARD_RUNNING, E.BACKWARD_SEEN): "another thread's first op of the same backward",
    (P.COUNT_BACKWARD, E.BACKWARD_SEEN): "another thread's first op of the same backward",
    (P.COUNT_BACKWARD, E.FLUSH): "the counted backward is not over",
    (P.TIME_BACKWARD, E.FLUSH): "the timed backward is not over",
    (P.COUNT_BACKWARD, E.COUNTED_BACKWARD_STARTED): "another output's node: the end is queued once",
    (P.COUNTED_OFF_THREAD, E.COUNTED_BACKWARD_STARTED): "another output's node, after the end",
    # The root forward hook stays on until the counting step ends: a forward of the model on another
    # thread passes it (such forwards are never sampled).
    **{(p, e): "another thread's forward" for p in _AFTER_COUNTED_FORWARD for e in _FORWARD_ENDS},
    # A forward started during the counted backward (recomputation) ended the counting step; the
    # backward's end callback comes afterwards.
    **{(p, e): "a stale end of the counted backward" for p in _AFTER_COUNTING for e in _COUNTED_ENDS},
    # WATCH_BACKWARD's callback runs first among those of the backward that reached the model.
    **{
        (p, E.BACKWARD_OVER): "the end of a backward that reached the model"
        for p in (P.COUNT_BACKWARD, P.COUNTED_OFF_THREAD, *_AFTER_COUNTING)
    },
}

_NOTHING_AFTER = "the sample is over: a late hook or callback of it"


class SampleState:
    """One sample's phase, and the flags the watcher used to keep by hand, derived from it."""

    __slots__ = ("phase",)

    def __init__(self, phase: Phase = Phase.NEW) -> None:
        self.phase = phase

    def fire(self, event: Event) -> Transition:
        """Move on ``event``; returns the transition taken (``NOTHING`` for an ignored event)."""
        transition = step(self.phase, event)
        self.phase = transition.to
        return transition

    def __repr__(self) -> str:
        return f"SampleState({self.phase.value})"

    # -- derived flags ---------------------------------------------------------------------------------
    @property
    def live(self) -> bool:
        """In flight: neither emitted nor dropped (``Watcher.in_flight``)."""
        return self.phase not in TERMINAL

    @property
    def counting(self) -> bool:
        """The counting mode prices the ops that pass it; else it passes them through untouched."""
        return self.phase in (P.COUNT_FORWARD, P.AWAIT_BACKWARD, P.BACKWARD_RUNNING, P.COUNT_BACKWARD)

    @property
    def awaiting_backward(self) -> bool:
        """The counted forward returned and no backward runs: the mode reports the next one's first op."""
        return self.phase is P.AWAIT_BACKWARD

    @property
    def counted_forward(self) -> bool:
        """The counted forward returned (later phases; an emitted sample's did)."""
        return self.phase not in (P.NEW, P.COUNT_FORWARD, P.DROPPED)

    @property
    def counted_backward(self) -> bool:
        """While counting: the counted backward reached the model (its end callback is queued)."""
        return self.phase in (P.COUNT_BACKWARD, P.COUNTED_OFF_THREAD)

    @property
    def counted_backward_over(self) -> bool:
        """While counting: that backward ended on another thread; the rows wait for the training thread."""
        return self.phase is P.COUNTED_OFF_THREAD

    @property
    def counts_in(self) -> bool:
        """The rows of the counting step have been read."""
        return self.phase in (*_AFTER_COUNTING, P.EMITTED)

    @property
    def letting_through(self) -> bool:
        """A forward of another kind runs between the steps, the timer's hooks off."""
        return self.phase is P.LETTING_THROUGH

    @property
    def timing(self) -> bool:
        return self.phase in (P.TIME_FORWARD, P.TIME_BACKWARD, P.TIMED_OFF_THREAD)

    @property
    def timed_forward(self) -> bool:
        """The timed forward returned."""
        return self.phase in (P.TIME_BACKWARD, P.TIMED_OFF_THREAD, P.EMITTED)

    @property
    def timed_backward_over(self) -> bool:
        """The timed backward ended on another thread; the report waits for the training thread."""
        return self.phase is P.TIMED_OFF_THREAD


def step(phase: Phase, event: Event) -> Transition:
    """The transition ``event`` takes from ``phase``: from the table, ignored, or refused."""
    transition = TRANSITIONS.get((phase, event))
    if transition is not None:
        return transition
    if phase in TERMINAL or (phase, event) in IGNORED:
        return Transition(phase)
    return Transition(P.DROPPED, A.REFUSE, why=f"{event.value!r} cannot happen in phase {phase.value!r}")


def why_ignored(phase: Phase, event: Event) -> str | None:
    """The reason ``event`` is ignored in ``phase``, or None when it is not."""
    if (phase, event) in TRANSITIONS:
        return None
    return _NOTHING_AFTER if phase in TERMINAL else IGNORED.get((phase, event))
