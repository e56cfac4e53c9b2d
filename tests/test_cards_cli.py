"""``layerprof cards``: the table, its formats, prices from the flag and a file, and bad input (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import layerprof
from layerprof.cli import main

TARGETS = "t4,l4,rtx4090"


@pytest.fixture
def net(tmp_path: Path) -> str:
    file = tmp_path / "tinynet.py"
    file.write_text(
        "from torch import nn\n\n"
        "def build():\n"
        "    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))\n",
        encoding="utf-8",
    )
    return f"{file}:build"


def cards(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["cards", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def as_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    code, out, err = cards(capsys, *argv, "--format", "json")
    assert code == 0, err
    document: dict[str, Any] = json.loads(out)
    return document


def rows(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["device"]: r for r in document["rows"]}


def test_table_marks_the_best_and_shows_dash_for_missing_prices(
    net: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cards(capsys, net, "--input-size", "1,3,32,32", "--target", TARGETS, "--sort", "cost")
    assert code == 0
    lines = {
        line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in TARGETS
    }
    assert "$/hour" in out and "$ per 1M img" in out
    # rtx4090: a list price, no hourly one; t4 and l4: typical hourly prices, no list price
    rtx = lines["rtx4090"].split()
    assert rtx[-1] == "-" and rtx[-2] == "-" and "$1,599" in lines["rtx4090"]
    assert "$0.00 " not in out and not out.rstrip().endswith("$0.00")  # small costs keep 3 figures
    assert "(typ.)" in lines["t4"]
    best = [line for line in out.splitlines() if " * " in line or line.split()[1:2] == ["*"]]
    assert len(best) == 1
    document = as_json(capsys, net, "--input-size", "1,3,32,32", "--target", TARGETS, "--sort", "cost")
    by_device = rows(document)
    assert by_device["rtx4090"]["usd_per_million_images"] is None
    assert by_device["rtx4090"]["price_per_hour_usd"] is None
    assert by_device["t4"]["images_per_s_per_kusd"] is None
    cheapest = min(
        (r for r in document["rows"] if r["usd_per_million_images"]),
        key=lambda r: r["usd_per_million_images"],
    )
    assert document["best"] == cheapest["device"] and best[0].split()[0] == cheapest["device"]
    assert document["answer"] in out.replace("\n", " ") or document["answer"][:60] in out


def test_flag_prices_override_the_table_and_the_file(
    net: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = rows(as_json(capsys, net, "--target", TARGETS))
    assert table["t4"]["price_per_hour_usd"] == layerprof.get_device("t4").price_per_hour_usd
    prices = tmp_path / "prices.toml"
    prices.write_text("[price_per_hour_usd]\nt4 = 0.2\nrtx4090 = 0.4\n", encoding="utf-8")
    filed = rows(as_json(capsys, net, "--target", TARGETS, "--prices", str(prices)))
    assert filed["t4"]["price_per_hour_usd"] == 0.2 and filed["rtx4090"]["price_per_hour_usd"] == 0.4
    assert filed["l4"]["hourly_price_from"] == "table"
    flagged = rows(
        as_json(capsys, net, "--target", TARGETS, "--prices", str(prices), "--price-per-hour", "T4=0.35")
    )
    assert flagged["t4"]["price_per_hour_usd"] == 0.35 and flagged["t4"]["hourly_price_from"] == "given"
    assert flagged["rtx4090"]["price_per_hour_usd"] == 0.4
    per_s = flagged["t4"]["images_per_s"]
    assert flagged["t4"]["usd_per_million_images"] == pytest.approx(0.35 * 1e6 / (per_s * 3600))
    as_file = tmp_path / "prices.json"
    as_file.write_text(json.dumps({"l4": 9.5}), encoding="utf-8")
    assert (
        rows(as_json(capsys, net, "--target", TARGETS, "--prices", str(as_file)))["l4"]["price_per_hour_usd"]
        == 9.5
    )


@pytest.mark.parametrize(
    "fmt, marker", [("csv", "device,batch,ms/step"), ("markdown", "| device"), ("html", "<table")]
)
def test_formats(net: str, capsys: pytest.CaptureFixture[str], fmt: str, marker: str) -> None:
    code, out, _ = cards(capsys, net, "--target", TARGETS, "--format", fmt)
    assert code == 0 and marker in out and "rtx4090" in out


def test_max_batch_and_training(net: str, capsys: pytest.CaptureFixture[str]) -> None:
    document = as_json(
        capsys, net, "--target", "t4,jetson-orin-nano-8gb", "--max-batch", "--optimizer", "adam"
    )
    assert document["training"] is True and document["optimizer"] == "adam"
    by_device = rows(document)
    assert by_device["t4"]["max_batch"] > by_device["jetson-orin-nano-8gb"]["max_batch"] > 1
    assert all(r["batch"] == r["max_batch"] and r["fits"] for r in document["rows"])


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--price-per-hour", "t5=0.3"], ["'t5'", "t4"]),
        (["--price-per-hour", "t4=-0.3"], ["'t4'", "-0.3"]),
        (["--price-per-hour", "t4=0"], ["'t4'", "0"]),
        (["--price-per-hour", "t4=cheap"], ["t4", "'cheap'"]),
        (["--price-per-hour", "t4"], ["'t4'", "DEVICE=USD"]),
        (["--price-per-hour", "a100-40gb=1.1"], ["'a100-40gb'", "not among the devices compared"]),
        (["--sort", "speed"], ["'speed'", "cost"]),
        (["--format", "yaml"], ["'yaml'", "markdown"]),
        (["--batch", "0"], ["--batch", "0"]),
        (["--target", "t4,h1000"], ["'h1000'", "closest"]),
    ],
)
def test_bad_input_exits_2_naming_the_value(
    net: str, capsys: pytest.CaptureFixture[str], flags: list[str], named: list[str]
) -> None:
    code, out, err = (
        cards(capsys, net, "--target", TARGETS, *flags)
        if "--target" not in flags
        else cards(capsys, net, *flags)
    )
    assert code == 2 and out == ""
    assert err.startswith("layerprof cards: error:"), err
    for word in named:
        assert word in err, err


def test_bad_prices_file_exits_2(net: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prices = tmp_path / "p.json"
    prices.write_text(json.dumps({"t4": "free"}), encoding="utf-8")
    code, _, err = cards(capsys, net, "--target", TARGETS, "--prices", str(prices))
    assert code == 2 and "'free'" in err
    code, _, err = cards(capsys, net, "--target", TARGETS, "--prices", str(tmp_path / "missing.json"))
    assert code == 2 and "missing.json" in err
    code, _, err = cards(capsys, net, "--batch", "2", "--max-batch")
    assert code == 2 and "--max-batch" in err
