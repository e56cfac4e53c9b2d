"""A one-line progress bar for long commands (tqdm), drawn on a terminal only.

The bar is silent when asked to be (``--quiet``) or when its stream is not a terminal
(``stream.isatty()`` false: CI logs, pipes, pytest's capture), so logs never fill with carriage
returns; tqdm is then never started. It writes only to the stream it is given; the library itself
never creates one. Leaving the ``with`` block clears the line.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["Progress"]

_WIDTH = 24
# "layerprof audit [########----------------] 1/3 00:02, counting FLOPs and bytes"
_FORMAT = "{desc} [{bar:" + str(_WIDTH) + "}] {n_fmt}/{total_fmt} {elapsed}{postfix}"
_CHARSET = "-#"  # tqdm's ascii bar: "-" still to do, "#" done


class Progress:
    """``with Progress(3, stream=sys.stderr) as bar: bar.step("loading"); ...; bar.step("timing")``.

    ``step(label)`` announces the next piece of work (the bar shows the pieces finished so far and the
    one under way); leaving the ``with`` block clears the line.
    """

    def __init__(
        self, total: int, *, stream: TextIO, enabled: bool = True, prefix: str = "layerprof"
    ) -> None:
        if total < 1:
            raise ValueError(f"a progress bar needs at least one step, got total={total}")
        self.total = total
        self.stream = stream
        self.prefix = prefix
        self.enabled = enabled and _is_terminal(stream)
        self.done = 0
        self._started = time.monotonic()
        self._current: str | None = None
        self._bar: tqdm[Any] | None = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def step(self, label: str) -> None:
        """Mark the previous piece of work finished and show ``label`` as the one now running."""
        if self._current is not None and self.done < self.total:
            self.done += 1
        self._current = label
        self._draw(label)

    def close(self) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.close()  # leave=False: tqdm blanks its line and returns the cursor to its start
        self._current = None

    def line(self, label: str) -> str:
        """The text of the bar (without the carriage return), for tests and for drawing."""
        elapsed = time.monotonic() - self._started
        return tqdm.format_meter(
            self.done,
            self.total,
            elapsed,
            prefix=self.prefix,
            ascii=_CHARSET,
            bar_format=_FORMAT,
            postfix=label,
        )

    def _draw(self, label: str) -> None:
        if not self.enabled:
            return
        bar = self._bar
        if bar is None:  # the first draw: tqdm starts with the label, at the steps done
            self._bar = tqdm(
                total=self.total,
                file=self.stream,
                desc=self.prefix,
                bar_format=_FORMAT,
                ascii=_CHARSET,
                leave=False,
                dynamic_ncols=True,  # cut to the terminal's width, read again at each draw
                mininterval=0,
                delay=0,
                initial=self.done,
                postfix=label,
            )
            return
        bar.n = self.done
        bar.set_postfix_str(label, refresh=False)
        bar.refresh()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or stream-like objects without isatty
        return False
