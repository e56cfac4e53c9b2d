"""Rolling rows up into their parent modules (``depth=``) and folding the tail of a ``top=`` cut.

Both keep the sums: the rolled rows add up to the same totals as the rows they replace. A row that
stands for several claims nothing that only one of them has: no kernel size, no IQR (a sum of
medians has none); a rolled-up container keeps its first row's input and its last row's output
shapes, a fold row (whose rows need not even be neighbours) no shapes at all.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from layerprof.core import rownames
from layerprof.core.records import LayerRow
from layerprof.hardware.specs import DeviceSpec
from layerprof.roofline.verdicts import judge


def merge(
    name: str,
    kind: str,
    rows: Sequence[LayerRow],
    targets: Sequence[DeviceSpec],
    timed_on: Collection[str] = (),
    *,
    shapes: bool = True,
) -> LayerRow:
    """One row standing for ``rows``: sums of counts and times, intensity and verdicts recomputed;
    ``calls`` is the most calls of any of them (the table leaves it out), shapes only with ``shapes``."""
    flops = sum(r.flops for r in rows)
    read = sum(r.bytes_read for r in rows)
    written = sum(r.bytes_written for r in rows)
    times = [r.time_ms for r in rows]
    time_ms = None if any(t is None for t in times) else sum(t for t in times if t is not None)
    dtypes = {r.dtype for r in rows if r.dtype is not None}
    merged = LayerRow(
        name=name,
        kind=kind,
        phase=rows[0].phase,
        depth=rownames.depth(name),
        calls=max(r.calls for r in rows),
        kernel_size=None,
        input_shapes=rows[0].input_shapes if shapes else (),
        output_shapes=rows[-1].output_shapes if shapes else (),
        shapes_vary=shapes and rows[-1].shapes_vary,
        dtype=next(iter(dtypes)) if len(dtypes) == 1 else rows[0].dtype,
        params=sum(r.params for r in rows),
        flops=flops,
        matrix_flops=sum(r.matrix_flops for r in rows),
        bytes_read=read,
        bytes_written=written,
        activation_bytes=sum(r.activation_bytes for r in rows),
        time_ms=time_ms,
        time_iqr_ms=None,
    )
    return judge(merged, targets, rows=rows, timed_on=timed_on)


def roll_up(
    rows: Sequence[LayerRow],
    depth: int,
    targets: Sequence[DeviceSpec],
    kinds: Mapping[str, str],
    timed_on: Collection[str] = (),
) -> list[LayerRow]:
    """Rows deeper than ``depth`` merged into their ancestor at ``depth``, in first-seen order."""
    groups: dict[tuple[str, str], list[LayerRow]] = {}
    for row in rows:
        groups.setdefault((row.phase, rownames.ancestor(row.name, depth)), []).append(row)
    result = []
    for (_, name), members in groups.items():
        if len(members) == 1 and members[0].name == name:
            result.append(members[0])
        else:
            kind = kinds.get(name, f"{len(members)} rows")
            result.append(merge(name, kind, members, targets, timed_on))
    return result


def fold_tail(
    rows: Sequence[LayerRow], top: int, targets: Sequence[DeviceSpec], timed_on: Collection[str] = ()
) -> list[LayerRow]:
    """The first ``top`` rows and one ``(N more rows)`` row that sums the rest."""
    head, tail = list(rows[:top]), list(rows[top:])
    if tail:
        head.append(merge(rownames.fold(len(tail)), "", tail, targets, timed_on, shapes=False))
    return head
