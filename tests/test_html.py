"""layerprof.report.html: one self-contained page (no external resource), the plot inline, budgets shown;
rendered by a real browser where /usr/bin/chromium exists."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest
from torch import nn

import layerprof
from layerprof.analysis.budgets import check
from layerprof.errors import InvalidArgumentError
from layerprof.report.facade import Report
from layerprof.report.html import render_html, write_html

CHROMIUM = Path("/usr/bin/chromium")


class Odd(nn.Module):
    """A model whose class name needs escaping in HTML."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.relu = nn.ReLU()

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.relu(self.conv(x))


Odd.__name__ = "Odd<&>"


@pytest.fixture(scope="module")
def report() -> Report:
    return layerprof.analyze(Odd(), input_size=(1, 3, 16, 16), target=["t4", "jetson-orin-nano-8gb"])


def test_page_is_self_contained(report: Report) -> None:
    page = render_html(report, plot=False)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # nothing is fetched: no src/href other than inline data, no script
    assert re.findall(r'(?:src|href)="(?!data:)', page) == []
    assert "<script" not in page and "@import" not in page and "url(" not in page
    assert "Odd&lt;&amp;&gt;" in page and "Odd<&>" not in page


def test_page_holds_totals_targets_and_rows(report: Report) -> None:
    page = render_html(report, plot=False)
    for name in ("conv", "relu"):
        assert f'<td class="name">{name}</td>' in page
    assert '<tr class="total">' in page
    assert "NVIDIA T4" in page and "Jetson Orin Nano" in page
    # conv: 2 * 8 * 16 * 16 * 3 * 9 = 110592 FLOPs, relu 8 * 16 * 16 = 2048: 112640 in all -> "113K"
    assert "<td>113K</td>" in page
    predicted = report.total.roofline["t4"].roofline_time_ms
    assert f"<td>{predicted:.3f}</td>" in page


def test_budget_results_are_shown(report: Report) -> None:
    results = check(report, max_gflops=1e-4, max_params=1e6)
    page = render_html(report, budgets=results, plot=False)
    assert "Budgets: 1 of 2 budget checks failed" in page
    assert 'class="text fail">FAIL max_gflops' in page
    assert 'class="text pass">ok   max_params' in page
    assert "Budgets" not in render_html(report, plot=False)


def test_plot_is_inlined_as_png(report: Report) -> None:
    pytest.importorskip("matplotlib")
    page = render_html(report)
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match is not None
    assert base64.b64decode(match.group(1))[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_plot_is_a_note(report: Report, monkeypatch: pytest.MonkeyPatch) -> None:
    from layerprof.report import plot

    def no_matplotlib(*args: object, **kwargs: object) -> Path:
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(plot, "plot_roofline", no_matplotlib)
    page = render_html(report)
    assert "data:image/png" not in page
    assert "No roofline plot: No module named &#x27;matplotlib&#x27; (pip install" in page

    def broken(*args: object, **kwargs: object) -> Path:
        raise RuntimeError("font cache unreadable")

    monkeypatch.setattr(plot, "plot_roofline", broken)
    assert "No roofline plot: RuntimeError: font cache unreadable" in render_html(report)


def test_table_options_and_write(report: Report, tmp_path: Path) -> None:
    page = render_html(report, sort="flops", top=1, plot=False)
    assert '<td class="name">(1 more rows)</td>' in page
    with pytest.raises(InvalidArgumentError):
        render_html(report, sort="colour")
    path = write_html(report, tmp_path / "r.html", plot=False)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(InvalidArgumentError, match=r"must end in \.html"):
        write_html(report, tmp_path / "r.txt")


def test_timed_report_shows_times() -> None:
    from dataclasses import replace

    import torch

    local = replace(layerprof.get_device("gtx1080"), name="this-cpu", aliases=(), measured=True)
    timed = layerprof.profile(
        nn.Sequential(nn.Conv2d(3, 4, 3)), torch.randn(1, 3, 16, 16), target=[local, "t4"], warmup=1, repeat=3
    )
    page = render_html(timed, plot=False)
    assert "timed on this machine" in page and "measured ms" in page
    # efficiency only against the device the times were taken on, as in the text table
    assert "eff@this-cpu" in page and "eff@t4" not in page


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium to render the page")
def test_chromium_renders_a_page_that_is_not_blank(report: Report, tmp_path: Path) -> None:
    matplotlib_image = pytest.importorskip("matplotlib.image")
    page = tmp_path / "report.html"
    write_html(report, page, budgets=check(report, max_gflops=1e-4))
    shot = tmp_path / "shot.png"
    command = [
        str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}", "--window-size=1400,2000", page.as_uri(),
    ]  # fmt: skip
    subprocess.run(command, capture_output=True, timeout=120, check=False)
    assert shot.is_file() and shot.stat().st_size > 0
    pixels = matplotlib_image.imread(str(shot))
    assert pixels.shape[0] == 2000 and pixels.shape[1] == 1400
    # not blank: many distinct colours (text, the table rules, the coloured plot)
    flat = (pixels[..., :3] * 255).astype("uint8").reshape(-1, 3)
    assert len({tuple(p) for p in flat[::97]}) > 20
    assert pixels[..., :3].std() > 0.02
