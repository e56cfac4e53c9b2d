"""``layerprof cards``' output: its table as text, Markdown, CSV, HTML or JSON. A figure that is not
known (no price, no capacity) is ``-`` in a table and null in JSON, never 0."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable

from tabulate import tabulate

from layerprof.analysis.cards import CardRow, CardsResult
from layerprof.core.units import binary_bytes

__all__ = ["HEADERS", "render"]

_MISSING = "-"


def _money(value: float | None, digits: int = 2) -> str:
    """``$1,599``, ``$0.35``; below $1, three significant figures (``$0.00123``): never ``$0.00``."""
    if value is None:
        return _MISSING
    return f"${value:#.3g}" if 0 < value < 1 else f"${value:,.{digits}f}"


def _number(value: float | None) -> str:
    if value is None:
        return _MISSING
    return f"{value:,.0f}" if value >= 100 else f"{value:#.3g}"


def _fits(row: CardRow) -> str:
    if row.fits is None:
        return _MISSING
    return "yes" if row.fits else "NO"


def _bytes(value: int | None) -> str:
    return _MISSING if value is None else binary_bytes(value)


def _hourly(row: CardRow) -> str:
    if row.price_per_hour_usd is None:
        return _MISSING
    return _money(row.price_per_hour_usd) + ("" if row.hourly_price_from == "given" else " (typ.)")


_COLUMNS: tuple[tuple[str, Callable[[CardRow], str]], ...] = (
    ("device", lambda r: r.device + (" *" if r.best else "")),
    ("batch", lambda r: str(r.batch)),
    ("ms/step", lambda r: f"{r.time_ms:#.4g}"),
    ("images/s", lambda r: _number(r.images_per_s)),
    ("bound", lambda r: r.bound + (" (fp32 peak)" if r.dtype_fallback else "")),
    ("compute", lambda r: f"{r.shares.get('compute', 0.0):.0%}"),
    ("DRAM", lambda r: f"{r.shares.get('DRAM', 0.0):.0%}"),
    ("cache", lambda r: f"{r.shares.get('cache', 0.0):.0%}"),
    ("overhead", lambda r: f"{r.shares.get('overhead', 0.0):.0%}"),
    ("peak", lambda r: _bytes(r.peak_bytes)),
    ("memory", lambda r: _bytes(r.memory_bytes)),
    ("fits", _fits),
    ("max batch", lambda r: _MISSING if r.max_batch is None else str(r.max_batch)),
    ("list price", lambda r: _money(r.price_usd, 0)),
    ("img/s per $1k", lambda r: _number(r.images_per_s_per_kusd)),
    ("$/hour", _hourly),
    ("$ per 1M img", lambda r: _money(r.usd_per_million_images)),
)

HEADERS: tuple[str, ...] = tuple(name for name, _ in _COLUMNS)


def _cells(result: CardsResult, with_max_batch: bool) -> tuple[list[str], list[list[str]]]:
    columns = [(n, f) for n, f in _COLUMNS if with_max_batch or n != "max batch"]
    return [n for n, _ in columns], [[f(row) for _, f in columns] for row in result.rows]


def _footer(result: CardsResult) -> str:
    return (
        f"* best by {result.sort}. Times are roofline predictions (a lower bound: cache levels and the "
        "launch floor included), not benchmarks. List price: the table's launch/recommended price. "
        "$/hour (typ.): a typical on-demand cloud price from the table (provider, region and date in "
        "`layerprof devices --sources`); prices you give replace it."
    )


def render(result: CardsResult, fmt: str) -> str:
    with_max_batch = any(r.max_batch is not None for r in result.rows)
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2)
    headers, rows = _cells(result, with_max_batch)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return out.getvalue().rstrip("\n")
    if fmt == "html":
        head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        return (
            f'<table class="layerprof-cards"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>\n'
            f"<p>{html.escape(result.answer)}</p>\n<p><small>{html.escape(_footer(result))}</small></p>"
        )
    style = "github" if fmt == "markdown" else "simple"
    table = tabulate(rows, headers=headers, tablefmt=style, disable_numparse=True)
    step = "training" if result.training else "inference"
    title = f"{result.model_name or 'model'}: {result.dtype}, {step} step"
    return f"{title}\n\n{table}\n\n{result.answer}\n\n{_footer(result)}"
