"""``layerprof.compare_devices``: which card for this model? Every device side by side.

The model is counted once (``analyze`` on the meta device with every target at once: the cache model
gives each target its own verdicts from the one trace) and each device gets a row: the predicted time
of one step (the totals' roofline time there, cache levels and launch floor included), images per
second, what bounds it and how its time divides (:func:`layerprof.report.shares.time_shares`),
whether the step's peak memory fits at this batch, and the price/performance: images/s per 1,000 USD
of list price (``DeviceSpec.price_usd``) and USD per million images from an hourly price (the
``price_per_hour`` given, else the table's typical ``price_per_hour_usd``). A missing price is None,
never 0. With ``max_batch=True`` each device runs at the largest batch that fits it
(:func:`layerprof.analysis.max_batch.max_batches`), counted once per distinct batch.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from layerprof.analysis.card_prices import hourly_prices
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.specs import DeviceSpec, PeakFallbackWarning, lookup_key, normalize_dtype
from layerprof.hardware.table import list_devices
from layerprof.hardware.targets import TargetArg, resolve_targets

if TYPE_CHECKING:
    from torch import nn

    from layerprof.report.facade import Report

__all__ = ["SORTS", "CardRow", "CardsResult", "compare_devices"]

#: What ``sort=`` ranks by: step time (lowest first), throughput (highest), cost per million images
#: (lowest) or value, images/s per 1,000 USD of list price (highest).
SORTS: tuple[str, ...] = ("time", "throughput", "cost", "value")


@dataclass(frozen=True, slots=True)
class CardRow:
    """One device's figures for the model (None where a figure is unknown: no price, no capacity)."""

    device: str
    full_name: str
    kind: str
    batch: int
    time_ms: float
    images_per_s: float
    bound: str
    #: Share (0..1) of the time bound by ``compute``, ``DRAM``, ``cache`` and ``overhead``.
    shares: Mapping[str, float]
    peak_bytes: int | None
    memory_bytes: int | None
    fits: bool | None
    #: The largest batch that fits (``max_batch=True`` only; 0 when not even 1 fits), else None.
    max_batch: int | None
    price_usd: float | None
    images_per_s_per_kusd: float | None
    price_per_hour_usd: float | None
    #: ``"given"`` (``price_per_hour=``), ``"table"`` (typical, the table's) or None.
    hourly_price_from: str | None
    usd_per_million_images: float | None
    #: The device has no peak for the dtype: its float32 peak priced the work.
    dtype_fallback: bool = False
    best: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        out["shares"] = dict(self.shares)
        return out


@dataclass(frozen=True, slots=True)
class CardsResult:
    """:func:`compare_devices`' answer: rows sorted by ``sort``, the best device and a paragraph."""

    model_name: str
    dtype: str
    training: bool
    optimizer: str | None
    sort: str
    rows: tuple[CardRow, ...]
    best: str | None
    answer: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def row(self, device: str) -> CardRow:
        for row in self.rows:
            if row.device == device:
                return row
        raise KeyError(f"no row for {device!r}; rows: {', '.join(r.device for r in self.rows)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "dtype": self.dtype,
            "training": self.training,
            "optimizer": self.optimizer,
            "sort": self.sort,
            "best": self.best,
            "rows": [row.to_dict() for row in self.rows],
            "answer": self.answer,
            "notes": list(self.notes),
        }


