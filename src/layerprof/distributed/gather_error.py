"""The error of a sample that could not be gathered, and how its message states the time waited."""

from __future__ import annotations

from layerprof.errors import LayerprofError

__all__ = ["GatherError", "waited"]


class GatherError(LayerprofError, RuntimeError):
    """A sample could not be gathered: a rank did not send it in time (it died, hangs or stopped
    sampling), or this rank could not send its own.

    ``missing_ranks`` names the ranks whose sample did not come, when rank 0 could tell (else empty).
    """

    def __init__(self, message: str, missing_ranks: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.missing_ranks = missing_ranks


def waited(elapsed_s: float, timeout_s: float) -> str:
    """How long a wait really lasted, against its timeout: ``after 0.02 s, with 3.98 s of its 4 s
    timeout left`` (never the whole timeout for a wait that was cut short)."""
    left = max(0.0, timeout_s - elapsed_s)
    if left < 0.005:
        return f"after {elapsed_s:.2f} s, the whole of its {timeout_s:g} s timeout"
    return f"after {elapsed_s:.2f} s, with {left:.2f} s of its {timeout_s:g} s timeout left"
