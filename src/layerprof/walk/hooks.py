"""Taking hooks off: every handle removed, and the list emptied, even when one removal raises."""

from __future__ import annotations

from torch.utils.hooks import RemovableHandle


def remove_all(handles: list[RemovableHandle]) -> None:
    """Remove every handle in ``handles`` and empty the list (in a ``finally``: never half done)."""
    try:
        for handle in handles:
            handle.remove()
    finally:
        handles.clear()
