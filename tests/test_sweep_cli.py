"""``layerprof sweep``: the table, the paragraph, the plot, and exit 2 with a clear message on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import layerprof
from layerprof.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["sweep", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_table_and_paragraph(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--kernel-size", "1,3,5,7", "--channels", "16", "--size", "56",
                        "--target", "gtx1080,t4", "--no-cache-model")  # fmt: skip
    assert code == 0
    header = out.splitlines()[0]
    assert "16->16 channels" in header and "56x56 input" in header and "DRAM-only" in header
    assert "gtx1080 bound" in out and "t4 ms" in out
    expected = layerprof.sweep(
        kernel_size=[1, 3, 5, 7], channels=16, targets=["gtx1080", "t4"], cache_model=False
    )
    assert expected.summary() in out
    assert "memory-bound at k=1, compute-bound from k=3" in out


def test_json_points_match_the_library(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--kernel-size", "3,5", "--in-channels", "8", "--out-channels", "16,32",
                        "--groups", "1,2", "--dtype", "fp32,fp16", "--batch", "1,4", "--target", "t4",
                        "--format", "json")  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert len(data["points"]) == 2 * 2 * 2 * 2 * 2  # kernels x out channels x groups x dtypes x batches
    expected = layerprof.sweep(kernel_size=[3, 5], in_channels=8, out_channels=[16, 32], groups=[1, 2],
                               dtype=["fp32", "fp16"], batch=[1, 4], targets=["t4"])  # fmt: skip
    assert data == json.loads(expected.table("json"))
    point = next(p for p in data["points"] if (p["dtype"], p["batch"], p["out_channels"], p["groups"],
                 p["kernel_size"]) == ("float16", 4, 32, 2, [5, 5]))  # fmt: skip
    # 2 * N * Cout * H * W * (Cin / groups) * k * k
    assert point["flops"] == 2 * 4 * 32 * 56 * 56 * (8 // 2) * 5 * 5


def test_a_models_layer(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("torchvision")
    model = ["--model", "torchvision:resnet18", "--layer", "layer3.0.conv2", "--input-size", "1,3,224,224"]
    code, out, _ = _run(capsys, *model, "--kernel-size", "1,3,5", "--target", "t4")
    assert code == 0
    assert out.startswith("layer3.0.conv2: Conv2d, 256->256 channels, 14x14 input")
    assert "Going from k=1 to k=5" in out


def test_plot(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "sweep.svg"
    code, out, _ = _run(
        capsys, "--kernel-size", "1,3", "--channels", "16,32", "--target", "t4", "--plot", str(path)
    )
    assert code == 0 and f"wrote {path}" in out
    svg = path.read_text()
    assert "C=16" in svg and "C=32" in svg and "NVIDIA T4" in svg


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--model", "torchvision:resnet18", "--layer", "layer3.0.conv3", "--input-size", "1,3,64,64"],
            "no layer 'layer3.0.conv3'; the closest: layer3.0.conv2",
        ),
        (["--channels", "64", "--groups", "3"], "groups=3 does not divide in_channels=64"),
        (["--size", "5", "--padding", "0", "--kernel-size", "3,7"], "larger than the padded input height 5"),
        (["--kernel-size", "3,x"], "--kernel-size 'x'"),
        (["--kernel-size", "0"], "kernel_size=0"),
        (["--channels", "-3"], "channels=-3"),
        (["--batch", "1,,2"], "empty value"),
        (["--stride", "2"], "padding='same' needs stride 1"),
        (["--dtype", "fp99"], "fp99"),
        (["--target", "gtx9999"], "gtx9999"),
        (["--layer", "conv1"], "--model and --layer go together"),
        (["--model", "torchvision:resnet18", "--layer", "conv1", "--size", "56"], "--size"),
        (["--format", "yaml"], "invalid choice: 'yaml'"),
    ],
)
def test_bad_input_exits_2_naming_the_value(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert message in err and out == ""
