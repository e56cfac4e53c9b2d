"""``layerprof devices``: the sources column, the ``auto`` line (this machine, measured or not yet),
``--sources``, any tabulate format; and unknown devices pointing at the command."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from layerprof.cli import main
from layerprof.cli.device_table import short_sources
from layerprof.errors import UnknownDeviceError
from layerprof.hardware.identity import identify, resolve_device
from layerprof.hardware.measure import cache_path
from layerprof.hardware.specs import DeviceSpec
from layerprof.hardware.table import get_device, list_devices


@pytest.fixture(autouse=True)
def _empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads (or writes) the user's measurement cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LAYERPROF_CACHE_DIR", str(cache))
    return cache


def devices(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["devices", *argv]) == 0
    return capsys.readouterr().out


def line_of(out: str, name: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"{name} "))


def toy(**changes: object) -> DeviceSpec:
    spec = DeviceSpec(
        name="toy",
        full_name="Toy board",
        kind="gpu",
        memory_bandwidth_bytes_per_s=100e9,
        matrix_peak_flops_per_s={"float32": 2e12},
        vector_peak_flops_per_s={"float32": 1e12},
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


# -- the sources column ---------------------------------------------------------------------------------


def test_every_device_line_names_its_sources(capsys: pytest.CaptureFixture[str]) -> None:
    out = devices(capsys)
    header = out.splitlines()[0].split()
    assert header[-1] == "sources"
    # whitepaper, docs and www: one site; the L2 bandwidth estimate cites a microbenchmark paper
    assert line_of(out, "gtx1080").endswith("nvidia.com, arxiv.org")
    assert line_of(out, "xeon-e5345").endswith("intel.com, doi.org, pytorch.org")
    for device in list_devices():
        assert short_sources(device), f"{device.name} cites nothing"
        assert len(short_sources(device)) <= 40, short_sources(device)  # shortened: sites, not titles


def test_sources_are_shortened_to_sites_dates_and_notes() -> None:
    cited = toy(
        sources={
            "memory_bandwidth_bytes_per_s": "100 GB/s, Toy datasheet, https://images.example.com/toy.pdf",
            "matrix_peak_flops_per_s.float32": "2 TFLOP/s, https://www.example.com/toy; https://doi.org/10.1/x",
            "vector_peak_flops_per_s.float32": "half of the matrix figure, measured in our lab last spring",
        }
    )
    assert short_sources(cited) == "example.com, doi.org, half of the matrix figure..."
    measured = toy(
        measured=True,
        sources={
            "memory_bandwidth_bytes_per_s": "measured by layerprof.measure_device on 2026-01-02, torch 2"
        },
    )
    assert short_sources(measured) == "measured 2026-01-02"
    assert short_sources(toy(measured=True)) == "measured"
    assert short_sources(toy()) == ""


def test_sources_prints_them_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    out = devices(capsys, "--sources")
    t4 = get_device("t4")
    assert f"  memory_bandwidth_bytes_per_s: {t4.sources['memory_bandwidth_bytes_per_s']}" in out
    assert "\nt4:\n" in out


def test_a_device_file_without_sources_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"schema_version": 1, "devices": [toy().to_dict()]}), encoding="utf-8")
    out = devices(capsys, "--file", str(path), "--sources")
    assert (
        line_of(out, "toy").split()[-1] == "20"
    )  # the last cell is the fp32 ridge (2e12 / 100e9): no sources cell
    assert "toy:\n  (no sources given)" in out


@pytest.mark.parametrize("fmt", ["github", "grid", "plain", "tsv"])
def test_any_tabulate_format_keeps_the_column(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = devices(capsys, "--format", fmt)
    header = next(line for line in out.splitlines() if "name" in line)
    assert "sources" in header and "ridge fp16" in header
    assert "nvidia.com" in next(line for line in out.splitlines() if "gtx1080" in line)


# -- auto -------------------------------------------------------------------------------------------------


def test_auto_comes_first_and_says_how_to_measure(capsys: pytest.CaptureFixture[str]) -> None:
    here = identify(resolve_device(None))  # local-cpu on a machine without a GPU
    out = devices(capsys)
    body = out.splitlines()[2]
    assert body.startswith("auto ") and f"this machine ({here.name})" in body
    assert body.rstrip().endswith("not measured yet: layerprof measure")
    assert f"cached as {here.name!r} (not measured yet)" in out


def test_auto_shows_the_cached_measurement(_empty_cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    device = resolve_device(None)
    here = identify(device)
    spec = replace(
        get_device("xeon-8480plus"),
        name=here.name,
        aliases=(),
        measured=True,
        memory_bandwidth_bytes_per_s=123.4e9,
        sources={"memory_bandwidth_bytes_per_s": "measured by layerprof.measure_device on 2026-03-04, torch"},
    )
    path = cache_path(device)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"schema_version": 1, "devices": [spec.to_dict()]}), encoding="utf-8")
    out = devices(capsys)
    auto = line_of(out, "auto")
    assert "123.4" in auto.split() and auto.rstrip().endswith("measured 2026-03-04")
    assert "(its cached measurement)" in out


def test_local_cpu_is_what_auto_is_called_not_a_target() -> None:
    # measure_device() names a CPU's spec local-cpu; the table has no such entry, so it is shown only
    # as what auto resolves to, and naming it as a target points at `layerprof devices` and auto.
    with pytest.raises(UnknownDeviceError) as caught:
        get_device("local-cpu")
    assert "'auto' is this machine" in str(caught.value)


# -- unknown devices ----------------------------------------------------------------------------------------


def test_an_unknown_device_points_at_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UnknownDeviceError, match="`layerprof devices` lists them all"):
        get_device("t5")
    assert main(["audit", "torchvision:resnet18", "--target", "t5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "closest: t4" in err[0] and "`layerprof devices`" in err[0]
