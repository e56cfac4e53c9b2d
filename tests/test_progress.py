"""The CLI's progress bar (layerprof.cli.progress): tqdm on a terminal, nothing at all elsewhere."""

from __future__ import annotations

import io

import pytest
from tqdm import tqdm

from layerprof.cli.progress import Progress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Closed(io.StringIO):
    def isatty(self) -> bool:
        raise ValueError("I/O operation on closed file")


def test_on_a_terminal_it_is_a_tqdm_bar_that_clears_its_line() -> None:
    stream = _Terminal()
    with Progress(3, stream=stream, prefix="layerprof audit") as bar:
        bar.step("loading")
        assert isinstance(bar._bar, tqdm)
        bar.step("counting")
        bar.step("writing")
        assert bar._bar.n == 2 and bar._bar.total == 3
    drawn = stream.getvalue().split("\r")
    assert drawn[1] == "layerprof audit [------------------------] 0/3 00:00, loading"
    assert drawn[2] == "layerprof audit [########----------------] 1/3 00:00, counting"
    assert drawn[3].startswith("layerprof audit [################--------] 2/3 00:00, writing")
    assert drawn[-2].strip() == "" and drawn[-1] == ""  # blanked, cursor back at the start
    assert bar._bar is None  # closed


@pytest.mark.parametrize(
    ("stream", "enabled"),
    [(io.StringIO(), True), (_Terminal(), False), (_Closed(), True)],
    ids=["not-a-terminal", "quiet", "isatty-raises"],
)
def test_silent_off_a_terminal_or_when_quiet(stream: io.StringIO, enabled: bool) -> None:
    with Progress(2, stream=stream, enabled=enabled) as bar:
        bar.step("one")
        bar.step("two")
        assert bar._bar is None  # tqdm never started
        assert bar.done == 1
    assert stream.getvalue() == ""


def test_steps_past_the_total_stop_at_it() -> None:
    with Progress(1, stream=_Terminal()) as bar:
        for label in ("a", "b", "c"):
            bar.step(label)
        assert bar.done == 1 and bar._bar is not None and bar._bar.n == 1
        assert "[########################] 1/1" in bar.line("c")
