"""A report as one self-contained HTML file: totals per target, budget results, the roofline plot
(a base64 PNG inside the page) and the per-layer table. No script, no external stylesheet, font or
image: the file can be mailed, attached to a CI run or opened offline.

The plot needs matplotlib (``layerprof[plot]``); without it the page says so instead of showing it.
"""

from __future__ import annotations

import base64
import html
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from layerprof.core.records import LayerRow
from layerprof.core.units import binary_bytes, milliseconds, si
from layerprof.errors import InvalidArgumentError
from layerprof.report.render import CONVENTION, check_options, count_cells, select_rows, shows_efficiency
from layerprof.report.shares import memory_bound_share
from layerprof.report.titles import input_shapes, report_title

if TYPE_CHECKING:
    from layerprof.report.facade import Report

__all__ = ["BudgetLike", "render_html", "write_html"]

logger = logging.getLogger(__name__)


class BudgetLike(Protocol):
    """What the page shows of a budget result (:class:`layerprof.analysis.budgets.BudgetResult` is one)."""

    @property
    def budget(self) -> str: ...
    @property
    def target(self) -> str | None: ...
    @property
    def passed(self) -> bool: ...
    def describe(self) -> str: ...


_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px;
       color: #1b1b1b; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
p.meta, p.note { color: #555; margin: 4px 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; white-space: normal; vertical-align: bottom; }
div.wide { overflow-x: auto; }
td.name, th.name, td.text { text-align: left; }
tr.total td { font-weight: 600; border-top: 2px solid #888; }
td.memory { color: #1f5fa8; } td.compute { color: #b3261e; }
td.pass { color: #1e7b34; font-weight: 600; } td.fail { color: #b3261e; font-weight: 600; }
img.roofline { max-width: 100%; border: 1px solid #ddd; }
"""


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
    """The page as a string. ``depth``, ``sort`` and ``top`` shape the layer table as in
    ``report.table``; ``plot=False`` leaves the roofline picture out."""
    check_options(depth, sort, top, "simple")
    heading = title or report_title(report, shapes=False)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(heading)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(heading)}</h1>",
        f'<p class="meta">{_e(_inputs_line(report))}</p>',
        f'<p class="note">{_e(CONVENTION)}</p>',
        _totals_section(report),
    ]
    if budgets:
        parts.append(_budgets_section(budgets))
    if plot:
        parts.append(_plot_section(report))
    parts.append(_layers_section(report, depth, sort, top))
    if report.unsupported:
        listed = ", ".join(f"{op} x{n}" for op, n in sorted(report.unsupported.items()))
        parts.append(f'<p class="note">No FLOP formula (bytes counted, FLOPs 0): {_e(listed)}</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html(report: Report, path: str | Path, **options: object) -> Path:
    """Write :func:`render_html` to ``path`` (UTF-8) and return the path."""
    file = Path(path)
    if file.suffix.lower() not in (".html", ".htm"):
        raise InvalidArgumentError(f"HTML report path must end in .html, got {str(file)!r}")
    file.write_text(render_html(report, **options), encoding="utf-8")  # type: ignore[arg-type]
    return file


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


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


def _totals_section(report: Report) -> str:
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
    head = "".join(f"<th>{_e(name)}</th>" for name, _ in cells)
    row = "".join(f"<td>{_e(value)}</td>" for _, value in cells)
    parts = ["<h2>Totals</h2>", f"<table><tr>{head}</tr><tr>{row}</tr></table>"]
    if report.targets:
        timed = total.time_ms is not None
        header = ["target", "device", "predicted ms", "bound", "memory-bound share", "ridge FLOP/B"]
        header += ["roofline efficiency"] if timed else []
        lines = [
            "<tr>"
            + "".join(f'<th class="{"name" if i < 2 else ""}">{_e(h)}</th>' for i, h in enumerate(header))
            + "</tr>"
        ]
        for device in report.targets:
            verdict = total.roofline.get(device.name)
            if verdict is None:
                continue
            cells_html = [
                f'<td class="name">{_e(device.name)}</td>',
                f'<td class="name">{_e(device.full_name)}</td>',
                f"<td>{_e(milliseconds(verdict.roofline_time_ms))}</td>",
                f'<td class="{_e(verdict.bound)}">{_e(verdict.bound)}</td>',
                f"<td>{memory_bound_share(report.layers, device.name):.1%}</td>",
                f"<td>{verdict.ridge_point:.3g}</td>",
            ]
            if timed:
                eff = verdict.roofline_efficiency
                cells_html.append(f"<td>{'-' if eff is None else f'{eff:.0%}'}</td>")
            lines.append("<tr>" + "".join(cells_html) + "</tr>")
        parts += [
            "<h2>Per target</h2>",
            "<table>" + "".join(lines) + "</table>",
            '<p class="note">Predicted time is the sum of the rows\' roofline times: a lower bound.</p>',
        ]
    return "\n".join(parts)


def _budgets_section(budgets: Sequence[BudgetLike]) -> str:
    failed = sum(not b.passed for b in budgets)
    summary = "all budgets hold" if not failed else f"{failed} of {len(budgets)} budget checks failed"
    rows = "".join(
        f'<tr><td class="text {"pass" if b.passed else "fail"}">{_e(b.describe())}</td></tr>' for b in budgets
    )
    return f"<h2>Budgets: {_e(summary)}</h2><table>{rows}</table>"


def _plot_section(report: Report) -> str:
    if not report.targets and not report.layers:
        return ""
    with tempfile.TemporaryDirectory(prefix="layerprof-html-") as folder:
        path = Path(folder) / "roofline.png"
        try:
            report.plot_roofline(path)
            data = path.read_bytes()
        except ImportError as error:
            return _no_plot(f"{error} (pip install 'layerprof[plot]')")
        except Exception as error:
            logger.warning("roofline plot failed, left out of the HTML report: %s", error, exc_info=True)
            return _no_plot(f"{type(error).__name__}: {error}")
    encoded = base64.b64encode(data).decode("ascii")
    return (
        "<h2>Roofline</h2>"
        f'<img class="roofline" alt="roofline plot of {_e(report.model_name)}" '
        f'src="data:image/png;base64,{encoded}">'
    )


def _no_plot(reason: str) -> str:
    return f'<h2>Roofline</h2><p class="note">No roofline plot: {_e(reason)}</p>'


def _layers_section(report: Report, depth: int | None, sort: str | None, top: int | None) -> str:
    rows = select_rows(report, depth, sort, top)
    timed = report.total.time_ms is not None or any(r.time_ms is not None for r in rows)
    with_phase = any(r.phase == "backward" for r in rows)
    headers = ["layer", "type", *(["phase"] if with_phase else []), "kernel", "output", "params", "FLOPs"]
    headers += ["bytes", "FLOP/B", *(["time ms", "IQR ms"] if timed else [])]
    for device in report.targets:
        headers += [
            f"bound@{device.name}",
            f"roof ms@{device.name}",
            *([f"eff@{device.name}"] if shows_efficiency(report, device.name, timed) else []),
        ]
    head = "".join(f'<th class="{"name" if i < 2 else ""}">{_e(h)}</th>' for i, h in enumerate(headers))
    body = [f"<tr>{head}</tr>"]
    for row in rows:
        body.append(f"<tr>{_row_cells(row, report, timed, with_phase)}</tr>")
    body.append(f'<tr class="total">{_row_cells(report.total, report, timed, with_phase)}</tr>')
    return '<h2>Layers</h2><div class="wide"><table>' + "\n".join(body) + "</table></div>"


def _row_cells(row: LayerRow, report: Report, timed: bool, with_phase: bool) -> str:
    cells = [f'<td class="name">{_e(row.name)}</td>', f'<td class="name">{_e(row.kind)}</td>']
    if with_phase:
        cells.append(f'<td class="text">{_e(row.phase)}</td>')
    values = count_cells(row)
    if timed:
        values += [milliseconds(row.time_ms), milliseconds(row.time_iqr_ms)]
    cells += [f"<td>{_e(v)}</td>" for v in values]
    for device in report.targets:
        verdict = row.roofline.get(device.name)
        with_efficiency = shows_efficiency(report, device.name, timed)
        if verdict is None:
            cells += ["<td></td>"] * (3 if with_efficiency else 2)
            continue
        cells.append(f'<td class="{_e(verdict.bound)}">{_e(verdict.bound)}</td>')
        cells.append(f"<td>{_e(milliseconds(verdict.roofline_time_ms))}</td>")
        if with_efficiency:
            eff = verdict.roofline_efficiency
            cells.append(f"<td>{'-' if eff is None else f'{eff:.0%}'}</td>")
    return "".join(cells)
