"""Bad command lines end in one line on stderr and exit 2: never a traceback, never exit 1 (the
"budget failed" code), never the whole usage block."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from layerprof.cli import main


def _binary(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_bytes(b"\x00\xff\xfe\x89PNG\r\n\x1a\n" * 64)
    return str(path)


def _nested(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.write_text('{"devices": ' + "[" * 50_000 + "]" * 50_000 + "}")
    return str(path)


CASES: list[tuple[str, Callable[[Path], list[str]], str]] = [
    ("no-model", lambda t: ["audit"], "the following arguments are required: MODEL"),
    ("unknown-command", lambda t: ["nope"], "invalid choice: 'nope'"),
    ("unknown-option", lambda t: ["devices", "--colour"], "unrecognized arguments: --colour"),
    ("devices-format", lambda t: ["devices", "--format", "nonsense"], "invalid choice: 'nonsense'"),
    (
        "huge-input",
        lambda t: ["audit", "torchvision:resnet18", "--input-size", f"{10**20},3,224,224"],
        "past what a tensor can address",
    ),
    (
        "float-input",
        lambda t: ["audit", "torchvision:resnet18", "--input-size", "1e18,3,224,224"],
        "positive ints",
    ),
    (
        "binary-config",
        lambda t: ["audit", "torchvision:resnet18", "--config", _binary(t, "c.toml")],
        "c.toml",
    ),
    ("binary-device-file", lambda t: ["devices", "--file", _binary(t, "d.toml")], "d.toml"),
    ("nested-device-file", lambda t: ["devices", "--file", _nested(t, "d.json")], "d.json"),
    ("bad-dtype", lambda t: ["audit", "torchvision:resnet18", "--dtype", "float13"], "float13"),
    (
        "time-too-big",  # refused from its size, before anything is allocated
        lambda t: [
            "audit",
            "torchvision:resnet18",
            "--time",
            "--target",
            "t4",
            "--input-size",
            "10000000,3,224,224",
        ],
        "GiB free; time a smaller --input-size",
    ),
]


@pytest.mark.parametrize(("argv", "needle"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: Callable[[Path], list[str]], needle: str
) -> None:
    assert main(argv(tmp_path)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert needle in lines[0]
    assert "Traceback" not in captured.err and "usage:" not in captured.err
    if "error: argument" in lines[0] or "arguments" in lines[0]:
        assert "--help" in lines[0]


@pytest.mark.parametrize("spelling", ["float16", "half", "fp16", "bfloat16", "bf16", "float32"])
def test_the_cli_takes_every_dtype_spelling_the_api_takes(
    capsys: pytest.CaptureFixture[str], spelling: str
) -> None:
    argv = [
        "audit",
        "torchvision:resnet18",
        "--input-size",
        "1,3,32,32",
        "--dtype",
        spelling,
        "--target",
        "t4",
    ]
    assert main([*argv, "--quiet"]) == 0, capsys.readouterr().err