def compare_devices(
    report_or_model: Report | nn.Module,
    targets: TargetArg = None,
    *,
    input_size: Any = None,
    dtype: Any = None,
    batch: int | None = None,
    max_batch: bool = False,
    backward: bool = False,
    optimizer: object = None,
    price_per_hour: Mapping[str, object] | None = None,
    sort: str = "time",
) -> CardsResult:
    """Every device of the table (or ``targets``) side by side for this model.

    ``report_or_model`` is a model (counted here with ``input_size``, batch first, default
    ``(1, 3, 224, 224)``; ``batch`` replaces its first dimension; ``dtype``, ``backward`` and
    ``optimizer`` as in :func:`layerprof.analyze`), or a report from ``analyze``/``profile`` (its own
    targets, batch, dtype and step; ``targets`` then picks among them). ``max_batch=True`` runs each
    device at the largest batch whose peak fits it (a model only). ``price_per_hour`` maps device
    name -> USD per hour and replaces the table's typical hourly prices. ``sort`` is one of
    :data:`SORTS`; the first row with that figure is the best (``best=True``)."""
    if sort not in SORTS:
        raise InvalidArgumentError(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
    from layerprof.report.facade import Report

    if isinstance(report_or_model, Report):
        if max_batch or input_size is not None or batch is not None or backward or optimizer is not None:
            raise InvalidArgumentError(
                "compare_devices(report, ...) judges the report as it is; pass the model to set "
                "input_size, batch, max_batch, backward or optimizer"
            )
        report = report_or_model
        devices = _pick(report.targets, targets)
        reports = {spec.name: report for spec in devices}
        batches = {spec.name: _report_batch(report) for spec in devices}
        found: dict[str, int] = {}
        fallback = frozenset[str]()
    else:
        devices = resolve_targets(targets) if targets is not None else list_devices()
        reports, batches, found, fallback = _count(
            report_or_model, devices, input_size, dtype, batch, max_batch, backward, optimizer
        )
        report = next(iter(reports.values()))
    prices = hourly_prices(price_per_hour, devices)
    key = _dtype_key(report)
    rows = [
        _row(spec, reports[spec.name], batches[spec.name], found.get(spec.name), prices, key, fallback)
        for spec in devices
    ]
    ranked = _ranked(rows, sort)
    best = next((r.device for r in ranked if _sort_value(r, sort) is not None), None)
    ranked = [replace(r, best=r.device == best) for r in ranked]
    result = CardsResult(
        model_name=report.model_name,
        dtype=key,
        training=any(r.phase == "backward" for r in report.layers),
        optimizer=_optimizer_name(optimizer),
        sort=sort,
        rows=tuple(ranked),
        best=best,
    )
    from layerprof.analysis.card_answer import answer

    return replace(result, answer=answer(result, max_batch=max_batch))


def _pick(available: Sequence[DeviceSpec], targets: TargetArg) -> tuple[DeviceSpec, ...]:
    if not available:
        raise InvalidArgumentError("the report has no targets; analyze with target=[...] to compare devices")
    if targets is None:
        return tuple(available)
    by_name = {spec.name: spec for spec in available}
    labels = {lookup_key(label): spec for spec in available for label in (spec.name, *spec.aliases)}
    items = [targets] if isinstance(targets, (str, DeviceSpec)) else list(targets)
    picked = []
    for item in items:
        name = item.name if isinstance(item, DeviceSpec) else str(item)
        spec = labels.get(lookup_key(name))
        if spec is None:
            raise InvalidArgumentError(
                f"target {name!r} is not among the report's targets: {', '.join(by_name)}"
            )
        picked.append(spec)
    return tuple(picked)


def _report_batch(report: Report) -> int:
    if report.inputs is not None:
        for spec in report.inputs.positional:
            if spec is not None and len(spec.shape) > 0:
                return int(spec.shape[0])
    return 1


def _count(
    model: nn.Module,
    devices: Sequence[DeviceSpec],
    input_size: Any,
    dtype: Any,
    batch: int | None,
    max_batch: bool,
    backward: bool,
    optimizer: object,
) -> tuple[dict[str, Report], dict[str, int], dict[str, int], frozenset[str]]:
    """The reports (device -> the report it is judged from), batches, max batches and the devices
    whose dtype peak fell back to float32."""
    from layerprof.analysis.max_batch import _batched, max_batches
    from layerprof.api.analyzing import analyze

    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise InvalidArgumentError(f"batch must be a positive int, got {batch!r}")
    if max_batch and batch is not None:
        raise InvalidArgumentError("give batch or max_batch=True, not both")
    size = input_size if input_size is not None else (1, 3, 224, 224)
    with_batch = _batched(size)
    start_batch = batch if batch is not None else _first_batch(size)
    backward = backward or optimizer is not None
    fallback: set[str] = set()

    def run(at: int, specs: Sequence[DeviceSpec]) -> Report:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PeakFallbackWarning)
            report = analyze(
                model, input_size=with_batch(at), dtype=dtype, target=list(specs), backward=backward,
                optimizer=optimizer,
            )  # fmt: skip
        for warning in caught:
            if issubclass(warning.category, PeakFallbackWarning):
                fallback.update(s.name for s in specs if str(warning.message).startswith(f"{s.name} "))
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return report

    found: dict[str, int] = {}
    if max_batch:
        sized = [s for s in devices if s.memory_bytes is not None]
        if sized:
            found = max_batches(model, size, sized, backward=backward, optimizer=optimizer, dtype=dtype)
    batches = {s.name: (found.get(s.name) or start_batch) for s in devices}
    groups: dict[int, list[DeviceSpec]] = {}
    for spec in devices:
        groups.setdefault(batches[spec.name], []).append(spec)
    reports: dict[str, Report] = {}
    for at, specs in groups.items():
        report = run(at, specs)
        reports.update({spec.name: report for spec in specs})
    return reports, batches, found, frozenset(fallback)


