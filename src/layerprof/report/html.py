"""A report as one self-contained, interactive HTML page, rendered from a Jinja template.

The page holds the budget results, the totals per target, the roofline drawn as SVG (one panel per
target, a tooltip per dot, a click finds the row), a "where the time goes" chart and the layer
table as a module tree that folds, sorts and filters. Its style and script are inlined from
``report/templates``: nothing is fetched (no CDN, font or image), so the file can be mailed,
attached to a CI run or opened offline. Without script the page still shows every row.

Every text from the report (layer names, class names) goes through Jinja's autoescaping; the
script reads it back from the DOM as text, never as markup.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import jinja2
from markupsafe import Markup

from layerprof.core.units import binary_bytes, milliseconds, si
from layerprof.errors import InvalidArgumentError
from layerprof.report.html_roofline import roofline_figure
from layerprof.report.html_rows import layer_table
from layerprof.report.html_time import time_chart
from layerprof.report.plot_layout import COLOURS
from layerprof.report.render import CONVENTION, check_options
from layerprof.report.shares import memory_bound_share
from layerprof.report.titles import input_shapes, report_title

if TYPE_CHECKING:
    from layerprof.report.facade import Report

__all__ = ["BudgetLike", "render_html", "write_html"]

_TEMPLATES = "templates"


class BudgetLike(Protocol):
    """What the page shows of a budget result (:class:`layerprof.analysis.budgets.BudgetResult` is one)."""

    @property
    def budget(self) -> str: ...
    @property
    def target(self) -> str | None: ...
    @property
    def passed(self) -> bool: ...
    def describe(self) -> str: ...


def render_html(
    report: Report,
    *,
    title: str | None = None,
    budgets: Sequence[BudgetLike] = (),
    depth: int | None = None,
    sort: str | None = None,
    top: int | None = None,
    plot: bool = True,
) -> str:
    """The page as a string. ``depth``, ``sort`` and ``top`` set how the layer table opens, as in
    ``report.table`` (a tree folded at ``depth``; a flat list sorted and cut with ``sort``/``top``);
    the reader can change all three on the page. ``plot=False`` leaves the roofline out."""
    check_options(depth, sort, top, "simple")
    table = layer_table(report, depth, sort, top)
    failed = sum(not b.passed for b in budgets)
    summary = "all budgets hold" if not failed else f"{failed} of {len(budgets)} budget checks failed"
    page = (
        _environment()
        .get_template("report.html.j2")
        .render(
            heading=title or report_title(report, shapes=False),
            inputs_line=_inputs_line(report),
            convention=CONVENTION,
            budgets=budgets,
            budget_summary=summary,
            budgets_failed=failed > 0,
            colours=COLOURS,
            totals=_totals(report),
            targets=_targets(report),
            timed=report.total.time_ms is not None,
            roofline=roofline_figure(report, table.leaf_ids) if plot else None,
            plot=plot,
            chart=time_chart(report, table.leaf_ids),
            table=table,
            unsupported=", ".join(f"{op} x{n}" for op, n in sorted(report.unsupported.items())),
            style=_asset("report.css"),
            script=_asset("report.js"),
        )
    )
    return page.rstrip("\n") + "\n"


def write_html(report: Report, path: str | Path, **options: object) -> Path:
    """Write :func:`render_html` to ``path`` (UTF-8) and return the path."""
    file = Path(path)
    if file.suffix.lower() not in (".html", ".htm"):
        raise InvalidArgumentError(f"HTML report path must end in .html, got {str(file)!r}")
    file.write_text(render_html(report, **options), encoding="utf-8")  # type: ignore[arg-type]
    return file


def _read(name: str) -> str:
    return resources.files("layerprof.report").joinpath(_TEMPLATES).joinpath(name).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.FunctionLoader(_read),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["px"] = lambda value: f"{float(value):.1f}"
    environment.filters["percent"] = lambda value, digits=1: f"{float(value):.{int(digits)}%}"
    return environment


@functools.lru_cache(maxsize=4)
def _asset(name: str) -> Markup:
    """A style sheet or script, inlined as it is: it must not close its own element early."""
    text = _read(name)
    if "</" in text or "<!--" in text:
        raise AssertionError(f"{name} holds '</' or '<!--', which would end its element in the page early")
    return Markup(text)


def _inputs_line(report: Report) -> str:
    shapes = input_shapes(report)
    dtypes: set[str] = set()
    if report.inputs is not None:
        specs = [*report.inputs.positional, *(spec for _, spec in report.inputs.keyword)]
        dtypes = {str(spec.dtype).removeprefix("torch.") for spec in specs if spec is not None}
    timed = "timed on this machine" if report.total.time_ms is not None else "counted, not timed"
    targets = ", ".join(t.name for t in report.targets) or "none"
    return (
        f"inputs {', '.join(shapes) or '-'} ({', '.join(sorted(dtypes)) or '-'}); {timed}; targets: {targets}"
    )


def _totals(report: Report) -> list[tuple[str, str]]:
    total = report.total
    cells = [
        ("FLOPs", si(total.flops)),
        ("matrix FLOPs", si(total.matrix_flops)),
        ("bytes moved", binary_bytes(total.bytes_total)),
        ("intensity (FLOP/B)", f"{total.intensity:.3g}"),
        ("params", si(total.params)),
    ]
    if total.time_ms is not None:
        cells.append(("measured ms", milliseconds(total.time_ms)))
    return cells


def _targets(report: Report) -> list[dict[str, str]]:
    """One line per target: predicted time, bound, memory-bound share, ridge, efficiency."""
    lines = []
    for device in report.targets:
        verdict = report.total.roofline.get(device.name)
        if verdict is None:
            continue
        eff = verdict.roofline_efficiency
        lines.append(
            {
                "name": device.name,
                "device": device.full_name,
                "predicted": milliseconds(verdict.roofline_time_ms),
                "bound": verdict.bound,
                "share": f"{memory_bound_share(report.layers, device.name):.1%}",
                "ridge": f"{verdict.ridge_point:.3g}",
                "efficiency": "-" if eff is None else f"{eff:.0%}",
            }
        )
    return lines
