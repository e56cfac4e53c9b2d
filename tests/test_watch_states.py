"""watch()'s sample life cycle: the (phase, event) table driven directly, the counting-mode helper, and
a KeyboardInterrupt inside a sampled forward."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode, _get_current_dispatch_mode

import layerprof
from layerprof.api import watcher as watcher_module
from layerprof.api.counting_mode import CountingMode, _StepCounter, engine_callback
from layerprof.api.watch_states import (
    IGNORED,
    TRANSITIONS,
    Action,
    Event,
    Phase,
    SampleState,
    Transition,
    step,
    why_ignored,
)
from layerprof.report.facade import Report
from layerprof.walk.collect import Collector

E, P, A = Event, Phase, Action
LIVE = [p for p in Phase if p not in (P.EMITTED, P.DROPPED)]


def drive(state: SampleState, events: Iterable[Event]) -> list[tuple[Phase, Action]]:
    """Fire each event as the watcher does (a transition's ``then`` follows it): (phase, action) each."""
    seen = []
    for event in events:
        transition: Transition | None = state.fire(event)
        seen.append((state.phase, transition.action))
        while transition is not None and transition.then is not None:
            transition = state.fire(transition.then)
            seen.append((state.phase, transition.action))
    return seen


FLAGS = (
    "live",
    "counting",
    "awaiting_backward",
    "counted_forward",
    "counted_backward",
    "counted_backward_over",
    "counts_in",
    "letting_through",
    "timing",
    "timed_forward",
    "timed_backward_over",
)


def flags(state: SampleState) -> set[str]:
    return {name for name in FLAGS if getattr(state, name)}


# -- event sequences -------------------------------------------------------------------------------------
def test_a_train_step_is_counted_then_timed() -> None:
    state = SampleState()
    assert state.phase is P.NEW and flags(state) == {"live"}
    expected = [
        (E.FORWARD_STARTED, P.COUNT_FORWARD, A.START_COUNTING, {"live", "counting"}),
        (
            E.FORWARD_ENDED_WITH_GRAD,
            P.AWAIT_BACKWARD,
            A.FOLLOW_BACKWARD,
            {"live", "counting", "counted_forward", "awaiting_backward"},
        ),
        (
            E.COUNTED_BACKWARD_STARTED,
            P.COUNT_BACKWARD,
            A.QUEUE_END,
            {"live", "counting", "counted_forward", "counted_backward"},
        ),
        # a second output's node: the end callback is queued once
        (
            E.COUNTED_BACKWARD_STARTED,
            P.COUNT_BACKWARD,
            A.NOTHING,
            {"live", "counting", "counted_forward", "counted_backward"},
        ),
        (E.COUNTED_BACKWARD_OVER, P.ARMED, A.END_COUNTING, {"live", "counted_forward", "counts_in"}),
        (E.FORWARD_STARTED, P.ARMED, A.MEET_FORWARD, {"live", "counted_forward", "counts_in"}),
        (E.SAME_KIND, P.TIME_FORWARD, A.START_TIMING, {"live", "counted_forward", "counts_in", "timing"}),
        (
            E.FORWARD_ENDED_WITH_GRAD,
            P.TIME_BACKWARD,
            A.TIME_BACKWARD,
            {"live", "counted_forward", "counts_in", "timing", "timed_forward"},
        ),
        (
            E.TIMED_BACKWARD_OVER,
            P.EMITTED,
            A.TELL_GATHER_AND_EMIT,
            {"counted_forward", "counts_in", "timed_forward"},
        ),
    ]
    for event, phase, action, expected_flags in expected:
        transition = state.fire(event)
        assert (state.phase, transition.action) == (phase, action), event
        assert flags(state) == expected_flags, event


def test_an_eval_step_under_no_grad_has_no_backward_phase() -> None:
    state = SampleState()
    events = [E.FORWARD_STARTED, E.FORWARD_ENDED, E.FORWARD_STARTED, E.SAME_KIND, E.FORWARD_ENDED]
    assert drive(state, events) == [
        (P.COUNT_FORWARD, A.START_COUNTING),
        (P.ARMED, A.COUNTS_IN),  # the counting step ends with the forward
        (P.ARMED, A.MEET_FORWARD),
        (P.TIME_FORWARD, A.START_TIMING),
        (P.EMITTED, A.EMIT),
    ]
    assert not state.live and not state.counting


def test_a_forward_of_another_kind_is_let_through_between_the_steps() -> None:
    state = SampleState(P.ARMED)
    drive(state, [E.FORWARD_STARTED, E.OTHER_KIND])
    assert state.phase is P.LETTING_THROUGH and state.letting_through and not state.timing
    assert drive(state, [E.FORWARD_ENDED_WITH_GRAD]) == [(P.ARMED, A.REARM)]
    assert drive(state, [E.FORWARD_STARTED, E.WAITED_TOO_LONG])[-1] == (P.DROPPED, A.DROP)


@pytest.mark.parametrize("reached_the_model", [True, False], ids=["in-the-model", "before-the-model"])
def test_a_counted_backward_that_raises_drops_the_sample_at_the_next_forward(reached_the_model: bool) -> None:
    state = SampleState()
    drive(state, [E.FORWARD_STARTED, E.FORWARD_ENDED_WITH_GRAD, E.BACKWARD_SEEN])  # the loss's first op
    assert state.phase is P.BACKWARD_RUNNING and state.counting and not state.awaiting_backward
    if reached_the_model:
        drive(state, [E.COUNTED_BACKWARD_STARTED])
        assert state.counted_backward
    # the backward raised: the engine never runs its end callbacks; the next forward finds it unended,
    # and the sample's counts would be a step without (some of) its backward: it is dropped, warned
    assert drive(state, [E.FORWARD_STARTED]) == [(P.DROPPED, A.ABANDON)]
    assert not state.live and not state.counting
    assert "backward raised" in step(P.COUNT_BACKWARD, E.FORWARD_STARTED).why


def test_a_backward_that_ends_before_the_model_is_another_graphs() -> None:
    state = SampleState(P.AWAIT_BACKWARD)
    assert state.awaiting_backward
    assert drive(state, [E.BACKWARD_SEEN, E.BACKWARD_OVER]) == [
        (P.BACKWARD_RUNNING, A.WATCH_BACKWARD),
        (P.AWAIT_BACKWARD, A.NOTHING),
    ]
    # the step's own backward: its first op's callback runs before the end callback queued later
    events = [E.BACKWARD_SEEN, E.COUNTED_BACKWARD_STARTED, E.BACKWARD_OVER, E.COUNTED_BACKWARD_OVER]
    assert [phase for phase, _ in drive(state, events)] == [
        P.BACKWARD_RUNNING,
        P.COUNT_BACKWARD,
        P.COUNT_BACKWARD,
        P.ARMED,
    ]


def test_a_timed_backward_that_raises_is_emitted_without_backward_times_at_the_next_forward() -> None:
    state = SampleState(P.TIME_FORWARD)
    drive(state, [E.FORWARD_ENDED_WITH_GRAD])
    assert state.phase is P.TIME_BACKWARD
    assert drive(state, [E.FLUSH]) == [(P.TIME_BACKWARD, A.NOTHING)]  # not over: nothing to do yet
    assert drive(state, [E.FORWARD_STARTED]) == [(P.EMITTED, A.EMIT)]


def test_backwards_that_end_on_another_thread_wait_for_the_training_thread() -> None:
    state = SampleState(P.COUNT_BACKWARD)
    drive(state, [E.COUNTED_BACKWARD_OVER_OFF_THREAD])
    assert state.phase is P.COUNTED_OFF_THREAD and state.counted_backward_over and not state.counting
    assert drive(state, [E.FLUSH]) == [(P.ARMED, A.END_COUNTING)]
    state = SampleState(P.TIME_BACKWARD)
    assert drive(state, [E.TIMED_BACKWARD_OVER_OFF_THREAD]) == [(P.TIMED_OFF_THREAD, A.TELL_GATHER)]
    assert state.timed_backward_over
    assert drive(state, [E.FLUSH]) == [(P.EMITTED, A.EMIT)]


@pytest.mark.parametrize("phase", LIVE, ids=lambda p: p.value)
def test_remove_mid_sample_drops_it_from_every_live_phase(phase: Phase) -> None:
    state = SampleState(phase)
    assert drive(state, [E.REMOVED]) == [(P.DROPPED, A.RELEASE)]
    assert not state.live and not state.counting
    # its late hooks and callbacks find a finished sample: every event is ignored
    for event in Event:
        assert drive(state, [event]) == [(P.DROPPED, A.NOTHING)]


def test_an_event_illegal_in_its_phase_drops_the_sample() -> None:
    state = SampleState(P.ARMED)
    transition = state.fire(E.COUNTED_BACKWARD_STARTED)  # its pre-hooks came off with the counting step
    assert state.phase is P.DROPPED and transition.action is A.REFUSE
    assert "counted backward started" in transition.why and "armed" in transition.why
    assert step(P.TIME_FORWARD, E.TIMED_BACKWARD_OVER).action is A.REFUSE
    assert step(P.NEW, E.FLUSH).action is A.REFUSE


def test_flush_after_a_forward_that_never_returned_drops_the_sample() -> None:
    """flush() runs outside forwards: a forward phase then means the forward was interrupted."""
    for phase in (P.COUNT_FORWARD, P.LETTING_THROUGH, P.TIME_FORWARD):
        transition = step(phase, E.FLUSH)
        assert (transition.to, transition.action) == (P.DROPPED, A.DROP), phase
        assert "did not return" in transition.why


# -- the table itself -----------------------------------------------------------------------------------
def test_every_pair_is_a_transition_ignored_or_refused() -> None:
    assert not set(TRANSITIONS) & set(IGNORED)
    for phase in Phase:
        for event in Event:
            transition = step(phase, event)
            ignored = why_ignored(phase, event)
            if (phase, event) in TRANSITIONS:
                assert ignored is None and transition is TRANSITIONS[(phase, event)]
            elif ignored is not None:
                assert transition == Transition(phase), (phase, event)
            else:
                assert (transition.to, transition.action) == (P.DROPPED, A.REFUSE), (phase, event)


def test_finished_samples_have_no_transitions_and_drops_say_why() -> None:
    assert all(phase in LIVE for phase, _ in TRANSITIONS)
    for (phase, event), transition in TRANSITIONS.items():
        if transition.action in (A.DROP, A.DROP_INTERRUPTED):
            assert transition.why, (phase, event)
        if transition.then is not None:  # the follow-up has a transition of its own
            assert (transition.to, transition.then) in TRANSITIONS, (phase, event)


def test_every_action_has_a_handler() -> None:
    assert set(watcher_module._ACTIONS) == set(Action)


# -- the counting-mode helper -----------------------------------------------------------------------------
class _Counting:
    counting = True


def _mode() -> CountingMode:
    return CountingMode(Collector(nn.Linear(2, 2)), _Counting())


def test_the_counting_mode_enters_and_leaves_once() -> None:
    mode = _mode()
    assert mode.exit() and not mode.on_stack  # never entered: nothing to leave
    mode.enter()
    mode.enter()
    assert mode.on_stack and isinstance(_get_current_dispatch_mode(), _StepCounter)
    assert mode.exit() and mode.exit()
    assert _get_current_dispatch_mode() is None
    with _mode() as other:
        assert other.on_stack
    assert not other.on_stack and _get_current_dispatch_mode() is None


def test_the_counting_mode_waits_when_it_cannot_leave_yet() -> None:
    mode = _mode()
    mode.enter()
    try:
        with engine_callback():
            assert not mode.exit() and mode.on_stack  # the engine would put it back
        with TorchDispatchMode():  # type: ignore[no-untyped-call]
            assert not mode.exit() and mode.on_stack  # popping now would pop the mode above
        assert mode.exit()
    finally:
        mode.exit()
    assert _get_current_dispatch_mode() is None


@pytest.mark.parametrize("pops", [True, False], ids=["after-pop", "before-pop"])
def test_the_counting_mode_is_safe_when_leaving_is_interrupted(
    monkeypatch: pytest.MonkeyPatch, pops: bool
) -> None:
    mode = _mode()
    mode.enter()
    real_exit = _StepCounter.__exit__

    def interrupted(self: _StepCounter, *args: object) -> None:
        if pops:
            real_exit(self, None, None, None)
        raise KeyboardInterrupt

    monkeypatch.setattr(_StepCounter, "__exit__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mode.exit()
    monkeypatch.setattr(_StepCounter, "__exit__", real_exit)
    assert mode.on_stack is not pops  # read back from the stack, not assumed
    assert mode.exit()  # leaves if still on, never pops anything else
    assert _get_current_dispatch_mode() is None


# -- a KeyboardInterrupt inside a sampled forward -------------------------------------------------------
class Interrupting(nn.Module):
    """Its forward raises KeyboardInterrupt half-way while ``interrupt`` is set (Ctrl-C in a forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)
        self.interrupt = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        if self.interrupt:
            raise KeyboardInterrupt
        return self.out(y.relu())  # type: ignore[no-any-return]


def hook_ids(model: nn.Module) -> dict[tuple[str, str], frozenset[int]]:
    """Every module hook on ``model`` and its submodules, by module and kind."""
    kinds = ("_forward_pre_hooks", "_forward_hooks", "_backward_hooks", "_backward_pre_hooks")
    return {(name, kind): frozenset(getattr(m, kind)) for name, m in model.named_modules() for kind in kinds}


def user_hooked() -> tuple[Interrupting, dict[tuple[str, str], frozenset[int]]]:
    model = Interrupting()
    model.fc.register_forward_hook(lambda *_: None)  # the user's own hooks must stay
    model.register_forward_pre_hook(lambda *_: None)
    return model, hook_ids(model)


def with_watcher_hook(before: dict[tuple[str, str], frozenset[int]], model: nn.Module) -> None:
    now = hook_ids(model)
    extra = {key: now[key] - before[key] for key in now if now[key] != before[key]}
    assert set(extra) == {("", "_forward_pre_hooks")} and len(extra["", "_forward_pre_hooks"]) == 1
    assert all(before[key] <= now[key] for key in before)


def test_a_keyboard_interrupt_in_the_counted_forward_leaves_nothing_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model, before = user_hooked()
    reports: list[Report] = []
    watcher = layerprof.watch(model, every=1, target=None, sink=reports.append)
    x = torch.randn(3, 4)
    try:
        with pytest.raises(KeyboardInterrupt):
            model(x)
        # torch runs no always_call hook for a BaseException, so nothing of layerprof has run since
        # the interrupt: flush() (or the next forward, or remove()) is the first call that can act.
        with caplog.at_level(logging.INFO, logger="layerprof"):
            watcher.flush()
        assert "the counted forward did not return" in caplog.text
        assert _get_current_dispatch_mode() is None
        with_watcher_hook(before, model)
        assert not watcher.in_flight
        model.interrupt = False
        for _ in range(2):  # a later forward works, and sampling goes on: counted, then timed
            model(x).sum().backward()
        assert len(reports) == 1 and reports[0].row("fc", "backward").time_ms is not None
    finally:
        watcher.remove()
    assert hook_ids(model) == before and _get_current_dispatch_mode() is None


def test_a_keyboard_interrupt_in_the_timed_forward_leaves_nothing_behind() -> None:
    model, before = user_hooked()
    model.interrupt = False
    watcher = layerprof.watch(model, every=1, target=None, sink=lambda report: None)
    x = torch.randn(3, 4)
    try:
        model(x).sum().backward()  # counted
        model.interrupt = True
        with pytest.raises(KeyboardInterrupt):
            model(x)  # timed
        watcher.flush()
        assert _get_current_dispatch_mode() is None and not watcher.in_flight
        with_watcher_hook(before, model)
        model.interrupt = False
        model(x).sum().backward()
    finally:
        watcher.remove()
    assert hook_ids(model) == before and _get_current_dispatch_mode() is None


def test_the_next_forward_after_a_keyboard_interrupt_takes_the_sample_off() -> None:
    """Without flush(): torch calls the interrupted collector's root pre-hook once more in that forward
    (it listed the root's pre-hooks before calling the watcher's), so it must still be on then."""
    model, before = user_hooked()
    watcher = layerprof.watch(model, every=2, target=None, sink=lambda report: None)
    x = torch.randn(3, 4)
    try:
        model.interrupt = False
        model(x).sum().backward()  # step 0: counted (the first step is always sampled)
        model(x).sum().backward()  # step 1: timed, emitted
        model.interrupt = True
        with pytest.raises(KeyboardInterrupt):
            model(x)  # step 2: counted, interrupted
        model.interrupt = False
        model(x).sum().backward()  # step 3: drops the interrupted sample first, then runs plainly
        assert _get_current_dispatch_mode() is None and not watcher.in_flight
        with_watcher_hook(before, model)
    finally:
        watcher.remove()
    assert hook_ids(model) == before


def test_a_sampled_forward_right_after_a_keyboard_interrupt_is_counted_afresh() -> None:
    model, before = user_hooked()
    reports: list[Report] = []
    watcher = layerprof.watch(model, every=1, target=None, sink=reports.append)
    x = torch.randn(3, 4)
    try:
        with pytest.raises(KeyboardInterrupt):
            model(x)  # 1: counted, interrupted
        model.interrupt = False
        model(x).sum().backward()  # 2: drops 1, counted
        model(x).sum().backward()  # 3: timed
        assert len(reports) == 1 and reports[0].row("fc").calls == 1
        assert reports[0].row("out", "backward").time_ms is not None
        watcher.flush()
        assert _get_current_dispatch_mode() is None
    finally:
        watcher.remove()
    assert hook_ids(model) == before and _get_current_dispatch_mode() is None


def test_a_keyboard_interrupt_leaving_the_with_block_takes_everything_off() -> None:
    model, before = user_hooked()
    with pytest.raises(KeyboardInterrupt), layerprof.watch(model, every=1, target=None):
        model(torch.randn(3, 4))
    assert _get_current_dispatch_mode() is None and hook_ids(model) == before
    model.interrupt = False
    assert model(torch.randn(3, 4)).shape == (3, 2)