def _first_batch(size: Any) -> int:
    first = (
        size[0] if isinstance(size, (list, tuple)) and size and isinstance(size[0], (list, tuple)) else size
    )
    try:
        return int(first[0])
    except (TypeError, IndexError, ValueError):
        raise InvalidArgumentError(
            f"input_size must be batch first, such as (1, 3, 224, 224); got {size!r:.80}"
        ) from None


def _dtype_key(report: Report) -> str:
    from layerprof.roofline.verdicts import dominant_dtype

    return normalize_dtype(dominant_dtype(report.layers))


def _optimizer_name(optimizer: object) -> str | None:
    if optimizer is None or isinstance(optimizer, str):
        return optimizer
    return type(optimizer).__name__


def _row(
    spec: DeviceSpec,
    report: Report,
    batch: int,
    max_batch: int | None,
    prices: Mapping[str, float],
    dtype_key: str,
    fallback: frozenset[str],
) -> CardRow:
    from layerprof.report.shares import time_shares

    verdict = report.total.roofline[spec.name]
    time_ms = verdict.roofline_time_ms
    per_s = batch / (time_ms / 1e3) if time_ms > 0 else math.inf
    memory = report.memory_by_target.get(spec.name)
    fits = None if memory is None or memory.capacity_bytes is None else memory.fits()
    hourly, source = (
        (prices[spec.name], "given") if spec.name in prices else (spec.price_per_hour_usd, "table")
    )
    per_k = None if spec.price_usd is None else per_s / (spec.price_usd / 1e3)
    per_million = None if hourly is None or not math.isfinite(per_s) else hourly * 1e6 / (per_s * 3600.0)
    return CardRow(
        device=spec.name,
        full_name=spec.full_name,
        kind=spec.kind,
        batch=batch,
        time_ms=time_ms,
        images_per_s=per_s,
        bound=verdict.bound,
        shares=MappingProxyType(time_shares(report.layers, spec.name)),
        peak_bytes=None if memory is None else memory.peak_bytes,
        memory_bytes=spec.memory_bytes,
        fits=fits,
        max_batch=max_batch,
        price_usd=spec.price_usd,
        images_per_s_per_kusd=per_k,
        price_per_hour_usd=hourly,
        hourly_price_from=None if hourly is None else source,
        usd_per_million_images=per_million,
        dtype_fallback=spec.name in fallback or dtype_key not in spec.matrix_peak_flops_per_s,
    )


def _sort_value(row: CardRow, sort: str) -> float | None:
    if sort == "time":
        return row.time_ms
    if sort == "throughput":
        return -row.images_per_s
    if sort == "cost":
        return row.usd_per_million_images
    return None if row.images_per_s_per_kusd is None else -row.images_per_s_per_kusd


def _ranked(rows: Sequence[CardRow], sort: str) -> list[CardRow]:
    """Rows by the sort figure (rows without it last, in table order), then by time."""

    def key(row: CardRow) -> tuple[bool, float, float]:
        value = _sort_value(row, sort)
        return (value is None, value if value is not None else 0.0, row.time_ms)

    return sorted(rows, key=key)
