"""A one-line progress bar for long commands, drawn on a terminal only.

The bar is silent when asked to be (``--quiet``) or when its stream is not a terminal
(``stream.isatty()`` false: CI logs, pipes, pytest's capture), so logs never fill with carriage
returns. It writes only to the stream it is given; the library itself never creates one.
"""

from __future__ import annotations

import time
from types import TracebackType
from typing import TextIO

__all__ = ["Progress"]

_WIDTH = 24


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
        if self.enabled and self._current is not None:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
        self._current = None

    def line(self, label: str) -> str:
        """The text of the bar (without the carriage return), for tests and for drawing."""
        filled = round(_WIDTH * self.done / self.total)
        bar = "#" * filled + "-" * (_WIDTH - filled)
        elapsed = time.monotonic() - self._started
        return f"{self.prefix} [{bar}] {self.done}/{self.total} {elapsed:5.1f}s {label}"

    def _draw(self, label: str) -> None:
        if not self.enabled:
            return
        self.stream.write("\r\x1b[2K" + self.line(label)[:200])
        self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or stream-like objects without isatty
        return False
