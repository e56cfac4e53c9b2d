"""layerprof.analysis.compare and ``layerprof compare``: rows matched by (phase, name), exactly the
changed rows listed, totals and regressions.

Two factories differ only in conv2's kernel (3x3 with padding 1 against 5x5 with padding 2, so every
shape stays the same). On a 1x3x16x16 input, fp32:
    conv2 3x3: 2 * 8 * 16 * 16 * 8 * 9  = 294912 FLOPs, weight 8*8*3*3*4 = 2304 B
    conv2 5x5: 2 * 8 * 16 * 16 * 8 * 25 = 819200 FLOPs, weight 8*8*5*5*4 = 6400 B
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from torch import nn

import layerprof
from layerprof.analysis.compare import Change, compare, load_report, parse_fraction, render
from layerprof.cli import main
from layerprof.errors import InvalidArgumentError

MODELS = """
from torch import nn


def _net(kernel):
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(8, 8, kernel, padding=kernel // 2, bias=False),
        nn.ReLU(),
    )


def k3():
    return _net(3)


def k5():
    return _net(5)
"""

K3_FLOPS = 2 * 8 * 16 * 16 * 8 * 9  # 294912
K5_FLOPS = 2 * 8 * 16 * 16 * 8 * 25  # 819200


def net(kernel: int, extra: bool = False) -> nn.Module:
    layers = [
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(8, 8, kernel, padding=kernel // 2, bias=False),
        nn.ReLU(),
    ]
    if extra:
        layers.append(nn.BatchNorm2d(8))
    return nn.Sequential(*layers)


def report_dict(model: nn.Module, target: str | list[str] = "t4") -> dict[str, Any]:
    return layerprof.analyze(model, input_size=(1, 3, 16, 16), target=target).to_dict()


@pytest.fixture
def k3_k5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path]:
    source = tmp_path / "kernels.py"
    source.write_text(MODELS, encoding="utf-8")
    paths = []
    for name in ("k3", "k5"):
        out = tmp_path / f"{name}.json"
        argv = [
            "audit",
            f"{source}:{name}",
            "--input-size",
            "1,3,16,16",
            "--target",
            "t4",
            "--output",
            str(out),
        ]
        assert main(argv) == 0
        paths.append(out)
    capsys.readouterr()
    return paths[0], paths[1]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["compare", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_report_against_itself_shows_no_change(
    k3_k5: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, _ = k3_k5
    comparison = compare(load_report(old), load_report(old))
    assert comparison.identical
    assert (comparison.changed, comparison.added, comparison.removed) == ((), (), ())
    assert len(comparison.unchanged) == 4
    code, out, err = run(capsys, str(old), str(old), "--max-regression", "0%")
    assert (code, err) == (0, "")
    assert "no change" in out and "0 changed, 0 added, 0 removed, 4 unchanged" in out


def test_kernel_size_change_is_exactly_the_changed_row(
    k3_k5: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = k3_k5
    comparison = compare(load_report(old), load_report(new))
    assert [r.name for r in comparison.changed] == ["2"]
    assert (comparison.added, comparison.removed) == ((), ())
    conv2 = comparison.changed[0]
    assert (conv2.flops.old, conv2.flops.new) == (K3_FLOPS, K5_FLOPS)
    assert conv2.flops.growth == pytest.approx(25 / 9 - 1)  # 819200 / 294912 - 1
    assert conv2.bytes.delta == 8 * 8 * 5 * 5 * 4 - 8 * 8 * 3 * 3 * 4  # only the weight grew: 6400 - 2304
    assert conv2.params.delta == 8 * 8 * 25 - 8 * 8 * 9  # 1024
    assert comparison.total.flops.delta == K5_FLOPS - K3_FLOPS
    code, out, _ = run(capsys, str(old), str(new))
    assert code == 0
    table_rows = [
        line.split()[0] for line in out.splitlines()[3:] if line and not line.startswith("predicted")
    ]
    assert table_rows == ["2", "total"]
    assert "295K -> 819K (+177.8%)" in out  # 819200 / 294912 - 1 = 1.7778


def test_max_regression(k3_k5: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    old, new = k3_k5
    code, _, err = run(capsys, str(old), str(new), "--max-regression", "5%")
    assert code == 1
    lines = err.splitlines()
    assert lines[0].startswith("REGRESSION total FLOPs")
    assert lines[1].startswith("REGRESSION total bytes")
    assert len(lines) == 2  # untimed reports: no time regression
    assert run(capsys, str(old), str(new), "--max-regression", "0.05")[0] == 1
    # going back to 3x3 is a shrink, never a regression
    assert run(capsys, str(new), str(old), "--max-regression", "0.05")[0] == 0
    assert run(capsys, str(old), str(new), "--max-regression", "500%")[0] == 0


def test_regression_thresholds_are_exclusive() -> None:
    old = report_dict(net(3))
    grown = copy.deepcopy(old)
    grown["total"]["flops"] = int(old["total"]["flops"] * 1.05)
    comparison = compare(old, grown)
    assert comparison.regressions(0.05) == ()  # growth of exactly 5% is allowed
    (regression,) = comparison.regressions(0.04)
    assert regression.quantity == "flops"
    assert regression.growth == pytest.approx(0.05, abs=1e-6)


def test_time_regressions_when_both_are_timed() -> None:
    old = report_dict(net(3))
    new = copy.deepcopy(old)
    old["total"]["time_ms"], new["total"]["time_ms"] = 10.0, 11.0
    (regression,) = compare(old, new).regressions(0.05)
    assert (regression.quantity, regression.old, regression.new) == ("time_ms", 10.0, 11.0)
    assert regression.growth == pytest.approx(0.1)  # 11 / 10 - 1
    assert regression.describe() == "REGRESSION total time: 10.00 ms -> 11.00 ms, +10.0% > allowed 5.0%"
    new["total"]["time_ms"] = None
    assert compare(old, new).regressions(0.05) == ()


def test_added_and_removed_rows() -> None:
    old, new = report_dict(net(3)), report_dict(net(3, extra=True))
    comparison = compare(old, new)
    assert [r.name for r in comparison.added] == ["4"]
    assert comparison.changed == () and comparison.removed == ()
    text = render(comparison)
    assert "added: 4" in text
    back = compare(new, old)
    assert [r.name for r in back.removed] == ["4"]
    assert "removed: 4" in render(back)


def test_bound_changes_per_shared_target() -> None:
    old = report_dict(net(3), ["t4", "gtx1080"])
    new = copy.deepcopy(old)
    relu = next(r for r in new["layers"] if r["name"] == "1")
    relu["roofline"]["t4"]["bound"] = "compute"
    del new["targets"][1]  # gtx1080 only in the old report: not compared
    comparison = compare(old, new)
    assert comparison.targets == ("t4",)
    (changed,) = comparison.changed
    assert changed.name == "1"
    # The tiny ReLU's one kernel is bound by the T4's 2 us launch floor.
    assert [(b.target, b.old, b.new) for b in changed.bound_changes] == [("t4", "overhead", "compute")]
    assert "t4: overhead -> compute" in render(comparison)


def test_rows_match_by_phase_and_name() -> None:
    old = report_dict(net(3))
    new = copy.deepcopy(old)
    backward = copy.deepcopy(new["layers"][0])
    backward["phase"] = "backward"
    new["layers"].append(backward)
    comparison = compare(old, new)
    assert [(r.phase, r.name) for r in comparison.added] == [("backward", "0")]
    assert "0 (backward)" in render(comparison)


def test_formats_all_and_output(
    k3_k5: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = k3_k5
    code, out, _ = run(capsys, str(old), str(new), "--format", "json")
    data = json.loads(out)
    assert code == 0
    assert data["counts"] == {"changed": 1, "added": 0, "removed": 0, "unchanged": 3}
    growth = pytest.approx(K5_FLOPS / K3_FLOPS - 1)
    assert data["rows"][0]["flops"] == {
        "old": K3_FLOPS,
        "new": K5_FLOPS,
        "delta": K5_FLOPS - K3_FLOPS,
        "growth": growth,
    }
    code, out, _ = run(capsys, str(old), str(new), "--format", "markdown", "--all")
    assert code == 0 and "| layer" in out
    assert sum(1 for line in out.splitlines() if line.startswith("| ") and "| same" in line) == 3
    target = tmp_path / "diff.txt"
    code, out, _ = run(capsys, str(old), str(new), "--output", str(target))
    assert (code, out) == (0, "")
    assert "1 changed" in target.read_text()


def test_usage_errors(k3_k5: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, _ = k3_k5
    not_json = tmp_path / "x.json"
    not_json.write_text("{nope")
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    future = tmp_path / "future.json"
    future.write_text(json.dumps({**json.loads(old.read_text()), "schema_version": 99}))
    for path, needle in (
        (tmp_path / "absent.json", "does not exist"),
        (not_json, "not a JSON file"),
        (other, "not a layerprof report"),
        (future, "schema version 99"),
    ):
        code, out, err = run(capsys, str(old), str(path))
        assert code == 2 and out == ""
        assert len(err.strip().splitlines()) == 1 and needle in err and "Traceback" not in err
    code, _, err = run(capsys, str(old), str(old), "--max-regression", "lots")
    assert code == 2 and "must look like 5% or 0.05" in err


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5%", 0.05), ("0.05", 0.05), (" 12.5 % ", 0.125), ("0", 0.0), ("1", 1.0), (0.2, 0.2), ("150%", 1.5)],
)
def test_parse_fraction(text: str | float, expected: float) -> None:
    assert parse_fraction(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["5", "-1%", "abc", "inf", "nan%"])
def test_parse_fraction_refuses(text: str) -> None:
    with pytest.raises(InvalidArgumentError):
        parse_fraction(text)


def test_change_arithmetic() -> None:
    assert Change(200.0, 250.0).growth == pytest.approx(0.25)  # 250 / 200 - 1
    assert Change(0.0, 5.0).growth is None
    assert Change(None, 5.0).delta is None
    assert not Change(3.0, 3.0).differs


@pytest.mark.parametrize(
    ("path", "value"),
    [(("layers", 0, "bytes_read"), None), (("layers", 0), "oops"), (("total", "roofline"), []),
     (("layers", 0, "flops"), "12x")],
    ids=["null-field", "string-row", "list-roofline", "text-number"],
)  # fmt: skip
def test_a_damaged_report_is_a_usage_error_not_a_regression(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: tuple[Any, ...], value: Any
) -> None:
    report = layerprof.analyze(nn.Sequential(nn.Conv2d(3, 4, 3)), input_size=(1, 3, 8, 8), target="t4")
    good = report.to_dict()
    bad = json.loads(json.dumps(good))
    holder = bad
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert main(["compare", str(tmp_path / "good.json"), str(tmp_path / "bad.json")]) == 2
    err = capsys.readouterr().err
    assert "malformed" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d["total"].update(flops=None), "total is malformed: total: flops must be an integer"),
        (lambda d: d["total"].pop("flops"), "flops must be an integer from 0 to 2**63-1, got None"),
        (lambda d: d["total"].update(flops=float("nan")), "got nan"),
        (lambda d: d["total"].update(flops=10**400), "flops must be an integer from 0 to 2**63-1"),
        (lambda d: d["layers"][0].update(flops=-5), "got -5"),
        (lambda d: d["layers"][0].pop("name"), "layers[0] is malformed: a row needs a name"),
        (lambda d: d["layers"][0].update(time_ms=float("inf")), "time_ms must be a finite number"),
        (lambda d: d["layers"][0].update(phase="sideways"), "phase must be forward, backward or step"),
    ],
    ids=["null-total", "missing-total", "nan", "huge", "negative", "nameless", "infinite-time", "phase"],
)
def test_a_gate_fails_closed_on_a_report_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], edit: Any, needle: str
) -> None:
    # Before: a null total.flops made --max-regression skip the check and exit 0 ("no regression").
    report = layerprof.analyze(nn.Sequential(nn.Conv2d(3, 4, 3)), input_size=(1, 3, 8, 8), target="t4")
    good = report.to_dict()
    bad = json.loads(json.dumps(good))
    for row in bad["layers"]:
        row["flops"] *= 10  # every row shows +900%
    edit(bad)
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    argv = ["compare", str(tmp_path / "good.json"), str(tmp_path / "bad.json"), "--max-regression", "5%"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_deeply_nested_json_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["compare", str(deep), str(deep)]) == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err and len(err.strip().splitlines()) == 1
