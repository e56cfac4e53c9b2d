"""From modules' times to rows' times: a leaf's row takes its module's time, glue rows share their
container's self time.

A leaf module's row gets its module's time, all its calls in one forward summed. The glue rows of a
container (``layer1.0/add``) share its self time: its time minus the time of the modules that ran
inside it. When a container has several glue rows, its self time is split in proportion to each
glue row's roofline time on the first target (to its bytes moved when there is no target), since the
ops between two child calls cannot be told apart by hooks. A row's time is the median over the timed
forwards, its spread the interquartile range (None after one forward: one sample has no spread).
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import replace

from layerprof.core import rownames
from layerprof.core.records import LayerRow
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec
from layerprof.roofline.verdicts import judge
from layerprof.timing.layers import Timings

__all__ = ["glue_shares", "median_iqr", "row_samples", "timed_rows"]

logger = logging.getLogger(__name__)


def median_iqr(samples: Sequence[float]) -> tuple[float, float]:
    """Median and interquartile range (75th - 25th percentile, linear interpolation)."""
    if not samples:
        raise InvalidArgumentError("no samples to take a median of")
    if len(samples) == 1:
        return float(samples[0]), 0.0
    q1, median, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return median, q3 - q1


def glue_shares(rows: Sequence[LayerRow], targets: Sequence[DeviceSpec]) -> list[float]:
    """Each glue row's share of its container's self time: its roofline time on the first target
    (its bytes moved without a target) over the group's; equal shares when all weigh nothing."""
    if len(rows) == 1:
        return [1.0]
    if targets:
        weights = [judge(row, targets[:1]).roofline_time_ms or 0.0 for row in rows]
    else:
        weights = [float(row.bytes_total) for row in rows]
    total = sum(weights)
    if total <= 0:
        return [1.0 / len(rows)] * len(rows)
    return [weight / total for weight in weights]


def row_samples(
    rows: Sequence[LayerRow], timings: Timings, targets: Sequence[DeviceSpec]
) -> dict[str, tuple[float, ...]]:
    """Row name -> its time in each forward (ms), for the forward rows whose module was timed."""
    samples: dict[str, tuple[float, ...]] = {}
    glue: dict[str, list[LayerRow]] = {}
    for row in rows:
        if row.phase != "forward":
            continue
        owner, is_glue = rownames.split(row.name)
        if is_glue:
            glue.setdefault(owner, []).append(row)
        elif (module := timings.modules.get(owner)) is not None:
            samples[row.name] = module.total_ms
    for owner, members in glue.items():
        container = timings.modules.get(owner)
        if container is None:
            continue
        for row, share in zip(members, glue_shares(members, targets), strict=True):
            samples[row.name] = tuple(share * t for t in container.self_ms)
    return samples


def timed_rows(rows: Sequence[LayerRow], timings: Timings, targets: Sequence[DeviceSpec]) -> list[LayerRow]:
    """``rows`` with ``time_ms`` (median over forwards) and ``time_iqr_ms`` (None from one forward);
    rows not timed keep None."""
    samples = row_samples(rows, timings, targets)
    result = []
    for row in rows:
        row_times = samples.get(row.name) if row.phase == "forward" else None
        if not row_times:
            result.append(row)
            continue
        median, iqr = median_iqr(row_times)
        result.append(replace(row, time_ms=median, time_iqr_ms=iqr if len(row_times) > 1 else None))
    missing = [r.name for r in rows if r.phase == "forward" and r.name not in samples]
    if missing:
        logger.info(
            "%d rows were not timed (their module did not run while timed): %s", len(missing), missing
        )
    return result
