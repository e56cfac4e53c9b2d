"""The roofline picture of a memory hierarchy: every ceiling drawn and labelled, the launch floor,
rows above their roof marked as findings, labels clear of each other, dots sized honestly.

The rows carry cache-aware verdicts written by hand (tests/plot_hierarchy_helpers.py) on targets
with cache levels built here, so these tests do not depend on layerprof's own cache model.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

import layerprof
from layerprof.core.records import LayerRow
from layerprof.hardware.specs import CacheLevel
from layerprof.report import html_roofline, plot, plot_draw, plot_layout
from layerprof.report.facade import Report
from layerprof.report.plot_ceilings import CEILING_GID
from layerprof.report.plot_labels import DOT_GID
from layerprof.roofline import model as roofline
from plot_hierarchy_helpers import cache_verdict, hierarchy_target, with_verdicts

pytest.importorskip("matplotlib")
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex
from matplotlib.text import Text

GPU = hierarchy_target("hgpu", dram=300e9, l2=2.4e12, matrix=20e12, vector=10e12, launch_s=1e-6)
CPU = hierarchy_target("hcpu", dram=20e9, l2=200e9, matrix=1e12, vector=0.5e12, launch_s=2e-6, llc=80e9)


@pytest.fixture(scope="module")
def base() -> Report:
    return layerprof.analyze(layerprof.demo_model(), input_size=(8, 3, 128, 128), target=[GPU, CPU])


def _hand_verdicts(report: Report) -> Report:
    """Every row with FLOPs: on the GPU, odd rows 90% from L2; on the CPU, some from L2 and LLC."""
    rows: list[LayerRow] = []
    for i, row in enumerate(report.layers):
        if row.flops == 0:
            rows.append(row)
            continue
        gpu = cache_verdict(row, GPU, shares={"L2": 0.97 if i % 2 else 0.0}, kernels=1 + i % 3)
        cpu = cache_verdict(
            row, CPU, shares={"L2": 0.5 if i % 3 == 0 else 0.0, "LLC": 0.3}, kernels=1 + i % 3
        )
        rows.append(with_verdicts(row, gpu, cpu))
    return replace(report, layers=tuple(rows))


@pytest.fixture(scope="module")
def hier(base: Report) -> Report:
    return _hand_verdicts(base)


def _figure(report: Report, label_top: int = 8) -> Any:
    panels, title, notes = plot.report_panels(report)
    return plot_draw.build_figure(panels, title=title, notes=notes, label_top=label_top)


def _renderer(figure: Any) -> Any:
    return figure.canvas.get_renderer()


def _labels(ax: Any, gid: str) -> list[Text]:
    return [t for t in ax.texts if t.get_gid() == gid and t.get_visible() and t.get_text()]


def _box(text: Text, renderer: Any) -> Any:
    return Text.get_window_extent(text, renderer)  # the text's own box, without a leader line


def _panel_axes(figure: Any) -> list[Any]:
    return [ax for ax in figure.axes if ax.get_visible()]


def _legend_texts(figure: Any) -> list[str]:
    return [t.get_text() for legend in figure.legends for t in legend.get_texts()]


def test_every_slope_roof_and_ridge_of_the_hierarchy_is_drawn_and_labelled(hier: Report) -> None:
    figure = _figure(hier)
    gpu_ax, cpu_ax = _panel_axes(figure)
    for ax, target in ((gpu_ax, GPU), (cpu_ax, CPU)):
        matrix = target.matrix_peak_flops_per_s["float32"]
        vector = target.vector_peak_flops_per_s["float32"]
        levels = [("DRAM", target.memory_bandwidth_bytes_per_s)] + [
            (c.name, c.bandwidth_bytes_per_s) for c in target.cache_levels
        ]
        slopes = {}
        for line in ax.lines:
            x, y = line.get_xdata(), line.get_ydata()
            if len(x) == 2 and x[0] != x[1] and y[0] != y[1]:  # a sloped line: y = bandwidth * x
                slopes[round(y[0] / x[0])] = line
        for name, bandwidth in levels:
            line = slopes[round(bandwidth)]
            # from the left edge, along bandwidth * intensity, up to where it meets the matrix roof
            assert line.get_xdata()[0] == pytest.approx(ax.get_xlim()[0])
            assert line.get_ydata()[1] / line.get_xdata()[1] == pytest.approx(bandwidth)
            assert line.get_ydata()[1] == pytest.approx(matrix)
            assert to_hex(line.get_color()) == plot_layout.level_colour(name)
        assert len(slopes) == len(levels)
        flats = {
            round(ln.get_ydata()[0]): ln
            for ln in ax.lines
            if len(ln.get_ydata()) == 2 and len(set(ln.get_ydata())) == 1
        }
        fastest = max(bw for _, bw in levels)
        for peak in (matrix, vector):  # the roofs reach left to the fastest slope
            assert flats[round(peak)].get_xdata()[0] == pytest.approx(peak / fastest)
            assert flats[round(peak)].get_xdata()[1] == pytest.approx(ax.get_xlim()[1])
        texts = {t.get_text() for t in _labels(ax, CEILING_GID)}
        for name, bandwidth in levels:
            assert f"{name} {plot_layout.human(bandwidth, 'B/s')}" in texts
        assert f"matrix ridge\n{matrix / target.memory_bandwidth_bytes_per_s:.3g} FLOP/B" in texts
        assert f"vector ridge\n{vector / target.memory_bandwidth_bytes_per_s:.3g} FLOP/B" in texts
        assert f"matrix roof {plot_layout.human(matrix, 'FLOP/s')}" in texts
        assert f"vector roof {plot_layout.human(vector, 'FLOP/s')}" in texts
    assert {"DRAM 300 GB/s", "L2 2.4 TB/s"} <= {t.get_text() for t in _labels(gpu_ax, CEILING_GID)}
    assert {"DRAM 20 GB/s", "L2 200 GB/s", "LLC 80 GB/s"} <= {
        t.get_text() for t in _labels(cpu_ax, CEILING_GID)
    }
    assert "L2 6.00 MiB at 2.4 TB/s, launch floor 1 µs/kernel" in gpu_ax.get_title()
    assert "LLC 48.00 MiB at 80 GB/s, launch floor 2 µs/kernel" in cpu_ax.get_title()


def test_the_launch_floor_caps_each_dot_at_flops_over_kernels_times_the_floor(hier: Report) -> None:
    figure = _figure(hier)
    gpu_ax = _panel_axes(figure)[0]
    drawn = sorted(
        (round(float(line.get_xdata()[0]), 9), float(line.get_ydata()[0]))
        for line in gpu_ax.lines
        if line.get_marker() == "_"
    )
    expected = []
    for row in hier.layers:
        if row.flops == 0 or row.bytes_total == 0:
            continue
        verdict = row.roofline["hgpu"]
        dot = plot.row_dot(row, GPU)
        cap = row.flops / (verdict.kernels * 1e-6)  # flops / (kernels x launch floor)
        assert dot.cap_flops_per_s == pytest.approx(cap)
        assert dot.flops_per_s is not None
        if cap <= plot_layout.CAP_SHOWN_FACTOR * dot.flops_per_s:  # near enough to bound it
            expected.append((round(row.intensity, 9), cap))
        if verdict.bound == "overhead":  # an untimed overhead-bound row sits on its cap
            assert dot.flops_per_s == pytest.approx(cap)
    assert len(expected) >= 3
    assert [x for x, _ in drawn] == [x for x, _ in sorted(expected)]
    assert [y for _, y in drawn] == pytest.approx([y for _, y in sorted(expected)])
    # Without a floor on the target, or without kernels in the verdict, there is no cap.
    bare = replace(GPU, launch_overhead_s=None)
    row = next(r for r in hier.layers if r.flops > 0)
    assert plot.row_dot(row, bare).cap_flops_per_s is None
    no_kernels = with_verdicts(row, replace(row.roofline["hgpu"], kernels=0))
    assert plot.row_dot(no_kernels, GPU).cap_flops_per_s is None
    assert any("launch floor cap" in text for text in _legend_texts(figure))


def test_each_bound_has_its_colour_and_a_legend_entry_per_level_present(hier: Report) -> None:
    figure = _figure(hier)
    bounds = {r.roofline["hgpu"].bound for r in hier.layers if r.flops > 0} | {
        r.roofline["hcpu"].bound for r in hier.layers if r.flops > 0
    }
    assert {"compute", "memory(DRAM)", "memory(L2)", "overhead"} <= bounds
    for ax, target in zip(_panel_axes(figure), (GPU, CPU), strict=True):
        dots = [plot.row_dot(r, target) for r in hier.layers if r.flops > 0 and r.bytes_total > 0]
        drawn = {}
        for collection in ax.collections:
            if isinstance(collection, PathCollection) and len(collection.get_offsets()) == 1:
                x, y = collection.get_offsets()[0]
                drawn[(round(float(x), 9), round(float(y), -3))] = to_hex(collection.get_edgecolor()[0])
        for dot in dots:
            assert dot.flops_per_s is not None
            assert drawn[(round(dot.intensity, 9), round(dot.flops_per_s, -3))] == plot_layout.bound_colour(
                dot.bound
            )
    assert plot_layout.bound_colour("memory(L2)") == "#17becf" != plot_layout.bound_colour("memory(DRAM)")
    assert plot_layout.bound_colour("memory") == plot_layout.bound_colour("memory(DRAM)")
    # A level outside the table still gets a colour of its own, the same every time.
    slc = plot_layout.bound_colour("memory(SLC)")
    assert slc == plot_layout.level_colour("SLC") == plot_layout.bound_colour("memory(SLC)")
    others = ("compute", "memory(DRAM)", "memory(L2)", "memory(LLC)", "overhead", "none")
    assert slc not in {plot_layout.COLOURS[b] for b in others}
    legend = _legend_texts(figure)
    assert "compute-bound" in legend
    assert "DRAM: slope, memory-bound dots" in legend
    assert "L2: slope, memory-bound dots" in legend
    assert "overhead-bound (launch floor)" in legend
    llc_bound = any(r.roofline["hcpu"].bound == "memory(LLC)" for r in hier.layers if r.flops > 0)
    assert ("LLC: slope, memory-bound dots" in legend) == llc_bound
    assert ("LLC: slope" in legend) == (not llc_bound)


def test_a_row_faster_than_its_roof_is_ringed_named_and_noted(hier: Report) -> None:
    rows = list(hier.layers)
    index = next(i for i, r in enumerate(rows) if r.name == "res.bn1")
    bn = rows[index]
    roof_ms = bn.roofline["hgpu"].roofline_time_ms
    # Timed on the GPU at half its roofline time: 2x faster than the roof allows.
    fast = cache_verdict(
        bn, GPU, shares={"L2": 0.97 if index % 2 else 0.0}, kernels=1 + index % 3, time_ms=roof_ms / 2
    )
    assert fast.flags == ("above-roof",) and fast.roofline_efficiency == pytest.approx(2.0)
    rows[index] = with_verdicts(replace(bn, time_ms=roof_ms / 2), fast, bn.roofline["hcpu"])
    # One more timed row, just under its roof: not a finding.
    other = next(i for i, r in enumerate(rows) if r.name == "res.bn2")
    slow_ms = rows[other].roofline["hgpu"].roofline_time_ms * 1.01
    slow = cache_verdict(
        rows[other], GPU, shares={"L2": 0.97 if other % 2 else 0.0}, kernels=1 + other % 3, time_ms=slow_ms
    )
    rows[other] = with_verdicts(replace(rows[other], time_ms=slow_ms), slow, rows[other].roofline["hcpu"])
    report = replace(hier, layers=tuple(rows))
    dot = plot.row_dot(rows[index], GPU)
    assert dot.above_roof and dot.measured and dot.efficiency == pytest.approx(2.0)
    assert not plot.row_dot(rows[other], GPU).above_roof
    assert not plot.row_dot(rows[index], CPU).above_roof  # not timed there: no finding there
    figure = _figure(report, label_top=0)  # no label asked for: the finding is labelled anyway
    gpu_ax, cpu_ax = _panel_axes(figure)
    assert [t.get_text() for t in _labels(gpu_ax, DOT_GID)] == ["! res.bn1 (2x its roof)"]
    assert _labels(cpu_ax, DOT_GID) == []
    ring_at = [
        tuple(c.get_offsets()[0])
        for c in gpu_ax.collections
        if isinstance(c, PathCollection) and to_hex(c.get_edgecolor()[0]) == plot_layout.ABOVE_ROOF_COLOUR
    ]
    assert dot.flops_per_s is not None
    assert ring_at == [pytest.approx((dot.intensity, dot.flops_per_s))]
    assert "! faster than its roof: check" in _legend_texts(figure)
    notes = " ".join(t.get_text() for t in figure.texts)
    assert "faster than its roof on hgpu, check: res.bn1 (2x)" in " ".join(notes.split())


def _crowd(count: int, above: int) -> plot_layout.RooflinePanel:
    """``count`` dots packed on a quarter decade of intensity near the DRAM slope, ``above`` of them
    flagged above their roof, with names of varied lengths."""
    dots = []
    for i in range(count):
        intensity = 0.6 * 10 ** (0.25 * i / count)
        rate = GPU.memory_bandwidth_bytes_per_s * intensity * (0.55 + 0.4 * ((i * 7) % 11) / 11)
        name = f"stage{i % 4}.block{i}." + ("conv" if i % 3 else "depthwise_separable")
        dots.append(
            plot_layout.RooflineDot(
                name, intensity, rate, 1.0 + (i * 37) % 13, "memory(DRAM)", True,
                weight_basis="measured", above_roof=i < above, efficiency=1.5 if i < above else None,
            )
        )  # fmt: skip
    return plot_layout.RooflinePanel(GPU, "float32", tuple(dots), title="crowd")


def _assert_clear(figure: Any, *, at_least: int) -> None:
    renderer = _renderer(figure)
    for ax in _panel_axes(figure):
        inside = ax.get_window_extent(renderer)
        dots = [_box(t, renderer) for t in _labels(ax, DOT_GID)]
        ceilings = [_box(t, renderer) for t in _labels(ax, CEILING_GID)]
        assert len(dots) >= at_least
        for a, b in itertools.combinations(dots, 2):
            assert not a.overlaps(b), (a, b)
        for a, b in itertools.product(dots, ceilings):
            assert not a.overlaps(b), (a, b)
        for a, b in itertools.combinations(ceilings, 2):
            assert not a.overlaps(b), (a, b)
        for box in dots + ceilings:
            assert inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1


def test_labels_of_crowded_dots_overlap_neither_each_other_nor_the_ceilings() -> None:
    figure = plot_draw.build_figure([_crowd(60, 3)], title="crowd", label_top=60)
    _assert_clear(figure, at_least=12)
    ax = _panel_axes(figure)[0]
    shown = {t.get_text() for t in _labels(ax, DOT_GID)}
    for i in range(3):  # the findings come first: all three are named
        assert (
            f"! stage{i % 4}.block{i}.{'conv' if i % 3 else 'depthwise_separable'} (1.5x its roof)" in shown
        )
    # Every ceiling label the picture needs is there.
    ceilings = {t.get_text() for t in _labels(ax, CEILING_GID)}
    assert {"DRAM 300 GB/s", "L2 2.4 TB/s", "matrix roof 20 TFLOP/s", "vector roof 10 TFLOP/s"} <= ceilings


def test_close_slopes_and_several_panels_keep_their_labels_apart(hier: Report) -> None:
    # Three levels within a factor 2 of bandwidth: parallel slopes a few pixels apart.
    close = hierarchy_target("close", dram=300e9, l2=600e9, llc=420e9, matrix=20e12, vector=10e12)
    panels = [replace(_crowd(30, 1), target=close, title="close"), *plot.report_panels(hier)[0]]
    figure = plot_draw.build_figure(panels, title="three panels", label_top=30)
    _assert_clear(figure, at_least=6)
    ax = _panel_axes(figure)[0]
    ceilings = {t.get_text() for t in _labels(ax, CEILING_GID)}
    assert {"DRAM 300 GB/s", "matrix roof 20 TFLOP/s", "vector roof 10 TFLOP/s"} <= ceilings


def _timed_on_cpu(base: Report) -> Report:
    """Rows timed on the CPU target; the GPU verdicts carry no measured time (it was not timed there).
    The measured times are chosen to rank the rows the other way round from their GPU roofline times."""
    hand = _hand_verdicts(base)
    shown = [r for r in hand.layers if r.flops > 0 and r.bytes_total > 0]
    by_gpu = sorted(shown, key=lambda r: r.roofline["hgpu"].roofline_time_ms)
    times = {r.name: 0.05 * (len(by_gpu) - k) for k, r in enumerate(by_gpu)}  # longest for the cheapest
    rows = []
    for i, row in enumerate(hand.layers):
        if row.name not in times:
            rows.append(row)
            continue
        cpu = cache_verdict(
            row,
            CPU,
            shares={"L2": 0.5 if i % 3 == 0 else 0.0, "LLC": 0.3},
            kernels=1 + i % 3,
            time_ms=times[row.name],
        )
        rows.append(with_verdicts(replace(row, time_ms=times[row.name]), row.roofline["hgpu"], cpu))
    return replace(hand, layers=tuple(rows), timed_on=frozenset({"hcpu"}))


def _drawn_areas(ax: Any) -> dict[tuple[float, float], float]:
    areas = {}
    for c in ax.collections:
        if (
            isinstance(c, PathCollection)
            and len(c.get_offsets()) == 1
            and to_hex(c.get_edgecolor()[0]) != "#000000"
        ):
            x, y = c.get_offsets()[0]
            areas[(round(math.log10(float(x)), 6), round(math.log10(float(y)), 6))] = float(c.get_sizes()[0])
    return areas


def test_dots_are_sized_by_the_time_on_their_own_panels_target(base: Report) -> None:
    report = _timed_on_cpu(base)
    shown = [r for r in report.layers if r.flops > 0 and r.bytes_total > 0]
    figure = _figure(report)
    gpu_ax, cpu_ax = _panel_axes(figure)
    for ax, target, measured in ((gpu_ax, GPU, False), (cpu_ax, CPU, True)):
        weights = {
            r.name: (r.time_ms if measured else r.roofline[target.name].roofline_time_ms) for r in shown
        }
        heaviest = max(w for w in weights.values() if w is not None)
        areas = _drawn_areas(ax)
        for row in shown:
            dot = plot.row_dot(row, target)
            assert dot.measured == measured
            assert dot.weight_basis == ("measured" if measured else "predicted")
            weight = weights[row.name]
            assert weight is not None
            assert dot.weight == pytest.approx(weight)
            assert dot.flops_per_s is not None
            key = (round(math.log10(dot.intensity), 6), round(math.log10(dot.flops_per_s), 6))
            # area = MIN + (MAX - MIN) * time / the panel's longest time
            expected = (
                plot_layout.MIN_DOT_AREA
                + (plot_layout.MAX_DOT_AREA - plot_layout.MIN_DOT_AREA) * weight / heaviest
            )
            assert areas[key] == pytest.approx(expected)
    # The CPU's times rank the rows the other way round from the GPU's roofline: on the GPU panel the
    # dot drawn largest is the row with the longest GPU roofline time, not the longest measured one.
    longest_gpu = max(shown, key=lambda r: r.roofline["hgpu"].roofline_time_ms)
    longest_measured = max(shown, key=lambda r: r.time_ms or 0.0)
    assert longest_gpu.name != longest_measured.name
    biggest = max(_drawn_areas(gpu_ax).items(), key=lambda item: item[1])[0]
    dot = plot.row_dot(longest_gpu, GPU)
    assert dot.flops_per_s is not None
    assert biggest == (round(math.log10(dot.intensity), 6), round(math.log10(dot.flops_per_s), 6))
    notes = " ".join(" ".join(t.get_text() for t in figure.texts).split())
    assert "dot area ∝ time on the panel's target: measured where timed on it, else predicted" in notes


def test_an_untimed_row_is_sized_by_its_predicted_time_not_its_flops(hier: Report) -> None:
    row = next(r for r in hier.layers if r.name == "fuse")
    dot = plot.row_dot(row, GPU)
    assert dot.weight_basis == "predicted" and not dot.measured
    assert dot.weight == pytest.approx(row.roofline["hgpu"].roofline_time_ms)
    # A time measured elsewhere (no efficiency on this target) does not size the dot either.
    timed = replace(row, time_ms=123.0)
    assert plot.row_dot(timed, GPU).weight == pytest.approx(row.roofline["hgpu"].roofline_time_ms)
    # Too short to judge on the target it was timed on: the roofline time sizes it too.
    short = with_verdicts(
        replace(row, time_ms=roofline.DEFAULT_MIN_TIME_MS / 2),
        replace(row.roofline["hgpu"], flags=("too-short",)),
    )
    assert plot.row_dot(short, GPU).weight_basis == "predicted"


def test_hierarchy_pictures_are_written_as_png_and_svg(hier: Report, tmp_path: Path) -> None:
    mpimg = pytest.importorskip("matplotlib.image")
    png = hier.plot_roofline(tmp_path / "h.png")
    width, height = plot_layout.figure_size_px(2)
    assert mpimg.imread(png).shape[:2] == (height, width)
    svg = hier.plot_roofline(tmp_path / "h.svg").read_text()
    for text in ("DRAM 300 GB/s", "L2 2.4 TB/s", "LLC 80 GB/s", "launch floor 1 µs/kernel", "Test hcpu"):
        assert text in svg


def test_the_html_roofline_draws_the_same_slopes_colours_and_findings(hier: Report) -> None:
    rows = list(hier.layers)
    index = next(i for i, r in enumerate(rows) if r.name == "res.bn1")
    roof_ms = rows[index].roofline["hgpu"].roofline_time_ms
    fast = cache_verdict(
        rows[index],
        GPU,
        shares={"L2": 0.97 if index % 2 else 0.0},
        kernels=1 + index % 3,
        time_ms=roof_ms / 2,
    )
    rows[index] = with_verdicts(replace(rows[index], time_ms=roof_ms / 2), fast, rows[index].roofline["hcpu"])
    report = replace(hier, layers=tuple(rows))
    figure = html_roofline.roofline_figure(report, {})
    assert figure is not None
    for panel, target in zip(figure.panels, (GPU, CPU), strict=True):
        slopes = [line for line in panel.lines if line.css == "slope"]
        assert sorted(line.colour for line in slopes) == sorted(
            plot_layout.level_colour(c.name) for c in target.cache_levels
        )
        texts = {t.text for t in panel.texts}
        for level in target.cache_levels:
            assert f"{level.name} {plot_layout.human(level.bandwidth_bytes_per_s, 'B/s')}" in texts
        dots = [plot.row_dot(r, target) for r in report.layers if r.flops > 0 and r.bytes_total > 0]
        assert sorted(d.colour for d in panel.dots) == sorted(plot_layout.bound_colour(d.bound) for d in dots)
        assert sum(d.above_roof for d in panel.dots) == (1 if target is GPU else 0)
        assert sum(line.css == "cap" for line in panel.lines) == sum(plot_layout.cap_shown(d) for d in dots)
    assert ("memory-bound (L2)", "#17becf") in figure.bounds and figure.above_roof


def test_a_long_hierarchy_title_wraps_to_fit_its_panel() -> None:
    # A measured CPU has three levels and a floor: on one line (105 characters) its title ran past the
    # panel's edge and lost its first letters. Wrapped, every line fits and nothing is dropped.
    levels = (("L1", 32 << 10, 190e9), ("L2", 1 << 20, 190e9), ("LLC", 32 << 20, 190e9))
    target = replace(CPU, name="three", cache_levels=tuple(CacheLevel(*level) for level in levels))
    report = layerprof.analyze(torch.nn.Conv2d(3, 4, 3), input_size=(1, 3, 16, 16), target=target)
    (panel,), _, _ = plot.report_panels(report)
    title = plot_layout.panel_title(panel, plot_layout.ceilings_of(target, "float32"))
    hierarchy = title.splitlines()[2:]
    assert len(hierarchy) == 2 and all(len(line) <= 80 for line in hierarchy)
    assert ", ".join(hierarchy) == (
        "L1 32.00 KiB at 190 GB/s, L2 1.00 MiB at 190 GB/s, LLC 32.00 MiB at 190 GB/s, "
        "launch floor 2 µs/kernel"
    )
