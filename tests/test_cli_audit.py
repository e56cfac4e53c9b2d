"""``layerprof audit``: every option, every exit code, config files and the progress bar, through
``main(argv)``. The models are tiny factories written to tmp_path, so each audit takes milliseconds.

The tiny model (``tiny``) on a 1x3x16x16 input, fp32, no conv bias:
    conv  2 * 8 * 16 * 16 * 3 * 9 = 110592 FLOPs; reads 3*16*16*4 + 8*3*3*3*4 = 3072 + 864 = 3936 B,
          writes 8*16*16*4 = 8192 B
    fc    2 * 8 * 4 + 4 = 68 FLOPs; params 8*4 + 4 = 36
    params 8*3*3*3 + 36 = 252
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from layerprof.analysis import budgets as budgets_module
from layerprof.cli import main
from layerprof.cli.config import AuditConfig, parse_input_size, read_config
from layerprof.cli.progress import Progress
from layerprof.errors import InvalidArgumentError
from layerprof.hardware.table import get_device

MODELS = """
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self, width=8, kernel=3, classes=4):
        super().__init__()
        self.conv = nn.Conv2d(3, width, kernel, padding=kernel // 2, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


def tiny(width=8, kernel=3, classes=4):
    return Tiny(width, kernel, classes)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 1, bias=False)
        self.b = nn.Conv2d(1, 4, 1, bias=False)

    def forward(self, x, y):
        return self.a(x) + self.b(y)


def two_inputs():
    return TwoInputs()


def with_dropout():
    return nn.Sequential(nn.Conv2d(3, 4, 1, bias=False), nn.Dropout(0.5))


class Sorts(nn.Module):
    def forward(self, x):
        return torch.cummax(x, 1)[0]  # no formula, no decomposition


def sorts():
    return Sorts()


def broken():
    raise ValueError("no such checkpoint")


def not_a_model():
    return {"weights": 1}
