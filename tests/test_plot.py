"""The roofline picture: files of the right kind and size, not blank, with the labels that matter."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import layerprof
from conftest import restored_torch_flags
from layerprof.errors import InvalidArgumentError
from layerprof.report import plot, plot_layout
from layerprof.report.facade import Report
from layerprof.roofline.verdicts import dominant_dtype, judge

mpimg = pytest.importorskip("matplotlib.image")

# Colours of the two bounds as RGB floats: #d62728 (compute), #1f77b4 (memory).
COMPUTE_RGB = (0xD6 / 255, 0x27 / 255, 0x28 / 255)
MEMORY_RGB = (0x1F / 255, 0x77 / 255, 0xB4 / 255)


@pytest.fixture(scope="module")
def report() -> Report:
    return layerprof.analyze(layerprof.demo_model(), input_size=(1, 3, 128, 128), target=["gtx1080", "t4"])


def _has_colour(image: object, rgb: tuple[float, float, float]) -> bool:
    pixels = torch.from_numpy(image)[..., :3]
    distance = (pixels - torch.tensor(rgb)).abs().amax(dim=-1)
    return bool((distance < 0.02).any())


def test_png_is_an_image_of_the_expected_size_and_not_blank(report: Report, tmp_path: Path) -> None:
    written = report.plot_roofline(tmp_path / "roofline.png")
    assert written == tmp_path / "roofline.png"
    image = mpimg.imread(written)
    width, height = plot_layout.figure_size_px(2)
    # 2 panels side by side: 2 * 6.4 in * 110 dpi = 1408 px; one row of 5.6 in + the 0.65 in strip
    # under it: 6.25 in * 110 dpi = 687.5 px.
    assert width == 1408
    assert abs(height - 687.5) <= 0.5
    assert image.shape[:2] == (height, width)
    assert float(image[..., :3].var()) > 0
    distinct = {tuple(p) for p in (image[::7, ::7, :3] * 255).round().astype(int).reshape(-1, 3).tolist()}
    assert len(distinct) > 10
    # DemoNet on a GTX 1080 has compute-bound convolutions (fuse: 225 FLOP/B > ridge 27.5) and
    # memory-bound normalisations (0.25 FLOP/B): both colours are drawn.
    assert _has_colour(image, COMPUTE_RGB)
    assert _has_colour(image, MEMORY_RGB)


def test_svg_names_the_heaviest_rows_and_the_ridges(report: Report, tmp_path: Path) -> None:
    written = plot.plot_roofline(report, tmp_path / "roofline.svg", label_top=3)
    text = written.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    heaviest = sorted((r for r in report.layers if r.flops > 0), key=lambda r: -r.flops)[:3]
    for row in heaviest:
        assert row.name in text
    lightest = min((r for r in report.layers if r.flops > 0), key=lambda r: r.flops)
    assert f"<!-- {lightest.name} -->" not in text  # only label_top rows are labelled
    # GTX 1080 ridge: 8.8e12 FLOP/s / 320e9 B/s = 27.5 FLOP/B; T4 float32: 8.1e12 / 320e9 = 25.3125.
    assert "27.5 FLOP/B" in text
    assert "25.3 FLOP/B" in text
    assert "NVIDIA GeForce GTX 1080" in text and "NVIDIA T4" in text
    assert "DemoNet" in text and "float32" in text
    # (root)/cat moves bytes but does no arithmetic: it cannot sit on a log axis.
    assert "1 row with no FLOPs not shown" in text


@pytest.mark.parametrize("name", ["roofline.jpg", "roofline", "roofline.pdf"])
def test_other_suffixes_are_refused(report: Report, tmp_path: Path, name: str) -> None:
    suffix = Path(name).suffix
    with pytest.raises(InvalidArgumentError, match=repr(suffix)):
        report.plot_roofline(tmp_path / name)
    assert not (tmp_path / name).exists()


def test_label_top_must_be_a_count(report: Report, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="label_top"):
        report.plot_roofline(tmp_path / "x.png", label_top=-1)


def test_a_report_without_target_still_plots(tmp_path: Path) -> None:
    bare = layerprof.analyze(layerprof.demo_model(), input_size=(1, 3, 64, 64))
    assert bare.targets == ()
    image = mpimg.imread(bare.plot_roofline(tmp_path / "bare.png"))
    width, height = plot_layout.figure_size_px(1)
    assert image.shape[:2] == (height, width)
    assert float(image[..., :3].var()) > 0
    svg = bare.plot_roofline(tmp_path / "bare.svg").read_text()
    assert "no target" in svg
    assert "fuse" in svg  # the heaviest row (5x5 conv, 64 -> 64 channels) is still labelled


def test_timed_rows_sit_at_their_achieved_rate(report: Report, tmp_path: Path) -> None:
    t4 = layerprof.get_device("t4")
    # Every row timed at 4x its roofline time on the T4 (and at least 10 us, above the noise floor).
    rows = [
        judge(
            replace(r, roofline={}, time_ms=max(4 * r.roofline["t4"].roofline_time_ms, 0.01)),
            (t4,),
            timed_on={"t4"},  # as if profiled on a T4
        )
        for r in report.layers
    ]
    timed = replace(report, layers=tuple(rows), targets=(t4,), timed_on=frozenset({"t4"}))
    fuse = timed.row("fuse")
    assert fuse.time_ms is not None
    dot = plot.row_dot(fuse, t4)
    assert dot.measured
    assert dot.flops_per_s == pytest.approx(fuse.flops / (fuse.time_ms / 1e3))
    svg = timed.plot_roofline(tmp_path / "timed.svg").read_text()
    assert "measured (achieved FLOP/s)" in svg
    assert "dot area ∝ measured time" in svg


def test_untimed_rows_sit_on_their_roof(report: Report) -> None:
    gtx = layerprof.get_device("gtx1080")
    fuse = report.row("fuse")
    dot = plot.row_dot(fuse, gtx)
    assert not dot.measured
    assert dot.bound == "compute"
    # fuse is compute-bound on the GTX 1080 (matrix = vector roof: 8.8e12 FLOP/s): on the roof its
    # attainable rate is the peak itself.
    assert dot.flops_per_s == pytest.approx(8.8e12)
    bn = report.row("res.bn1")
    # Off the compute roof: attainable = FLOPs / roofline time (whichever level or floor binds it) ...
    verdict = bn.roofline["gtx1080"]
    assert plot.row_dot(bn, gtx).flops_per_s == pytest.approx(bn.flops / (verdict.roofline_time_ms / 1e3))
    # ... which, DRAM-only, is intensity * bandwidth.
    dram_only = layerprof.analyze(
        layerprof.demo_model(), input_size=(1, 3, 128, 128), target="gtx1080", cache_model=False
    ).row("res.bn1")
    assert plot.row_dot(dram_only, gtx).flops_per_s == pytest.approx(bn.intensity * 320e9)


def test_ceilings_follow_the_dtype_and_tf32() -> None:
    t4 = plot_layout.ceilings_of(layerprof.get_device("t4"), "float16")
    assert t4.matrix_peak_flops_per_s == 65e12 and t4.vector_peak_flops_per_s == 16.2e12
    assert t4.matrix_ridge_point == pytest.approx(65e12 / 320e9)  # 203.125 FLOP/B
    h100 = layerprof.get_device("h100-sxm")
    with restored_torch_flags():
        torch.backends.cudnn.allow_tf32 = True
        assert plot_layout.ceilings_of(h100, "float32").matrix_dtype == "tf32"
        assert plot_layout.ceilings_of(h100, "float32").matrix_peak_flops_per_s == 494.5e12
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        assert plot_layout.ceilings_of(h100, "float32").matrix_dtype == "float32"
        assert plot_layout.ceilings_of(h100, "float32").matrix_peak_flops_per_s == 67e12
    xeon = plot_layout.ceilings_of(layerprof.get_device("xeon-e5345"), "float16")
    assert xeon.fallback and xeon.matrix_peak_flops_per_s == 75e9


def test_dominant_dtype_weighs_flops_and_bytes(report: Report) -> None:
    assert dominant_dtype(report.layers) == "float32"
    # Two float16 rows among float32 ones do not change it; the other way round they do.
    half = [replace(r, dtype="float16") for r in report.layers]
    assert dominant_dtype([*half[:2], *report.layers[2:]]) == "float32"
    assert dominant_dtype([*report.layers[:2], *half[2:]]) == "float16"
    assert dominant_dtype([]) == "float32"


def test_missing_matplotlib_says_how_to_install(
    report: Report, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(InvalidArgumentError, match=r"pip install layerprof\[plot\]"):
        report.plot_roofline(tmp_path / "x.png")


def test_importing_layerprof_does_not_import_matplotlib() -> None:
    code = "import sys, layerprof, layerprof.report.plot; sys.exit('matplotlib' in sys.modules)"
    src = Path(__file__).resolve().parents[1] / "src"
    env = {**os.environ, "PYTHONPATH": str(src)}
    result = subprocess.run([sys.executable, "-c", code], env=env, check=False)
    assert result.returncode == 0


def test_backward_rows_are_drawn_and_named_as_such(report: Report, tmp_path: Path) -> None:
    fuse = report.row("fuse")
    # The backward of a convolution does twice its forward's matrix work (grad input + grad weight).
    backward = replace(fuse, phase="backward", flops=2 * fuse.flops, matrix_flops=2 * fuse.matrix_flops)
    backward = judge(replace(backward, roofline={}), report.targets)
    both = replace(report, layers=(*report.layers, backward))
    svg = both.plot_roofline(tmp_path / "both.svg", label_top=1).read_text()
    assert "fuse (bwd)" in svg  # the heaviest row now
    assert "backward pass" in svg


def test_the_matrix_roof_follows_the_switch_of_the_rows_matrix_work() -> None:
    # cuDNN's TF32 switch on, cuBLAS's off (torch's defaults): conv work gets the TF32 roof, GEMM
    # work (a ViT) the float32 one, as the verdicts price them.
    h100 = layerprof.get_device("h100-sxm")
    with restored_torch_flags():
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False
        assert plot_layout.ceilings_of(h100, "float32", "conv").matrix_peak_flops_per_s == 494.5e12
        assert plot_layout.ceilings_of(h100, "float32", "matmul").matrix_peak_flops_per_s == 67e12
