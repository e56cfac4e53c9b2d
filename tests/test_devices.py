"""The device table and DeviceSpec: every entry checked by parametrization, seed figures exact."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from pathlib import Path

import pytest
import torch

from layerprof.errors import InvalidArgumentError, InvalidDeviceSpecError, UnknownDeviceError
from layerprof.hardware.files import load_devices
from layerprof.hardware.specs import DeviceSpec, PeakFallbackWarning, normalize_dtype
from layerprof.hardware.table import device_table, get_device, list_devices, match_device_name

ALL_DEVICES = list_devices()


def _key(label: str) -> str:
    return re.sub(r"[-_\s]+", "", label.lower())


def _spec(**overrides: object) -> DeviceSpec:
    fields: dict[str, object] = {
        "name": "toy",
        "full_name": "Toy accelerator",
        "kind": "gpu",
        "memory_bandwidth_bytes_per_s": 100e9,
        "matrix_peak_flops_per_s": {"float32": 10e12, "float16": 40e12},
        "vector_peak_flops_per_s": {"float32": 5e12},
    }
    fields.update(overrides)
    return DeviceSpec(**fields)  # type: ignore[arg-type]


# --- every table entry ------------------------------------------------------------------------


# DeviceSpec refuses non-positive or non-finite figures, a missing float32 peak, an unknown kind and a
# matrix peak below the vector peak of the same dtype (tested below): the table is not re-checked for them.
@pytest.mark.parametrize("spec", ALL_DEVICES, ids=lambda spec: spec.name)
def test_table_entries_are_named_and_not_measured(spec: DeviceSpec) -> None:
    assert spec.full_name and spec.full_name != spec.name
    assert spec.name == spec.name.lower()
    assert not spec.measured


@pytest.mark.parametrize("spec", ALL_DEVICES, ids=lambda spec: spec.name)
def test_matrix_peak_at_least_vector_peak_after_fallbacks(spec: DeviceSpec) -> None:
    # DeviceSpec only compares dtypes both tables list; a dtype missing from one falls back to that
    # table's float32 figure, which must still leave the matrix roof on or above the vector roof.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PeakFallbackWarning)
        for dtype in ("float32", "tf32", "float16", "bfloat16", "int8", "float8", "float64"):
            for allow_tf32 in (False, True):
                matrix = spec.peak_flops_per_s(dtype, "matrix", allow_tf32=allow_tf32)
                vector = spec.peak_flops_per_s(dtype, "vector", allow_tf32=allow_tf32)
                assert matrix >= vector, (dtype, allow_tf32)


@pytest.mark.parametrize("spec", ALL_DEVICES, ids=lambda spec: spec.name)
def test_float32_ridge_is_plausible(spec: DeviceSpec) -> None:
    for unit in ("matrix", "vector"):
        assert 1 <= spec.ridge_point(torch.float32, unit) <= 2000


@pytest.mark.parametrize("spec", ALL_DEVICES, ids=lambda spec: spec.name)
def test_every_figure_has_a_source(spec: DeviceSpec) -> None:
    needed = ["memory_bandwidth_bytes_per_s"]
    needed += [f"matrix_peak_flops_per_s.{dtype}" for dtype in spec.matrix_peak_flops_per_s]
    needed += [f"vector_peak_flops_per_s.{dtype}" for dtype in spec.vector_peak_flops_per_s]
    for optional in (
        "l2_cache_bytes",
        "memory_bytes",
        "launch_overhead_s",
        "price_usd",
        "price_per_hour_usd",
    ):
        if getattr(spec, optional) is not None:
            needed.append(optional)
    for level in spec.cache_levels:
        needed += [
            f"cache_levels.{level.name}.capacity_bytes",
            f"cache_levels.{level.name}.bandwidth_bytes_per_s",
        ]
    missing = [figure for figure in needed if not spec.sources.get(figure, "").strip()]
    assert not missing
    assert set(spec.sources) <= set(needed), "a source for a figure the spec does not carry"


@pytest.mark.parametrize("spec", ALL_DEVICES, ids=lambda spec: spec.name)
def test_lookup_by_every_name_and_alias(spec: DeviceSpec) -> None:
    for label in (spec.name, *spec.aliases):
        assert get_device(label) is spec
        assert get_device(label.upper()) is spec


def test_names_and_aliases_are_unique_across_the_table() -> None:
    labels = [_key(label) for spec in ALL_DEVICES for label in (spec.name, *spec.aliases)]
    assert len(labels) == len(set(labels))


def test_table_has_the_promised_devices() -> None:
    names = {spec.name for spec in ALL_DEVICES}
    assert {
        "gtx1080",
        "xeon-e5345",
        "p100-sxm2",
        "v100-sxm2",
        "t4",
        "a10",
        "a100-40gb",
        "a100-80gb",
        "l4",
        "l40s",
        "h100-sxm",
        "h100-pcie",
        "h200",
        "rtx3090",
        "rtx4090",
        "jetson-agx-orin-64gb",
        "jetson-orin-nano-8gb",
        "xeon-8480plus",
    } <= names
    assert ALL_DEVICES[0].name == "gtx1080"  # table order is kept


# --- the seed's figures -------------------------------------------------------------------------


def test_gtx1080_matches_the_seed() -> None:
    gtx = get_device("gtx1080")
    assert gtx.ridge_point(torch.float32) == 8.8e12 / 320e9 == 27.5
    assert gtx.ridge_point(torch.float32, "vector") == 27.5  # no tensor cores
    assert gtx.peak_flops_per_s(torch.float16) == 8.8e12 / 64  # GP104 runs fp16 at 1/64 rate


def test_xeon_e5345_matches_the_seed() -> None:
    assert get_device("xeon-e5345").ridge_point("fp32") == 75e9 / 10e9 == 7.5


def test_dense_not_sparse_tensor_core_figures() -> None:
    # The H100 SXM datasheet quotes 1979 TFLOP/s FP16 "with sparsity"; dense is half.
    assert get_device("h100-sxm").peak_flops_per_s(torch.float16) == 1979e12 / 2
    assert get_device("a100-80gb").peak_flops_per_s(torch.bfloat16) == 312e12


# --- lookup -------------------------------------------------------------------------------------


def test_lookup_ignores_case_dashes_underscores_and_spaces() -> None:
    h100 = get_device("h100-sxm")
    assert get_device("H100") is h100
    assert get_device("H100 SXM") is h100
    assert get_device("h100_sxm5") is h100
    assert get_device("Tesla-T4") is get_device("t4")
    assert get_device("GTX 1080") is get_device("gtx1080")
    assert get_device("A100") is get_device("a100-40gb")


def test_unknown_name_lists_closest_names() -> None:
    with pytest.raises(UnknownDeviceError) as caught:
        get_device("h10")
    message = str(caught.value)
    assert "'h10'" in message
    assert "h100-sxm" in message
    assert isinstance(caught.value, KeyError)  # catchable as the builtin too


def test_get_device_returns_a_spec_as_is_and_searches_extra() -> None:
    toy = _spec(aliases=("my-board",))
    assert get_device(toy) is toy
    assert get_device("MY BOARD", extra=[toy]) is toy
    with pytest.raises(UnknownDeviceError):
        get_device("my-board")  # no global registry: not found without extra


def test_device_table_adds_and_overrides() -> None:
    toy = _spec()
    own_t4 = _spec(name="t4")
    table = device_table(extra=[toy, own_t4])
    assert table["toy"] is toy
    assert table["t4"] is own_t4
    assert table["gtx1080"] is get_device("gtx1080")
    with pytest.raises(InvalidDeviceSpecError):
        device_table(extra=[toy, _spec(full_name="another toy")])
    assert list_devices(extra=[toy])[-1] is toy


# --- DeviceSpec validation ------------------------------------------------------------------------


@pytest.mark.parametrize("bandwidth", [0, -1.0, math.inf, math.nan], ids=["zero", "negative", "inf", "nan"])
def test_bad_bandwidth_is_refused_naming_the_value(bandwidth: float) -> None:
    with pytest.raises(InvalidDeviceSpecError) as caught:
        _spec(memory_bandwidth_bytes_per_s=bandwidth)
    assert "memory_bandwidth_bytes_per_s" in str(caught.value)
    assert repr(bandwidth) in str(caught.value)
    assert "toy" in str(caught.value)


@pytest.mark.parametrize("peak", [0.0, -5e12], ids=["zero", "negative"])
def test_bad_peak_is_refused_naming_the_value(peak: float) -> None:
    with pytest.raises(InvalidDeviceSpecError) as caught:
        _spec(matrix_peak_flops_per_s={"float32": 10e12, "float16": peak})
    assert "float16" in str(caught.value)
    assert repr(peak) in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"vector_peak_flops_per_s": {"float16": 1e12}}, "float32"),
        ({"vector_peak_flops_per_s": {"float32": 20e12}}, "below"),
        ({"vector_peak_flops_per_s": {"float32": 1e12, "tf32": 2e12}}, "tf32"),
        ({"matrix_peak_flops_per_s": {"float32": 1e13, "fp16": 1e13}}, "fp16"),
        ({"name": ""}, "name"),
        ({"kind": "tpu"}, "tpu"),
        ({"l2_cache_bytes": -1}, "l2_cache_bytes"),
        ({"price_usd": 0}, "price_usd"),
    ],
    ids=[
        "no-float32",
        "matrix-below-vector",
        "vector-tf32",
        "unknown-key",
        "empty-name",
        "kind",
        "l2",
        "price",
    ],
)
def test_inconsistent_spec_is_refused(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidDeviceSpecError, match=re.escape(fragment)):
        _spec(**overrides)


def test_spec_is_frozen_hashable_and_read_only() -> None:
    toy = _spec()
    assert hash(toy) == hash(_spec())
    assert toy == _spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        toy.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        toy.matrix_peak_flops_per_s["float32"] = 1.0  # type: ignore[index]


# --- peaks per dtype ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "key"),
    [
        (torch.float32, "float32"),
        ("float", "float32"),
        ("fp32", "float32"),
        (torch.float16, "float16"),
        ("half", "float16"),
        ("FP16", "float16"),
        ("torch.float16", "float16"),
        (torch.bfloat16, "bfloat16"),
        ("bf16", "bfloat16"),
        (torch.int8, "int8"),
        (torch.float8_e4m3fn, "float8"),
        ("float8_e5m2", "float8"),
        ("tf32", "tf32"),
    ],
)
def test_dtype_names(dtype: torch.dtype | str, key: str) -> None:
    assert normalize_dtype(dtype) == key


@pytest.mark.parametrize("dtype", ["float13", "complex64", torch.complex64, 3])
def test_unknown_dtype_is_refused_naming_it(dtype: object) -> None:
    with pytest.raises(InvalidArgumentError, match=re.escape(repr(dtype))):
        get_device("t4").peak_flops_per_s(dtype)  # type: ignore[arg-type]


def test_peaks_by_dtype_and_unit() -> None:
    h100 = get_device("h100-sxm")
    assert h100.peak_flops_per_s(torch.float8_e4m3fn) == 3958e12 / 2
    assert h100.peak_flops_per_s("fp16", "vector") == 133.8e12
    with pytest.raises(InvalidArgumentError, match="'scalar'"):
        h100.peak_flops_per_s(torch.float32, "scalar")


def test_tf32_only_for_float32_matrix_work_when_allowed() -> None:
    a100 = get_device("a100-40gb")
    assert a100.peak_flops_per_s(torch.float32) == 19.5e12
    assert a100.peak_flops_per_s(torch.float32, allow_tf32=True) == 156e12
    assert a100.peak_flops_per_s(torch.float32, "vector", allow_tf32=True) == 19.5e12
    assert a100.peak_flops_per_s(torch.float16, allow_tf32=True) == 312e12
    assert a100.ridge_point(torch.float32, allow_tf32=True) == 156e12 / 1555e9
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a device without TF32 just uses float32, silently
        assert get_device("gtx1080").peak_flops_per_s(torch.float32, allow_tf32=True) == 8.8e12


def test_missing_dtype_falls_back_to_float32_with_one_warning() -> None:
    gtx = get_device("gtx1080")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peak = gtx.peak_flops_per_s(torch.int8)
    assert peak == 8.8e12
    assert len(caught) == 1
    assert issubclass(caught[0].category, PeakFallbackWarning)
    message = str(caught[0].message)
    assert "gtx1080" in message
    assert "int8" in message


def test_missing_vector_dtype_warns_naming_unit() -> None:
    with pytest.warns(PeakFallbackWarning, match=r"t4 has no bfloat16 vector peak"):
        assert get_device("t4").peak_flops_per_s(torch.bfloat16, "vector") == 8.1e12


def test_present_dtype_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert get_device("t4").peak_flops_per_s(torch.int8) == 130e12


# --- user device files ----------------------------------------------------------------------------


def test_load_devices_from_json(tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(
        json.dumps(
            {
                "devices": [
                    {
                        "name": "lab-gpu",
                        "kind": "gpu",
                        "memory_bandwidth_bytes_per_s": 500e9,
                        "matrix_peak_flops_per_s": {"float32": 20e12, "float16": 80e12},
                        "vector_peak_flops_per_s": {"float32": 20e12},
                        "aliases": ["the-lab-one"],
                        "sources": {"memory_bandwidth_bytes_per_s": "our measurement"},
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    (lab,) = load_devices(path)
    assert lab.name == "lab-gpu"
    assert lab.full_name == "lab-gpu"
    assert lab.ridge_point(torch.float16) == 80e12 / 500e9
    assert get_device("The Lab One", extra=[lab]) is lab


def test_load_devices_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text(
        """
