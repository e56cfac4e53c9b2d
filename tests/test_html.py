"""layerprof.report.html: one self-contained interactive page (no external resource), checked as markup,
then driven in headless Chromium: no console error, sorting, folding, search, a dot's click, a screenshot.

The browser tests need /usr/bin/chromium (``.ci/run`` installs it and sets LAYERPROF_REQUIRE_CHROMIUM,
which turns their skip into a failure)."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import layerprof
from layerprof.analysis.budgets import check
from layerprof.errors import InvalidArgumentError
from layerprof.report import html as html_module
from layerprof.report.facade import Report
from layerprof.report.html import render_html, write_html
from layerprof.report.html_rows import layer_table
from layerprof.report.render import select_rows

EVIL_NAME = "<img src=x onerror=alert(1)>"  # a module name: anything without "." or "/"
EVIL_KIND = "</script><script>alert(2)</script>"  # a class name


class Odd(nn.Module):
    """A model whose class name needs escaping in HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.relu(self.conv(x))


Odd.__name__ = "Odd<&>"


class Evil(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.add_module(EVIL_NAME, nn.Conv2d(3, 4, 3))

    def forward(self, x):  # type: ignore[no-untyped-def]
        return getattr(self, EVIL_NAME)(x)


Evil.__name__ = EVIL_KIND


class Nested(nn.Module):
    """Two levels of containers, a glue op in one, and the evil block."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 3, 3, padding=1)
        self.block = nn.Sequential(nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU()), nn.BatchNorm2d(3))
        self.evil = Evil()

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.evil(self.block(self.stem(x)) + x)


@pytest.fixture(scope="module")
def report() -> Report:
    return layerprof.analyze(Odd(), input_size=(1, 3, 16, 16), target=["t4", "jetson-orin-nano-8gb"])


@pytest.fixture(scope="module")
def nested() -> Report:
    return layerprof.analyze(Nested(), input_size=(1, 3, 16, 16), target=["t4", "jetson-orin-nano-8gb"])


def test_page_is_self_contained(nested: Report) -> None:
    page = render_html(nested, budgets=check(nested, max_gflops=1e-4))
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # nothing is fetched: no address at all, no src/href, no stylesheet link, import, url() or font
    assert "http://" not in page and "https://" not in page
    escaped_name = EVIL_NAME.replace("<", "&lt;").replace(">", "&gt;")
    assert re.findall(r"\b(?:src|href)\s*=", page.replace(escaped_name, "")) == []
    assert not re.search(r"<link\b|@import|url\(|@font-face|<iframe|<img\b|<object\b", page)
    # one script and one style sheet, both inline
    assert re.findall(r"<script\b[^>]*>", page) == ["<script>"]
    assert re.findall(r"<style\b[^>]*>", page) == ["<style>"]


def test_names_with_markup_are_escaped(nested: Report) -> None:
    page = render_html(nested)
    assert EVIL_NAME not in page and EVIL_KIND not in page and "alert(2)</script>" not in page
    assert '<td class="name">evil.&lt;img src=x onerror=alert(1)&gt;</td>' in page
    assert "&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in page
    # the tooltips (SVG <title>, HTML title attributes) are escaped the same way
    assert "<title>evil.&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'title="evil.&lt;img src=x onerror=alert(1)&gt;' in page
    page = render_html(layerprof.analyze(Odd(), input_size=(1, 3, 8, 8)), title="a <b> & c")
    assert (
        "<title>a &lt;b&gt; &amp; c</title>" in page and "Odd&lt;&amp;&gt;" in page and "Odd<&>" not in page
    )


def test_assets_cannot_close_their_element(monkeypatch: pytest.MonkeyPatch) -> None:
    html_module._asset.cache_clear()
    monkeypatch.setattr(html_module, "_read", lambda name: "var s = '</script>';")
    with pytest.raises(AssertionError, match="would end its element"):
        html_module._asset("report.js")
    html_module._asset.cache_clear()


def test_page_holds_totals_targets_and_rows(report: Report) -> None:
    page = render_html(report)
    for name in ("conv", "relu"):
        assert f'<td class="name">{name}</td>' in page
    assert '<tr class="total">' in page
    assert "NVIDIA T4" in page and "Jetson Orin Nano" in page
    # conv: 2 * 8 * 16 * 16 * 3 * 9 = 110592 FLOPs, relu 8 * 16 * 16 = 2048: 112640 in all -> "113K"
    assert "<td>113K</td>" in page
    predicted = report.total.roofline["t4"].roofline_time_ms
    assert f"<td>{predicted:.3f}</td>" in page
    # sortable cells carry their exact value
    assert '<td data-v="110592.0">111K</td>' in page


def test_budget_results_come_first(report: Report) -> None:
    results = check(report, max_gflops=1e-4, max_params=1e6)
    page = render_html(report, budgets=results)
    assert "Budgets: 1 of 2 budget checks failed" in page
    assert 'class="text fail">FAIL max_gflops' in page
    assert 'class="text pass">ok   max_params' in page
    assert page.index('id="budgets"') < page.index('id="totals"') < page.index('id="roofline"')
    assert 'class="card budgets failed"' in page
    assert 'class="card budgets held"' in render_html(report, budgets=check(report, max_params=1e6))
    assert "Budgets" not in render_html(report)


def _tree(page: str) -> list[tuple[str, str, str, str]]:
    """(id, parent, class, name) of each table line."""
    lines = re.findall(
        r'<tr id="(r\d+)" data-id="\1" data-parent="(r?\d*)" data-depth="\d+" data-macs="\d+" '
        r'class="(container|leaf)"[^>]*><td class="name">(?:<button[^>]*>[^<]*</button>)?([^<]*)</td>',
        page,
    )
    return [(i, p, c, n) for i, p, c, n in lines]


def test_table_is_a_module_tree(nested: Report) -> None:
    page = render_html(nested)
    lines = _tree(page)
    names = [(name, kind) for _, _, kind, name in lines]
    assert names[:6] == [
        ("stem", "leaf"),
        ("block", "container"),
        ("block.0", "container"),
        ("block.0.0", "leaf"),
        ("block.0.1", "leaf"),
        ("block.1", "leaf"),
    ]
    ids = {name: line_id for line_id, _, _, name in lines}
    parents = {name: parent for _, parent, _, name in lines}
    assert (
        parents["block.0.0"] == ids["block.0"]
        and parents["block.0"] == ids["block"]
        and parents["block"] == ""
    )
    assert parents["(root)/add"] == ""  # the root's own ops sit at the top
    assert parents["evil.&lt;img src=x onerror=alert(1)&gt;"] == ids["evil"]
    # every report row is one leaf; containers sum what is inside them
    table = layer_table(nested, None, None, None)
    leaves = [row for row in table.rows if not row.container]
    assert [row.name for row in leaves] == [row.name for row in nested.layers]
    column = [c.key for c in table.columns].index("flops") - 1  # the name is not among the cells
    flops = {row.id: float(row.cells[column].value or 0) for row in table.rows}
    for row in table.rows:
        if row.container:
            inside = [
                r for r in leaves if r.name.startswith(row.name + ".") or r.name.startswith(row.name + "/")
            ]
            assert flops[row.id] == sum(flops[r.id] for r in inside)
    assert sum(flops[r.id] for r in leaves) == nested.total.flops


def test_table_opens_as_the_options_say(nested: Report) -> None:
    page = render_html(nested)
    assert '<table id="layers" data-view="tree" data-depth="" data-sort="" data-top="">' in page
    page = render_html(nested, depth=1)
    assert '<table id="layers" data-view="tree" data-depth="1" data-sort="" data-top="">' in page
    page = render_html(nested, sort="flops", top=2, depth=2)
    assert '<table id="layers" data-view="flat" data-depth="2" data-sort="flops" data-top="2">' in page
    # the cut's last row, as the text table shows it, waits for the script to show it
    text = nested.table(depth=2, sort="flops", top=2)
    fold = re.search(r"\((\d+) more rows\)", text)
    assert fold is not None
    assert f'<tr id="fold" class="fold" data-fold="" hidden><td class="name">{fold.group(0)}</td>' in page
    assert 'data-sort="roof@t4"' in render_html(nested, sort="roofline_time")
    assert 'data-sort="macs"' in render_html(nested, sort="macs")
    with pytest.raises(InvalidArgumentError):
        render_html(nested, sort="colour")


def test_write(report: Report, tmp_path: Path) -> None:
    path = write_html(report, tmp_path / "r.html", plot=False)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(InvalidArgumentError, match=r"must end in \.html"):
        write_html(report, tmp_path / "r.txt")


def test_roofline_is_svg_one_panel_per_target_one_dot_per_row(nested: Report) -> None:
    page = render_html(nested)
    panels = re.findall(r'<figure class="panel" data-target="([^"]*)">(.*?)</figure>', page, re.S)
    assert [target for target, _ in panels] == ["t4", "jetson-orin-nano-8gb"]
    ids = {line_id for line_id, _, _, _ in _tree(page)}
    drawn = [r for r in nested.layers if r.flops > 0 and r.bytes_total > 0]
    for target, svg in panels:
        assert svg.count('class="roof"') == 1  # the slope and the matrix roof
        assert "ridge " in svg and "B/s" in svg
        dots = re.findall(r'<circle class="dot[^"]*"[^>]*data-row="(r\d+)"><title>([^<]*)</title>', svg)
        assert len(dots) == len(drawn)
        assert {row for row, _ in dots} <= ids
        for _, tip in dots:
            for word in ("FLOPs", "bytes", "intensity", "FLOP/B", "predicted", " ms on " + target, "-bound"):
                assert word in tip
    assert "plot_roofline" not in page and 'id="roofline"' not in render_html(nested, plot=False)


def test_roofline_needs_no_matplotlib(nested: Report, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # importing it now fails
    page = render_html(nested)
    assert page.count('<figure class="panel"') == 2 and "data:image/png" not in page


def test_where_the_time_goes(nested: Report) -> None:
    page = render_html(nested)
    section = page[page.index('<section id="time"') : page.index('<section id="layers-section"')]
    assert "Predicted time on NVIDIA T4 (t4)" in section
    segments = re.findall(
        r'<span class="seg" style="width: ([\d.]+)%; --c: (#\w+)" data-row="(r\d+)"', section
    )
    assert len(segments) == sum(1 for r in nested.layers if r.roofline["t4"].roofline_time_ms > 0)
    assert sum(float(width) for width, _, _ in segments) == pytest.approx(100, abs=0.01)
    # compute red, memory (any level) blue; orange only for rows the launch floor binds
    overhead = any(r.roofline["t4"].bound == "overhead" for r in nested.layers)
    assert {colour for _, colour, _ in segments} <= {"#d62728", "#1f77b4", *(["#ff7f0e"] if overhead else [])}
    ranked = re.findall(r'<li data-row="(r\d+)" title="([^"]*)"><span class="label">', section)
    assert 0 < len(ranked) <= 15 and all("of the predicted time" in tip for _, tip in ranked)
    assert any(f"{bound}-bound rows" in section for bound in ("memory", "compute", "overhead"))


def test_counted_without_target_has_no_roofline_nor_chart() -> None:
    page = render_html(layerprof.analyze(Odd(), input_size=(1, 3, 8, 8)))
    assert "No roofline: the report has no target" in page and 'id="time"' not in page
    assert '<figure class="panel"' not in page


def test_timed_report_shows_times() -> None:
    local = replace(layerprof.get_device("gtx1080"), name="this-cpu", aliases=(), measured=True)
    timed = layerprof.profile(
        nn.Sequential(nn.Conv2d(3, 4, 3)), torch.randn(1, 3, 16, 16), target=[local, "t4"], warmup=1, repeat=3
    )
    page = render_html(timed)
    assert "timed on this machine" in page and "measured ms" in page
    # efficiency only against the device the times were taken on, as in the text table
    assert "eff@this-cpu" in page and "eff@t4" not in page
    # the t4 panel's dots are sized by their predicted time there, never by this machine's times
    assert "Measured time: " in page and "area &prop; time on each target (measured where timed" in page
    assert "measured " in page and "achieved " in page  # the timed panel's tooltips


def test_rendering_warns_nothing_the_report_did_not(recwarn: pytest.WarningsRecorder) -> None:
    # t4 has no bfloat16 vector peak: the analysis says so once; the page's module rows do not again
    bf16 = layerprof.analyze(Nested(), input_size=(1, 3, 8, 8), dtype=torch.bfloat16, target="t4")
    recwarn.clear()
    assert "block.0" in render_html(bf16)
    assert [str(w.message) for w in recwarn] == []


# -- in a real browser ------------------------------------------------------------------------------
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        if os.environ.get("LAYERPROF_REQUIRE_CHROMIUM"):
            pytest.fail("LAYERPROF_REQUIRE_CHROMIUM is set, but /usr/bin/chromium is missing")
        pytest.skip("needs /usr/bin/chromium to render the page")
    return CHROMIUM


def _browse(chromium: Path, profile: Path, url: str, *extra: str) -> tuple[str, list[str]]:
    """Chromium's stdout and the console lines it logged (messages, uncaught exceptions)."""
    command = [
        str(chromium), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
        f"--user-data-dir={profile}", "--window-size=1400,1000", "--hide-scrollbars",
        "--enable-logging=stderr", "--v=0", *extra, url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def _selftest(chromium: Path, page: Path, query: str = "conv") -> dict[str, Any]:
    """Open ``page`` with ``?selftest``: its script drives the page and writes what it saw as JSON."""
    url = f"{page.as_uri()}?selftest&q={query}"
    dom, console = _browse(chromium, page.parent / "profile", url, "--virtual-time-budget=5000", "--dump-dom")
    assert console == [], "the page logged to the console (a JS exception?)"
    match = re.search(r'<pre id="selftest">(.*?)</pre>', dom, re.S)
    assert match is not None, f"no self-test result in the DOM: {dom[-2000:]}"
    result: dict[str, Any] = json.loads(html.unescape(match.group(1)))
    assert result["errors"] == []
    return result


class Zoo(nn.Module):
    """A resnet18 (four levels of modules) next to a block whose names carry markup."""

    def __init__(self) -> None:
        super().__init__()
        torchvision = pytest.importorskip("torchvision")
        self.body = torchvision.models.resnet18(num_classes=10)
        self.evil = Evil()

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.body(x), self.evil(x)


@pytest.fixture(scope="module")
def zoo() -> Report:
    return layerprof.analyze(Zoo(), input_size=(1, 3, 64, 64), target=["t4", "jetson-orin-nano-8gb"])


@pytest.fixture
def zoo_page(zoo: Report, tmp_path: Path) -> Path:
    return write_html(zoo, tmp_path / "zoo.html", budgets=check(zoo, max_gflops=0.1, max_params=1e8))


def _descendants(parents: dict[str, str], line: str) -> set[str]:
    found: set[str] = set()
    for child, parent in parents.items():
        up = parent
        while up:
            if up == line:
                found.add(child)
                break
            up = parents[up]
    return found


def test_chromium_drives_the_page(chromium: Path, zoo: Report, zoo_page: Path) -> None:
    seen = _selftest(chromium, zoo_page)
    table = layer_table(zoo, None, None, None)
    order = [row.id for row in table.rows]
    parents = {row.id: row.parent for row in table.rows}
    leaves = [row.id for row in table.rows if not row.container]
    assert seen["rows"] == len(order) and [r["id"] for r in seen["initial"]] == order  # opens unfolded
    # the names with markup stayed text: no element was injected, the title is the page's own
    assert seen["scripts"] == 1 and seen["images"] == 0 and seen["title"] == "layerprof: Zoo"

    fold = seen["fold"]
    inside = _descendants(parents, fold["id"])
    assert len(inside) > 3 and inside <= set(fold["before"])
    assert fold["id"] in fold["folded"] and not inside & set(fold["folded"]), "folding left children shown"
    assert fold["expanded"] == "false" and fold["unfolded"] == fold["before"]
    assert [r["id"] for r in seen["depth1"]] == [row for row in order if not parents[row]]

    def by_flops(rows: list[dict[str, Any]], descending: bool = True) -> bool:
        values = [r["flops"] for r in rows]
        return values == sorted(values, reverse=descending)

    sort = seen["sort"]
    assert sort["mark"] == "descending"
    assert sorted(r["id"] for r in sort["tree"]) == sorted(order)
    for parent in set(parents.values()):  # in the tree, each module's children are sorted
        assert by_flops([r for r in sort["tree"] if r["parent"] == parent]), (
            f"children of {parent!r} unsorted"
        )
    assert sort["tree"] != seen["initial"], "sorting reordered nothing"
    assert sorted(r["id"] for r in sort["flat"]) == sorted(leaves) and by_flops(sort["flat"])
    assert by_flops(sort["ascending"], descending=False) and sort["ascending"] != sort["flat"]
    assert [r["id"] for r in sort["cleared"]] == leaves  # a third click: execution order

    search = seen["search"]
    kinds = {row.id: row.cells[0].text for row in table.rows}
    names = {row.id: row.name for row in table.rows}
    matching = {i for i in order if "conv" in f"{names[i]} {kinds[i]}".lower()}
    wanted = matching | {up for i in matching for up in order if i in _descendants(parents, up)}
    assert [r["id"] for r in search["tree"]] == [i for i in order if i in wanted]
    assert len(matching) < len(leaves)
    assert [r["id"] for r in search["flat"]] == [i for i in leaves if i in matching]
    assert len(search["cleared"]) == len(leaves)

    dot = seen["dot"]  # the deepest row's dot, clicked while the tree is folded at depth 1
    assert dot["hiddenBefore"] and dot["hit"] == [dot["row"]] and dot["visible"] and dot["inView"]
    assert dot["dotsLit"] == [dot["row"]] * len(zoo.targets)  # its dot on every panel
    assert set(parents) >= {dot["row"]} and parents[dot["row"]] in dot["shown"]

    tip = seen["tooltip"]
    assert not tip["hidden"] and tip["hiddenAfter"]
    row = next(r for r in table.rows if r.id == tip["row"])
    for word in (row.name, "FLOPs", "bytes", "intensity", "predicted", "ms on t4", "-bound"):
        assert word in tip["text"]
    assert seen["bar"]["hit"] == [seen["bar"]["row"]]


def test_chromium_opens_a_top_cut_as_the_text_table(chromium: Path, zoo: Report, tmp_path: Path) -> None:
    page = write_html(zoo, tmp_path / "top.html", sort="flops", top=5, depth=2)
    seen = _selftest(chromium, page)
    expected = [row.name for row in select_rows(zoo, 2, "flops", 5)]
    assert [r["name"] for r in seen["initial"]] == expected and expected[-1].endswith("more rows)")


def _timed() -> Report:
    local = replace(layerprof.get_device("gtx1080"), name="this-cpu", aliases=(), measured=True)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 1)))
    return layerprof.profile(model, torch.randn(1, 3, 16, 16), target=[local, "t4"], warmup=1, repeat=3)


