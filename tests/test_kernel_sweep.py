"""examples/kernel_size_sweep.py: intensity grows with the kernel, and the bound flips at the ridge."""

from __future__ import annotations

import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "kernel_size_sweep.py"


@pytest.fixture(scope="module")
def sweep_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kernel_size_sweep", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.fixture(scope="module")
def points(sweep_module: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("sweep") / "sweep.json"
    assert sweep_module.main(["--no-time", "--json", str(out)]) == 0
    loaded: list[dict[str, Any]] = json.loads(out.read_text())
    return loaded


def _point(points: list[dict[str, Any]], channels: int, kernel: int) -> dict[str, Any]:
    return next(p for p in points if p["channels"] == channels and p["kernel_size"] == kernel)


def _bound(point: dict[str, Any], device: str) -> str:
    bound: str = next(b["bound"] for b in point["placements"] if b["device"] == device)
    return bound


def test_the_default_sweep_covers_three_widths_and_four_kernels(points: list[dict[str, Any]]) -> None:
    assert sorted({p["channels"] for p in points}) == [16, 64, 256]
    assert sorted({p["kernel_size"] for p in points}) == [1, 3, 5, 7]
    assert len(points) == 3 * 4
    assert all(p["timing"] is None for p in points)  # --no-time


@pytest.mark.parametrize("channels", [16, 64, 256])
def test_intensity_grows_with_kernel_size(points: list[dict[str, Any]], channels: int) -> None:
    intensities = [_point(points, channels, k)["intensity"] for k in (1, 3, 5, 7)]
    assert intensities == sorted(intensities)
    assert len(set(intensities)) == 4


def test_one_case_written_out(points: list[dict[str, Any]]) -> None:
    point = _point(points, 64, 3)
    # 2 FLOPs per MAC * 56 * 56 outputs * 64 out channels * 64 in channels * 3 * 3 = 231_211_008
    assert point["flops"] == 2 * 56 * 56 * 64 * 64 * 3 * 3 == 231_211_008
    # float32: input 64*56*56 + weights 64*64*3*3 + output 64*56*56 elements, 4 bytes each
    assert point["bytes_moved"] == 4 * (64 * 56 * 56 + 64 * 64 * 9 + 64 * 56 * 56) == 1_753_088
    assert point["intensity"] == pytest.approx(231_211_008 / 1_753_088)  # ~131.9 FLOP/B


def test_gtx1080_bound_flips_across_its_ridge(points: list[dict[str, Any]]) -> None:
    # GTX 1080 ridge: 8.8e12 FLOP/s / 320e9 B/s = 27.5 FLOP/B.
    small = _point(points, 16, 1)
    # 1x1, 16 channels: 2*56*56*16*16 FLOPs / (4 * (16*56*56 * 2 + 16*16)) bytes ~ 3.99 FLOP/B
    assert small["intensity"] == pytest.approx((2 * 56 * 56 * 16 * 16) / (4 * (2 * 16 * 56 * 56 + 16 * 16)))
    assert small["intensity"] < 27.5
    assert _bound(small, "gtx1080") == "memory"
    big = _point(points, 256, 7)
    # 7x7, 256 channels: 2*56*56*256*256*49 / (4 * (2*256*56*56 + 256*256*49)) ~ 1045 FLOP/B
    assert big["intensity"] == pytest.approx(
        (2 * 56 * 56 * 256 * 256 * 49) / (4 * (2 * 256 * 56 * 56 + 256 * 256 * 49))
    )
    assert big["intensity"] > 27.5
    assert _bound(big, "gtx1080") == "compute"
    ridge = next(b["ridge_point"] for b in big["placements"] if b["device"] == "gtx1080")
    assert ridge == pytest.approx(8.8e12 / 320e9)


def test_table_is_printed(sweep_module: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert sweep_module.main(["--no-time", "--channels", "64", "--kernels", "1", "3"]) == 0
    out = capsys.readouterr().out
    assert "gtx1080 (ridge 27.5)" in out
    assert "h100-sxm" in out and "t4" in out
    assert "3x3" in out and "132" in out  # 231_211_008 / 1_753_088 = 131.9 FLOP/B, 3 digits


def test_plot_writes_the_three_rooflines(sweep_module: ModuleType, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "sweep.svg"
    assert (
        sweep_module.main(["--no-time", "--channels", "16", "--kernels", "1", "7", "--plot", str(out)]) == 0
    )
    text = out.read_text()
    for name in ("NVIDIA GeForce GTX 1080", "NVIDIA T4", "NVIDIA H100 SXM5 80GB", "C=16 1x1", "C=16 7x7"):
        assert name in text


def test_unknown_device_is_an_error(sweep_module: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert sweep_module.main(["--no-time", "--devices", "gtx9999"]) == 2
    assert "gtx9999" in capsys.readouterr().err


def test_timed_points_get_a_panel_of_their_own(sweep_module: ModuleType, tmp_path: Path) -> None:
    # Timing needs a CUDA GPU; fake one measured point per sweep point to check the table and plot.
    pytest.importorskip("matplotlib")
    devices = [sweep_module.layerprof.get_device(name) for name in ("gtx1080", "h100-sxm")]
    points = sweep_module.sweep([64], [3], dtype="float32", devices=devices)
    roof = points[0].placements[1].attainable_flops_per_s
    # 231_211_008 FLOPs in 0.01 ms = 23.1 TFLOP/s
    timing = sweep_module.Timing("NVIDIA H100 80GB HBM3", 0.01, 231_211_008 / 1e-5, roof)
    timed = [replace(points[0], timing=timing)]
    text = sweep_module.table(timed, devices, "float32")
    assert "23.1TFLOP/s" in text
    assert f"{231_211_008 / 1e-5 / roof:.0%}" in text
    svg = sweep_module.plot(timed, devices, "float32", tmp_path / "timed.svg", 56).read_text()
    assert "NVIDIA H100 SXM5 80GB (this GPU, measured)" in svg
    assert "measured (achieved FLOP/s)" in svg


def test_the_example_is_a_thin_caller_of_layerprof_sweep(points: list[dict[str, Any]]) -> None:
    import layerprof

    result = layerprof.sweep(
        channels=[16, 64, 256],
        kernel_size=[1, 3, 5, 7],
        targets=["gtx1080", "t4", "h100-sxm"],
        cache_model=False,
    )
    assert len(result.points) == len(points)
    for mine, theirs in zip(result.points, points, strict=True):
        assert (mine.params.in_channels, mine.params.kernel_size[0]) == (
            theirs["channels"],
            theirs["kernel_size"],
        )
        assert mine.flops == theirs["flops"] and mine.bytes_moved == theirs["bytes_moved"]
        for placement in theirs["placements"]:
            verdict = mine.verdicts[placement["device"]]
            assert placement["bound"] == verdict.bound
            assert placement["roofline_time_ms"] == verdict.roofline_time_ms