"""

CONV_FLOPS = 2 * 8 * 16 * 16 * 3 * 9  # 110592
CONV_BYTES_FP32 = 3 * 16 * 16 * 4 + 8 * 3 * 3 * 3 * 4 + 8 * 16 * 16 * 4  # 3072 + 864 + 8192 = 12128
TINY_PARAMS = 8 * 3 * 3 * 3 + 8 * 4 + 4  # 252
SMALL = "1,3,16,16"


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The audit reads ./pyproject.toml: run each test in an empty folder of its own.
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def models_file(tmp_path: Path) -> Path:
    path = tmp_path / "zoo_models.py"
    path.write_text(MODELS, encoding="utf-8")
    return path


def audit(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["audit", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def json_report(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = audit(capsys, *argv, "--format", "json")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


def row(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(r for r in report["layers"] if r["name"] == name)


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0]


# -- models and what they are counted as --------------------------------------------------------


def test_file_factory_counts_the_closed_form(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = json_report(capsys, f"{models_file}:tiny", "--input-size", SMALL, "--target", "t4")
    conv = row(report, "conv")
    assert conv["flops"] == CONV_FLOPS
    assert conv["bytes_read"] + conv["bytes_written"] == CONV_BYTES_FP32
    assert report["total"]["params"] == TINY_PARAMS
    assert [t["name"] for t in report["targets"]] == ["t4"]


def test_module_factory_and_model_args(
    models_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(models_file.parent))
    argv = ["zoo_models:tiny", "--input-size", SMALL, "--target", "t4", "--model-arg", "width=16"]
    report = json_report(capsys, *argv, "--model-arg", "classes=10")
    # width 16: 2 * 16 * 16 * 16 * 3 * 9 = 221184; classes 10: fc output 1x10
    assert row(report, "conv")["flops"] == 2 * 16 * 16 * 16 * 3 * 9
    assert row(report, "fc")["output_shapes"] == [[1, 10]]


def test_torchvision_model_with_model_arg_and_crop_size_default(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = audit(capsys, "torchvision:resnet18", "--target", "t4", "--model-arg", "num_classes=10")
    assert code == 0, err
    assert "(1x3x224x224)" in out.splitlines()[0]  # resnet18's DEFAULT weights crop to 224
    assert "1x10" in out  # the fc layer built with 10 classes


def test_exported_program(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False), torch.nn.ReLU())
    program = torch.export.export(model, (torch.randn(2, 3, 16, 16),))
    path = tmp_path / "tiny.pt2"
    torch.export.save(program, path)
    report = json_report(capsys, str(path), "--target", "t4")
    # the exported shapes are the default input: batch 2 -> 2 * 2 * 8 * 16 * 16 * 3 * 9 = 221184
    assert report["inputs"]["positional"][0]["shape"] == [2, 3, 16, 16]
    assert report["total"]["matrix_flops"] == 2 * 2 * 8 * 16 * 16 * 3 * 9


def test_default_input_size_for_a_factory(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = json_report(capsys, f"{models_file}:tiny", "--target", "t4")
    assert report["inputs"]["positional"][0]["shape"] == [1, 3, 224, 224]
    # 2 * 8 * 224 * 224 * 3 * 9 = 21676032
    assert row(report, "conv")["flops"] == 2 * 8 * 224 * 224 * 3 * 9


def test_several_input_sizes(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        f"{models_file}:two_inputs",
        "--input-size",
        "1,3,8,8",
        "--input-size",
        "1x1x8x8",
        "--target",
        "t4",
    ]
    report = json_report(capsys, *argv)
    assert [s["shape"] for s in report["inputs"]["positional"]] == [[1, 3, 8, 8], [1, 1, 8, 8]]
    # a: 2 * 4 * 8 * 8 * 3 = 1536, b: 2 * 4 * 8 * 8 * 1 = 512
    assert row(report, "a")["flops"] == 1536
    assert row(report, "b")["flops"] == 512


def test_models_are_audited_in_eval_mode(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a model built in training mode would run dropout (aten.bernoulli_, no formula): not in an audit
    code, out, err = audit(capsys, f"{models_file}:with_dropout", "--input-size", SMALL, "--target", "t4",
                           "--format", "json")  # fmt: skip
    assert code == 0 and "warning" not in err
    report = json.loads(out)
    assert report["unsupported"] == {}
    dropout = row(report, "1")
    assert (dropout["flops"], dropout["bytes_read"], dropout["bytes_written"]) == (0, 0, 0)


def test_library_warnings_become_one_line_each(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = audit(capsys, f"{models_file}:sorts", "--input-size", SMALL, "--target", "t4")
    assert code == 0
    (line,) = [line for line in err.splitlines() if "warning" in line]
    assert line.startswith("layerprof audit: warning: layerprof has no FLOP formula for aten.cummax x1")
    code, _, err = audit(capsys, f"{models_file}:sorts", "--input-size", SMALL, "--target", "t4", "--quiet")
    assert err == ""


# -- failures to load: one line on stderr, exit 2, never a traceback ----------------------------


def test_missing_module(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = audit(capsys, "no_such_package_xyz.models:build", "--target", "t4")
    assert_one_line_error(code, err, "no module named 'no_such_package_xyz.models'")


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = audit(capsys, f"{tmp_path}/nowhere.py:build", "--target", "t4")
    assert_one_line_error(code, err, "no such file")


def test_factory_that_raises(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = audit(capsys, f"{models_file}:broken", "--target", "t4")
    assert_one_line_error(code, err, "the factory raised ValueError: no such checkpoint")


def test_file_that_is_not_a_model(
    models_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = audit(capsys, f"{models_file}:not_a_model", "--target", "t4")
    assert_one_line_error(code, err, "returned a dict, not a torch.nn.Module")
    notes = tmp_path / "notes.txt"
    notes.write_text("these are not the models you are looking for\n", encoding="utf-8")
    code, _, err = audit(capsys, f"{notes}:build", "--target", "t4")
    assert_one_line_error(code, err, "running", "failed: SyntaxError")


def test_pt2_that_fails_to_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.pt2"
    path.write_bytes(b"PK\x03\x04 this is not a torch.export archive")
    code, _, err = audit(capsys, str(path), "--target", "t4")
    assert_one_line_error(code, err, "broken.pt2")


def test_pickled_checkpoint_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"not read at all")
    code, _, err = audit(capsys, str(path), "--target", "t4")
    assert_one_line_error(code, err, "does not unpickle")


def test_model_that_fails_at_this_input_size(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = audit(capsys, f"{models_file}:tiny", "--input-size", "1,5,16,16", "--target", "t4")
    assert_one_line_error(code, err, "5 channels")


# -- options -----------------------------------------------------------------------------------


def test_dtypes_price_bytes_at_their_width(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"{models_file}:tiny"
    for flag, width in (("fp32", 4), ("fp16", 2), ("bf16", 2)):
        report = json_report(capsys, spec, "--input-size", SMALL, "--target", "t4", "--dtype", flag)
        conv = row(report, "conv")
        assert conv["bytes_read"] + conv["bytes_written"] == CONV_BYTES_FP32 // 4 * width, flag
        assert conv["flops"] == CONV_FLOPS


def test_dtype_int8(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import layerprof

    try:
        layerprof.analyze(torch.nn.Conv2d(3, 8, 3), input_size=(1, 3, 16, 16), dtype=torch.int8)
    except InvalidArgumentError:
        pytest.skip("layerprof.analyze does not price int8 yet")
    report = json_report(
        capsys, f"{models_file}:tiny", "--input-size", SMALL, "--target", "t4", "--dtype", "int8"
    )
    conv = row(report, "conv")
    # int8: 1 byte per element: 3072 / 4 + 864 / 4 + 8192 / 4 = 3032
    assert conv["bytes_read"] + conv["bytes_written"] == CONV_BYTES_FP32 // 4
    assert conv["flops"] == CONV_FLOPS


def test_several_targets_and_unknown_target(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"{models_file}:tiny"
    report = json_report(capsys, spec, "--input-size", SMALL, "--target", "t4", "--target", "orin-nano")
    assert [t["name"] for t in report["targets"]] == ["t4", "jetson-orin-nano-8gb"]
    assert set(report["total"]["roofline"]) == {"t4", "jetson-orin-nano-8gb"}
    code, _, err = audit(capsys, spec, "--input-size", SMALL, "--target", "t5")
    assert_one_line_error(code, err, "unknown device 't5'")


def test_default_target_is_this_machine(
    models_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import layerprof.hardware.measure

    asked: list[str | None] = []
    here = get_device("xeon-8480plus")

    def fake_measure(device: str | None = None, **_: object) -> Any:
        asked.append(device)
        return here

    monkeypatch.setattr(layerprof.hardware.measure, "measure_device", fake_measure)
    report = json_report(capsys, f"{models_file}:tiny", "--input-size", SMALL, "--device", "cpu")
    assert asked == ["cpu"]
    assert [t["name"] for t in report["targets"]] == ["xeon-8480plus"]


def test_formats(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = [f"{models_file}:tiny", "--input-size", SMALL, "--target", "t4"]
    code, table, _ = audit(capsys, *base, "--format", "table")
    assert code == 0 and "layerprof: Tiny (1x3x16x16)" in table and "bound@t4" in table
    code, markdown, _ = audit(capsys, *base, "--format", "markdown")
    assert code == 0 and "| layer" in markdown and "|-----" in markdown
    code, csv_text, _ = audit(capsys, *base, "--format", "csv")
    assert code == 0 and csv_text.splitlines()[0].startswith("schema_version,name,kind")
    assert len(csv_text.splitlines()) == 1 + 4 + 1  # header, 4 rows, total
    code, page, _ = audit(capsys, *base, "--format", "html")
    assert code == 0 and page.startswith("<!DOCTYPE html>") and '<td class="name">conv</td>' in page


def test_output_file_and_format_from_suffix(
    models_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "report.json"
    code, out, err = audit(
        capsys, f"{models_file}:tiny", "--input-size", SMALL, "--target", "t4", "--output", str(out_file)
    )
    assert code == 0 and out == ""
    assert "json report written to" in err
    assert json.loads(out_file.read_text())["layers"][0]["flops"] == CONV_FLOPS
    code, _, err = audit(
        capsys, f"{models_file}:tiny", "--target", "t4", "--output", str(tmp_path / "no" / "dir.txt")
    )
    assert_one_line_error(code, err, "cannot write --output")


def test_plot(models_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("matplotlib")
    picture = tmp_path / "roof.png"
    code, _, err = audit(
        capsys, f"{models_file}:tiny", "--input-size", SMALL, "--target", "t4", "--plot", str(picture)
    )
    assert code == 0, err
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = audit(
        capsys, f"{models_file}:tiny", "--target", "t4", "--plot", str(tmp_path / "roof.gif")
    )
    assert_one_line_error(code, err, "must end in .png or .svg")


FOOTER = ("predicted", "memory ", "act mem:")  # the footer lines after the table


def test_depth_sort_top(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["torchvision:resnet18", "--input-size", "1,3,64,64", "--target", "t4"]
    code, out, _ = audit(capsys, *base, "--depth", "1")
    names = [line.split()[0] for line in out.splitlines()[4:] if line and not line.startswith(FOOTER)]
    assert names == [
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "fc",
        "total",
    ]
    code, out, _ = audit(capsys, *base, "--depth", "1", "--sort", "params", "--top", "2")
    names = [line.split()[0] for line in out.splitlines()[4:] if line and not line.startswith(FOOTER)]
    # params: layer4 8.39M, layer3 2.1M, then the other 8 rows folded into one
    assert names == ["layer4", "layer3", "(8", "total"]
    code, _, err = audit(capsys, *base, "--depth", "-1")
    assert_one_line_error(code, err, "depth must be a non-negative int")


def test_quiet(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = [f"{models_file}:tiny", "--input-size", SMALL, "--target", "t4", "--quiet"]
    code, out, err = audit(capsys, *base, "--max-gflops", "1")
    assert (code, out, err) == (0, "", "")
    code, out, err = audit(capsys, *base, "--max-gflops", "0.0001")
    assert code == 1 and out == ""
    assert err.splitlines()[0].startswith("FAIL max_gflops")


def test_usage_errors_exit_2(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"{models_file}:tiny"
    for argv in (
        [spec, "--dtype", "fp8"],
        [spec, "--input-size", "1,3,zero"],
        [spec, "--format", "pdf"],
        [spec, "--top", "0"],
        [spec, "--max-params", "many"],
        [],
    ):
        code, _, err = audit(capsys, *argv)
        assert code == 2, argv
        # one line naming the problem and pointing at --help, not argparse's usage block
        assert len(err.strip().splitlines()) == 1 and "--help" in err, argv
        assert "usage:" not in err and "Traceback" not in err
    code, _, err = audit(capsys, spec, "--target", "t4", "--max-memory-bound-share", "1.5")
    assert_one_line_error(code, err, "max_memory_bound_share is a share between 0 and 1")
    code, _, err = audit(capsys, spec, "--target", "t4", "--model-arg", "3=x")
    assert_one_line_error(code, err, "must be key=value")


def test_device_cuda_without_cuda(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = audit(capsys, f"{models_file}:tiny", "--target", "t4", "--device", "cuda", "--time")
    assert_one_line_error(code, err, "no CUDA device")


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = audit(capsys, "--help")
    assert code == 0
    for option in ("--input-size", "--max-latency-ms", "--min-roofline-efficiency", "--config", "--plot"):
        assert option in out


# -- budgets -----------------------------------------------------------------------------------


def _t4_predicted_ms(models_file: Path, capsys: pytest.CaptureFixture[str]) -> float:
    report = json_report(capsys, f"{models_file}:tiny", "--input-size", SMALL, "--target", "t4")
    return float(report["total"]["roofline"]["t4"]["roofline_time_ms"])


def test_budgets_pass_and_fail(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = [f"{models_file}:tiny", "--input-size", SMALL, "--target", "t4"]
    total_flops = CONV_FLOPS + 2048 + 2048 + 68  # conv, relu (8*16*16), pool (8*16*16), fc = 114756
    code, _, err = audit(capsys, *base, "--max-gflops", "1", "--max-params", "1K")
    assert code == 0
    assert "all 2 budget checks hold" in err
    # 114756 FLOPs against 0.0001 GFLOPs = 100000 FLOPs: over by 14.756%
    code, _, err = audit(capsys, *base, "--max-gflops", "0.0001")
    assert code == 1
    assert f"over by {(total_flops - 100000) / 100000:.1%}" in err
    # 252 params against 200: over by 26.0%
    code, _, err = audit(capsys, *base, "--max-params", "200")
    assert code == 1
    assert "FAIL max_params: 252 params > limit 200 params, over by 26.0% (counted)" in err


def test_latency_and_memory_share_budgets(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predicted = _t4_predicted_ms(models_file, capsys)
    base = [f"{models_file}:tiny", "--input-size", SMALL, "--target", "t4"]
    code, _, err = audit(capsys, *base, "--max-latency-ms", str(predicted * 2))
    assert code == 0
    code, _, err = audit(capsys, *base, "--max-latency-ms", str(predicted / 2))
    assert code == 1
    assert "FAIL max_latency_ms @ t4" in err and "over by 100.0% (predicted)" in err
    # DRAM-only, every row of this tiny model is memory-bound on a T4: the share is 100%
    code, _, err = audit(capsys, *base, "--no-cache-model", "--max-memory-bound-share", "0.5")
    assert code == 1
    assert "FAIL max_memory_bound_share @ t4: 100.0% > limit 50.0%, over by 100.0% (predicted)" in err
    # With the cache model each of its kernels is bound by the T4's 2 us launch floor instead
    code, _, err = audit(capsys, *base, "--max-memory-bound-share", "0.5")
    assert code == 0, err


def test_min_roofline_efficiency_needs_time(models_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = audit(capsys, f"{models_file}:tiny", "--target", "t4", "--min-roofline-efficiency", "0.5")
    assert_one_line_error(code, err, "needs --time")


def test_time_measures_on_this_machine(
    models_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import layerprof.hardware.measure

    # target auto is this machine, measured: a stand-in spec keeps the test from benchmarking the CPU
    here = replace(get_device("xeon-8480plus"), name="local-cpu", aliases=(), measured=True)
    monkeypatch.setattr(layerprof.hardware.measure, "measure_device", lambda device=None, **_: here)
    base = [
        f"{models_file}:tiny",
        "--input-size",
        SMALL,
        "--time",
        "--device",
        "cpu",
        "--warmup",
        "1",
        "--repeat",
        "3",
    ]
    report = json_report(capsys, *base, "--target", "t4")
    assert report["total"]["time_ms"] > 0
    assert all(r["time_ms"] is not None for r in report["layers"])
    # measured latency: one result, no target; efficiency: only on the target that is this machine
    code, _, err = audit(
        capsys,
        *base,
        "--target",
        "auto",
        "--target",
        "t4",
        "--max-latency-ms",
        "1e6",
        "--min-roofline-efficiency",
        "1e-9",
    )
    assert code == 0, err
    assert "ok   max_latency_ms:" in err and "(measured)" in err
    assert "ok   min_roofline_efficiency @ local-cpu" in err and "min_roofline_efficiency @ t4" not in err
    code, _, err = audit(capsys, *base, "--target", "t4", "--min-roofline-efficiency", "0.5")
    assert_one_line_error(code, err, "add target 'auto'")
    code, _, err = audit(capsys, *base, "--target", "t4", "--max-latency-ms", "1e-9")
    assert code == 1 and "FAIL max_latency_ms:" in err
    code, _, err = audit(capsys, *base, "--target", "t4", "--dtype", "int8")
    assert_one_line_error(code, err, "cannot run it")


# -- config files ------------------------------------------------------------------------------


def test_pyproject_budgets_and_command_line_override(
    models_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.layerprof]\ntarget = ["t4"]\ninput-size = [1, 3, 16, 16]\n'
        "max-gflops = 0.0001\nmax_params = 1000\n",
        encoding="utf-8",
    )
    code, out, err = audit(capsys, f"{models_file}:tiny")
    assert code == 1  # 114756 FLOPs > 100000
    assert "FAIL max_gflops" in err and "ok   max_params" in err
    assert "(1x3x16x16)" in out and "bound@t4" in out
    code, _, err = audit(capsys, f"{models_file}:tiny", "--max-gflops", "1")
    assert code == 0, err


def test_config_file_option(models_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    budget_file = tmp_path / "budgets.toml"
    budget_file.write_text(
        'target = "orin-nano"\ndtype = "fp16"\ninput-size = "1,3,16,16"\nmax-params = 100\n'
        "[model-args]\nwidth = 16\n"
    )
    code, out, err = audit(capsys, f"{models_file}:tiny", "--config", str(budget_file), "--format", "json")
    assert code == 1 and "FAIL max_params" in err
    report = json.loads(out)
    assert report["inputs"]["positional"][0] == {"shape": [1, 3, 16, 16], "dtype": "float16"}
    assert [t["name"] for t in report["targets"]] == ["jetson-orin-nano-8gb"]
    assert row(report, "conv")["flops"] == 2 * 16 * 16 * 16 * 3 * 9  # width 16 from [model-args]
    bad = tmp_path / "bad.toml"
    bad.write_text("max-gflop = 3\n")
    code, _, err = audit(capsys, f"{models_file}:tiny", "--config", str(bad))
    assert_one_line_error(code, err, "unknown layerprof setting(s) max_gflop")
    code, _, err = audit(capsys, f"{models_file}:tiny", "--config", str(tmp_path / "missing.toml"))
    assert_one_line_error(code, err, "does not exist")
    broken = tmp_path / "broken.toml"
    broken.write_text("max-gflops = = 3\n")
    code, _, err = audit(capsys, f"{models_file}:tiny", "--config", str(broken))
    assert_one_line_error(code, err, "not valid TOML")


def test_read_config_forms(tmp_path: Path) -> None:
    assert read_config(directory=tmp_path) == AuditConfig()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\n')
    assert read_config(directory=tmp_path) == AuditConfig()  # no [tool.layerprof]: nothing to read
    pyproject.write_text(
        '[tool.layerprof]\ninput-size = [[1, 3, 8, 8], "1,1,8,8"]\ndevice = "cpu"\n'
        "max-latency-ms = 2\n[tool.layerprof.model-args]\nwidth = 4\n"
    )
    config = read_config(directory=tmp_path)
    assert config.input_sizes == ((1, 3, 8, 8), (1, 1, 8, 8))
    assert config.device == "cpu"
    assert dict(config.budgets) == {"max_latency_ms": 2.0}
    assert dict(config.model_args) == {"width": 4}
    pyproject.write_text('[tool.layerprof]\nmax-gflops = "three"\n')
    with pytest.raises(InvalidArgumentError, match="max-gflops must be a number"):
        read_config(directory=tmp_path)
    assert parse_input_size("1, 3, 224, 224") == (1, 3, 224, 224)
    with pytest.raises(InvalidArgumentError):
        parse_input_size("1,0,2")


def test_without_a_toml_parser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Python 3.10 without tomli: only a file that must be read is an error.
    import layerprof.core.toml

    monkeypatch.setattr(layerprof.core.toml, "toml_parser", lambda: None)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert read_config(directory=tmp_path) == AuditConfig()
    (tmp_path / "pyproject.toml").write_text("[tool.layerprof]\nmax-gflops = 1\n")
    with pytest.raises(InvalidArgumentError, match="needs a TOML parser"):
        read_config(directory=tmp_path)
    with pytest.raises(InvalidArgumentError, match="needs a TOML parser"):
        read_config(tmp_path / "pyproject.toml")


# -- progress bar ------------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_only_on_a_terminal(
    models_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = [f"{models_file}:tiny", "--input-size", SMALL, "--target", "t4", "--target", "a100"]
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["audit", *base]) == 0
    drawn = terminal.getvalue()
    assert "\rlayerprof audit [" in drawn.replace("\x1b[2K", "")
    assert "loading" in drawn and "counting FLOPs and bytes" in drawn
    *_, last, after = drawn.split("\r")
    assert last.strip() == "" and after == ""  # the line is blanked at the end, the cursor at its start
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main(["audit", *base, "--quiet"]) == 0
    assert quiet.getvalue() == ""
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["audit", *base]) == 0  # pytest's capture is no terminal: no bar
    assert "\r" not in capsys.readouterr().err


def test_progress_counts_steps() -> None:
    stream = _Terminal()
    with Progress(2, stream=stream) as bar:
        assert bar.line("x").startswith("layerprof [------------------------] 0/2")
        bar.step("one")
        bar.step("two")
        assert bar.done == 1
        assert "[############------------] 1/2" in bar.line("two")
    with pytest.raises(ValueError):
        Progress(0, stream=stream)


def test_budgets_module_is_the_cli_one() -> None:
    # The CLI and the library check budgets with the same code.
    from layerprof.cli import audit as audit_cli

    assert audit_cli.check is budgets_module.check


@pytest.mark.parametrize("text", ["1,3,x", "1,3,,64", "1,3,x,64", "1,3,-2,4"])
def test_a_mistyped_input_size_is_named_not_shortened(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "torchvision:resnet18", "--input-size", text, "--target", "t4"]) == 2
    err = capsys.readouterr().err
    assert repr(text) in err and "positive ints" in err