@pytest.mark.parametrize(
    "make",
    [
        _timed,
        lambda: layerprof.analyze(Nested(), input_size=(2, 3, 8, 8), backward=True),
        lambda: layerprof.analyze(nn.Conv2d(3, 4, 3), input_size=(1, 3, 8, 8), target="t4"),
        lambda: layerprof.analyze(nn.Identity(), input_size=(1, 3, 8, 8)),
    ],
    ids=["timed", "backward-no-target", "one-layer", "no-flops"],
)
def test_chromium_loads_every_kind_of_page(chromium: Path, make: Any, tmp_path: Path) -> None:
    seen = _selftest(chromium, write_html(make(), tmp_path / "page.html"))
    assert seen["rows"] >= 1 and len(seen["initial"]) == seen["rows"]


def test_chromium_screenshot_is_not_blank(chromium: Path, zoo_page: Path) -> None:
    matplotlib_image = pytest.importorskip("matplotlib.image")
    shot = zoo_page.with_suffix(".png")
    _, console = _browse(chromium, zoo_page.parent / "profile", zoo_page.as_uri(), f"--screenshot={shot}")
    assert console == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    pixels = matplotlib_image.imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (1000, 1400)
    flat = (pixels * 255).astype("uint8").reshape(-1, 3)
    assert len({tuple(p) for p in flat[::37]}) > 200 and pixels.std() > 0.05
    # the roofline's colours are on screen: compute-bound red and memory-bound blue strokes
    for colour in ((0xD6, 0x27, 0x28), (0x1F, 0x77, 0xB4)):
        distance = abs(flat.astype(int) - colour).sum(axis=1)
        assert (distance < 40).sum() > 100, f"no {colour} on the screenshot"