[[devices]]
name = "edge-box"
full_name = "Edge box CPU"
kind = "cpu"
memory_bandwidth_bytes_per_s = 25.6e9
price_usd = 300.0

[devices.matrix_peak_flops_per_s]
float32 = 256e9

[devices.vector_peak_flops_per_s]
float32 = 128e9
""",
        encoding="utf-8",
    )
    (edge,) = load_devices(path)
    assert edge.kind == "cpu"
    assert edge.price_usd == 300.0
    assert edge.ridge_point("float32", "vector") == 128e9 / 25.6e9


def test_to_dict_round_trips_through_a_file(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"devices": [spec.to_dict() for spec in ALL_DEVICES]}), encoding="utf-8")
    assert load_devices(path) == ALL_DEVICES


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        (
            {"name": "x", "memory_bandwidth_bytes_per_s": 1e9, "matrix_peak_flops_per_s": {"float32": 1e9}},
            "lacks",
        ),
        (
            {
                "name": "x",
                "memory_bandwidth": 1e9,
                "memory_bandwidth_bytes_per_s": 1e9,
                "matrix_peak_flops_per_s": {"float32": 1e9},
                "vector_peak_flops_per_s": {"float32": 1e9},
            },
            "memory_bandwidth'",
        ),
        (
            {
                "name": "x",
                "memory_bandwidth_bytes_per_s": 0,
                "matrix_peak_flops_per_s": {"float32": 1e9},
                "vector_peak_flops_per_s": {"float32": 1e9},
            },
            "got 0",
        ),
    ],
    ids=["missing-key", "unknown-key", "zero-bandwidth"],
)
def test_bad_device_file_is_refused(tmp_path: Path, entry: dict[str, object], fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([entry]), encoding="utf-8")
    with pytest.raises(InvalidDeviceSpecError, match=re.escape(fragment)):
        load_devices(path)


# --- the memory hierarchy of every entry (issue 10) ----------------------------------------------


@pytest.mark.parametrize("spec", ALL_DEVICES, ids=lambda spec: spec.name)
def test_every_entry_has_its_hierarchy_and_launch_floor(spec: DeviceSpec) -> None:
    assert spec.cache_levels, "a cache level: the L2 of a GPU, the last-level cache of a CPU"
    for level in spec.cache_levels:
        assert level.capacity_bytes > 0 and level.bandwidth_bytes_per_s > 0
        assert spec.sources[f"cache_levels.{level.name}.capacity_bytes"].strip()
        assert spec.sources[f"cache_levels.{level.name}.bandwidth_bytes_per_s"].strip()
        # A cache is smaller than the memory it caches, and faster to read.
        assert spec.memory_bytes is not None and level.capacity_bytes < spec.memory_bytes
        assert level.bandwidth_bytes_per_s > spec.memory_bandwidth_bytes_per_s
    assert spec.memory_bytes is not None and spec.memory_bytes > 0 and spec.sources["memory_bytes"].strip()
    assert spec.launch_overhead_s is not None and spec.sources["launch_overhead_s"].strip()
    assert 1e-7 <= spec.launch_overhead_s <= 2e-5, "a launch floor of a few microseconds"


@pytest.mark.parametrize("spec", ALL_DEVICES, ids=lambda spec: spec.name)
def test_l2_cache_bytes_is_the_l2_level(spec: DeviceSpec) -> None:
    levels = {level.name: level for level in spec.cache_levels}
    if spec.kind == "gpu":
        assert [level.name for level in spec.cache_levels] == ["L2"]
    if "L2" in levels:
        assert spec.l2_cache_bytes == levels["L2"].capacity_bytes
    else:  # a CPU whose private L2s together exceed its L3: the LLC is its level
        assert spec.kind == "cpu" and spec.l2_cache_bytes is not None
        assert "LLC" in levels and "L2" in spec.sources["cache_levels.LLC.capacity_bytes"]


def _entry(**overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "name": "toy",
        "memory_bandwidth_bytes_per_s": 100e9,
        "matrix_peak_flops_per_s": {"float32": 1e12},
        "vector_peak_flops_per_s": {"float32": 1e12},
        "memory_bytes": 2**30,
        "cache_levels": [{"name": "L2", "capacity_bytes": 2**22, "bandwidth_bytes_per_s": 1e12}],
    }
    entry.update(overrides)
    return entry


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        (
            _entry(cache_levels=[{"name": "L2", "capacity_bytes": 2**31, "bandwidth_bytes_per_s": 1e12}]),
            "cache_levels['L2'].capacity_bytes = 2147483648 is not below memory_bytes = 1073741824",
        ),
        (
            _entry(cache_levels=[{"name": "L2", "capacity_bytes": 2**22, "bandwidth_bytes_per_s": -1e12}]),
            "cache_levels['L2'].bandwidth_bytes_per_s must be a positive finite number, got -1000000000000.0",
        ),
        (
            _entry(cache_levels=[{"name": "L2", "bandwidth_bytes_per_s": 1e12}]),
            "cache_levels['L2'] lacks capacity_bytes",
        ),
        (
            _entry(memory_bandwidth_bytes_per_s=-5e9),
            "memory_bandwidth_bytes_per_s must be a positive finite number",
        ),
        (_entry(memory_bytes=-1), "memory_bytes must be a positive int or None, got -1"),
        (
            _entry(launch_overhead_s=-2e-6),
            "launch_overhead_s must be a positive finite number or None, got -2e-06",
        ),
    ],
    ids=[
        "cache-above-memory",
        "negative-cache-bandwidth",
        "level-without-capacity",
        "negative-dram-bandwidth",
        "negative-memory",
        "negative-launch-floor",
    ],
)
def test_bad_hierarchy_in_a_device_file_names_the_field(
    tmp_path: Path, entry: dict[str, object], fragment: str
) -> None:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps([entry]), encoding="utf-8")
    with pytest.raises(InvalidDeviceSpecError, match=re.escape(fragment)):
        load_devices(path)


def test_a_device_file_hierarchy_is_read_back(tmp_path: Path) -> None:
    path = tmp_path / "devices.json"
    path.write_text(json.dumps([_entry(launch_overhead_s=3e-6)]), encoding="utf-8")
    (spec,) = load_devices(path)
    assert spec.cache_levels[0].name == "L2" and spec.cache_levels[0].capacity_bytes == 2**22
    assert spec.memory_bytes == 2**30 and spec.launch_overhead_s == 3e-6


def test_device_file_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        load_devices(tmp_path / "nowhere.json")
    other = tmp_path / "devices.yaml"
    other.write_text("devices: []", encoding="utf-8")
    with pytest.raises(InvalidArgumentError, match=r"\.yaml"):
        load_devices(other)
    broken = tmp_path / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(InvalidDeviceSpecError, match="not valid JSON"):
        load_devices(broken)


# --- torch.cuda.get_device_name() ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("torch_name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "h100-sxm"),
        ("NVIDIA H100 PCIe", "h100-pcie"),
        ("NVIDIA H100 NVL", None),
        ("NVIDIA H200", "h200"),
        ("NVIDIA A100-SXM4-40GB", "a100-40gb"),
        ("NVIDIA A100-SXM4-80GB", "a100-80gb"),
        ("NVIDIA A100 80GB PCIe", None),
        ("Tesla V100-SXM2-16GB", "v100-sxm2"),
        ("Tesla P100-SXM2-16GB", "p100-sxm2"),
        ("Tesla T4", "t4"),
        ("NVIDIA A10", "a10"),
        ("NVIDIA A10G", None),
        ("NVIDIA L4", "l4"),
        ("NVIDIA L40S", "l40s"),
        ("NVIDIA L40", None),
        ("NVIDIA GeForce RTX 4090", "rtx4090"),
        ("NVIDIA GeForce RTX 3090", "rtx3090"),
        ("NVIDIA GeForce RTX 3090 Ti", None),
        ("NVIDIA GeForce GTX 1080", "gtx1080"),
        ("NVIDIA GeForce GTX 1080 Ti", None),
        ("NVIDIA RTX A4000", None),
    ],
)
def test_match_device_name(torch_name: str, expected: str | None) -> None:
    found = match_device_name(torch_name)
    assert (found.name if found is not None else None) == expected


@pytest.mark.parametrize("spec", ALL_DEVICES, ids=lambda spec: spec.name)
def test_a_report_writes_its_targets_through_to_dict(spec: DeviceSpec) -> None:
    from layerprof.report.export import _device_dict

    written = _device_dict(spec)
    full = spec.to_dict()
    assert set(written) == {
        "name",
        "kind",
        "memory_bandwidth_bytes_per_s",
        "matrix_peak_flops_per_s",
        "vector_peak_flops_per_s",
        "measured",
    }
    assert written == {key: full[key] for key in written}
    assert DeviceSpec.from_dict(full) == spec
