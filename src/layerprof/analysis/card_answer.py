"""The plain-words paragraph under ``layerprof cards``' table, built from a :class:`CardsResult`'s
figures only: which device it starts from (the cheapest by hourly price, else by list price, else
the slowest), what bounds the model there, how much faster the fastest device is and for how much
more money, the cheapest per million images, the best value per list price, what does not fit."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from layerprof.analysis.cards import CardRow, CardsResult

__all__ = ["answer", "baseline", "bound_words"]

_SHARE_WORDS = {
    "compute": "compute",
    "DRAM": "DRAM traffic",
    "cache": "cache traffic",
    "overhead": "launch overhead",
}


def bound_words(bound: str) -> str:
    """``"memory(DRAM)"`` -> ``"memory(DRAM)-bound"``, ``"overhead"`` -> ``"launch-overhead-bound"``."""
    return "launch-overhead-bound" if bound == "overhead" else f"{bound}-bound"


def baseline(rows: tuple[CardRow, ...]) -> CardRow:
    """The device the paragraph starts from: the cheapest per hour, else by list price, else the slowest."""
    hourly = [r for r in rows if r.price_per_hour_usd is not None]
    if hourly:
        return min(hourly, key=lambda r: (r.price_per_hour_usd or 0.0, r.time_ms))
    listed = [r for r in rows if r.price_usd is not None]
    if listed:
        return min(listed, key=lambda r: (r.price_usd or 0.0, r.time_ms))
    return max(rows, key=lambda r: r.time_ms)


def _num(value: float) -> str:
    """3 significant figures, thousands separated: 0.0123, 1.23, 123, 1,230."""
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:#.3g}"


def answer(result: CardsResult, *, max_batch: bool = False) -> str:
    rows = result.rows
    if not rows:
        return ""
    base = baseline(rows)
    step = "training step" if result.training else "inference step"
    main = max(base.shares, key=lambda k: base.shares[k]) if base.shares else None
    share = (
        f", {base.shares[main]:.0%} of its time in {_SHARE_WORDS.get(main, main)}"
        if main is not None and base.shares[main] > 0
        else ""
    )
    at = "its largest batch that fits, " if max_batch and base.max_batch else ""
    parts = [
        f"On a {base.device} this model ({result.dtype}, {step}) is {bound_words(base.bound)} at {at}batch "
        f"{base.batch}: {_num(base.time_ms)} ms per step, {_num(base.images_per_s)} images/s{share}."
    ]
    fastest = max(rows, key=lambda r: (r.images_per_s, -r.time_ms))
    if fastest.device != base.device:
        speedup = fastest.images_per_s / base.images_per_s
        money = ""
        if fastest.price_per_hour_usd is not None and base.price_per_hour_usd is not None:
            money = f" for {fastest.price_per_hour_usd / base.price_per_hour_usd:.1f}x the hourly price"
        elif fastest.price_usd is not None and base.price_usd is not None:
            money = f" for {fastest.price_usd / base.price_usd:.1f}x the list price"
        parts.append(
            f"The fastest, {fastest.device} ({bound_words(fastest.bound)}), gives {speedup:.1f}x the "
            f"images/s{money}."
        )
    else:
        parts.append(f"It is also the fastest of the {len(rows)} devices compared.")
    costed = [r for r in rows if r.usd_per_million_images is not None]
    if costed:
        cheap = min(costed, key=lambda r: r.usd_per_million_images or 0.0)
        kind = "given" if cheap.hourly_price_from == "given" else "typical"
        parts.append(
            f"The cheapest per million images is {cheap.device}: "
            f"${_num(cheap.usd_per_million_images or 0.0)} "
            f"at {kind} ${_num(cheap.price_per_hour_usd or 0.0)}/h."
        )
    else:
        parts.append("No device compared has an hourly price, so there is no cost per million images.")
    valued = [r for r in rows if r.images_per_s_per_kusd is not None]
    if valued:
        value = max(valued, key=lambda r: r.images_per_s_per_kusd or 0.0)
        parts.append(
            f"Per $1,000 of list price, {value.device} gives the most: "
            f"{_num(value.images_per_s_per_kusd or 0.0)} images/s."
        )
    too_small = [r.device for r in rows if r.fits is False]
    if too_small:
        shown = ", ".join(too_small[:4]) + (", ..." if len(too_small) > 4 else "")
        parts.append(f"{len(too_small)} of {len(rows)} cannot hold this step in memory ({shown}).")
    if result.best is not None:
        parts.append(f"Best by {result.sort}: {result.best}.")
    return " ".join(parts)
