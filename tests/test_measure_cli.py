"""``layerprof measure`` (and the demo's ``auto``) through main(argv): units, the levels table, progress
on stderr, --threads, --refresh and --no-cache, with the benchmarks replaced by the fakes of
test_measure_ceilings.py (the measuring itself is tested there)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from layerprof.cli import main
from layerprof.hardware.files import load_devices
from test_measure_ceilings import UNSTEADY, Fakes
from test_measure_ceilings import fakes as fakes  # the fixture, re-exported for pytest


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "cache"
    monkeypatch.setenv("LAYERPROF_CACHE_DIR", str(directory))
    return directory


def _row(out: str, first: str) -> list[str]:
    """The cells of the printed line that starts with ``first``."""
    return next(line.split()[1:] for line in out.splitlines() if line.split()[:1] == [first])


def _files(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.glob("*.json")} if directory.exists() else {}


def test_measure_prints_gflops_gbs_and_the_levels(
    fakes: Fakes, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["measure", "--device", "cpu", "--threads", "1"]) == 0
    out, err = capsys.readouterr()
    assert "measured (1 torch thread)" in out
    assert "matrix GFLOP/s" in out and "vector GFLOP/s" in out
    assert _row(out, "float32") == ["100", "20"]  # 100e9 and 20e9 FLOP/s
    assert _row(out, "L1") == ["32", "KiB", "201", "GB/s"]
    assert _row(out, "L2") == ["1", "MiB", "115", "GB/s"]
    assert _row(out, "LLC") == ["32", "MiB", "97", "GB/s"]
    assert _row(out, "DRAM")[-2:] == ["29", "GB/s"]
    assert "launch/dispatch floor: 5 us per kernel" in out
    (path,) = cache_dir.glob("*.json")
    assert f"cached in {path}" in out
    # progress, one line per step on a stream that is not a terminal
    assert "layerprof measure: [1/" in err and "matrix peak float32" in err and "bandwidth at 1 GiB" in err


def test_measure_reads_the_cache_then_refresh_rewrites_it(
    fakes: Fakes, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["measure", "--device", "cpu", "--threads", "1"]) == 0
    capsys.readouterr()
    first = _files(cache_dir)
    fakes.gemm_flops_per_s = 250e9
    assert main(["measure", "--device", "cpu", "--threads", "1"]) == 0
    out, err = capsys.readouterr()
    assert "read from the cache" in out and _row(out, "float32")[0] == "100"
    assert err == ""  # nothing measured, no progress
    assert _files(cache_dir) == first
    assert main(["measure", "--device", "cpu", "--threads", "1", "--refresh"]) == 0
    out, err = capsys.readouterr()
    assert _row(out, "float32")[0] == "250" and "bandwidth at" in err
    (path,) = cache_dir.glob("*.json")
    assert load_devices(path)[0].matrix_peak_flops_per_s["float32"] == 250e9  # rewritten


def test_measure_no_cache_writes_nothing(
    fakes: Fakes, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["measure", "--device", "cpu", "--no-cache", "--threads", "1"]) == 0
    assert "not cached (--no-cache" in capsys.readouterr().out
    assert _files(cache_dir) == {}


def test_measure_says_an_unsteady_result_is_not_cached(
    fakes: Fakes, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fakes.gemm_timing = UNSTEADY
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said in the output and the log, not as a Python warning too
        assert main(["measure", "--device", "cpu", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "NOT cached" in out and "UNSTEADY" in out
    assert _files(cache_dir) == {}


def test_measure_quiet_shows_no_progress(
    fakes: Fakes, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["measure", "--device", "cpu", "--threads", "2", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "cached in" in out and "__t2__" in out


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5"])
def test_measure_refuses_a_bad_thread_count_by_name(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["measure", "--threads", value]) == 2
    err = capsys.readouterr().err
    assert f"--threads must be a whole number of at least 1, got {value!r}" in err
    assert len(err.strip().splitlines()) == 1


def test_demo_measures_auto_with_its_threads_and_shows_progress(
    fakes: Fakes, cache_dir: Path, capsys: pytest.CaptureFixture[str], one_torch_thread: None
) -> None:
    code = main(["demo", "--threads", "1", "--no-time", "--no-plot", "--no-crosscheck"])
    assert code == 0
    out, err = capsys.readouterr()
    assert "layerprof demo: measuring this machine: [1/" in err
    assert fakes.threads_seen and set(fakes.threads_seen) == {1}  # one GEMM per default dtype
    assert "local-cpu" in out
    (path,) = cache_dir.glob("*.json")
    assert "__t1__" in path.name
    assert torch.get_num_threads() == 1
