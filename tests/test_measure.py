"""measure_device: a quick real measurement on the CPU, the on-disk cache, and the CUDA path.

Real measurements against plain torch calls timed in the same test, threads, the cache key and
steadiness are in test_measure_ceilings.py; the level finder in test_measure_levels.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import torch_flags
from layerprof.errors import InvalidArgumentError
from layerprof.hardware import ceilings, measure
from layerprof.hardware.ceilings import Ceilings
from layerprof.hardware.files import load_devices
from layerprof.hardware.measure import cache_path, default_cache_dir, measure_device
from layerprof.hardware.microbench import tf32_matmul
from layerprof.hardware.specs import DeviceSpec

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _fail(*args: object, **kwargs: object) -> Ceilings:
    raise AssertionError("measured again instead of reading the cache")


def _fake_ceilings(*args: object, **kwargs: object) -> Ceilings:
    found = Ceilings(
        matrix={"float32": 100e9, "float16": 10e9},
        vector={"float32": 20e9, "float16": 40e9},  # fp16 GEMM slower than the FMA kernel
        bandwidth_bytes_per_s=10e9,
        launch_overhead_s=5e-6,
    )
    for unit, peaks in (("matrix", found.matrix), ("vector", found.vector)):
        for key in peaks:
            found.notes[f"{unit}_peak_flops_per_s.{key}"] = "fake"
    found.notes["memory_bandwidth_bytes_per_s"] = "fake"
    found.notes["launch_overhead_s"] = "fake"
    return found


def _assert_valid_measured(spec: DeviceSpec) -> None:
    assert spec.measured
    assert spec.memory_bytes is not None and spec.memory_bytes > 0
    capacities = [level.capacity_bytes for level in spec.cache_levels]
    assert capacities == sorted(set(capacities))  # strictly increasing
    for level in spec.cache_levels:
        assert level.bandwidth_bytes_per_s >= spec.memory_bandwidth_bytes_per_s
        assert level.capacity_bytes < spec.memory_bytes
        for key in ("capacity_bytes", "bandwidth_bytes_per_s"):
            assert "torch thread" in spec.sources[f"cache_levels.{level.name}.{key}"]
    assert spec.aliases == ()
    assert spec.memory_bandwidth_bytes_per_s > 0
    assert spec.matrix_peak_flops_per_s["float32"] > 0
    assert spec.vector_peak_flops_per_s["float32"] > 0
    for key, vector_peak in spec.vector_peak_flops_per_s.items():
        assert spec.matrix_peak_flops_per_s.get(key, vector_peak) >= vector_peak
    figures = ["memory_bandwidth_bytes_per_s"]
    figures += [f"matrix_peak_flops_per_s.{key}" for key in spec.matrix_peak_flops_per_s]
    figures += [f"vector_peak_flops_per_s.{key}" for key in spec.vector_peak_flops_per_s]
    for figure in figures:
        assert "measured by layerprof.measure_device on" in spec.sources[figure]
        assert torch.__version__ in spec.sources[figure]


def test_quick_cpu_measurement(tmp_path: Path) -> None:
    spec = measure_device("cpu", dtypes=(torch.float32,), quick=True, cache_dir=tmp_path)
    assert spec.name == "local-cpu"
    assert spec.kind == "cpu"
    assert spec.launch_overhead_s is not None and spec.launch_overhead_s > 0
    _assert_valid_measured(spec)
    assert spec.ridge_point(torch.float32) > 0


def test_unrunnable_dtypes_are_skipped(tmp_path: Path) -> None:
    # int8 GEMM is only measured on CUDA; float32 is always measured.
    spec = measure_device("cpu", dtypes=(torch.int8,), quick=True, cache=False)
    assert "int8" not in spec.matrix_peak_flops_per_s
    assert "float32" in spec.matrix_peak_flops_per_s


def test_cache_is_written_and_read_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "measure_ceilings", _fake_ceilings)  # steady by construction: cached
    first = measure_device("cpu", dtypes=(torch.float32,), quick=True, cache_dir=tmp_path)
    written = cache_path("cpu", dtypes=(torch.float32,), quick=True, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == [written]
    assert torch.__version__.split("+")[0].replace(".", "-") in written.name
    assert load_devices(written) == (first,)  # a cache file is a device file

    monkeypatch.setattr(measure, "measure_ceilings", _fail)
    assert measure_device("cpu", dtypes=(torch.float32,), quick=True, cache_dir=tmp_path) == first
    with pytest.raises(AssertionError, match="measured again"):
        measure_device("cpu", dtypes=(torch.float32,), quick=True, cache_dir=tmp_path, cache=False)
    with pytest.raises(AssertionError, match="measured again"):  # other settings, other cache entry
        measure_device("cpu", dtypes=(torch.float32, torch.bfloat16), quick=True, cache_dir=tmp_path)


def test_cache_dir_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAYERPROF_CACHE_DIR", str(tmp_path / "env-cache"))
    assert default_cache_dir() == tmp_path / "env-cache"
    monkeypatch.setattr(measure, "measure_ceilings", _fake_ceilings)
    measure_device("cpu", quick=True)
    assert len(list((tmp_path / "env-cache").glob("local-cpu__torch-*.json"))) == 1
    monkeypatch.delenv("LAYERPROF_CACHE_DIR")
    assert default_cache_dir() == Path.home() / ".cache" / "layerprof"


def test_unreadable_cache_is_measured_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "measure_ceilings", _fake_ceilings)
    path = cache_path("cpu", quick=True, cache_dir=tmp_path)
    path.write_text("{ not json", encoding="utf-8")
    spec = measure_device("cpu", quick=True, cache_dir=tmp_path)
    assert spec.matrix_peak_flops_per_s["float32"] == 100e9
    assert load_devices(path) == (spec,)  # rewritten


def test_vector_peak_is_clamped_to_a_slower_gemm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "measure_ceilings", _fake_ceilings)
    spec = measure_device("cpu", cache=False)
    assert spec.vector_peak_flops_per_s["float16"] == spec.matrix_peak_flops_per_s["float16"] == 10e9
    assert "clamped" in spec.sources["vector_peak_flops_per_s.float16"]
    assert spec.vector_peak_flops_per_s["float32"] == 20e9  # untouched
    assert spec.launch_overhead_s == 5e-6


@pytest.mark.parametrize("device", ["meta", "not-a-device"])
def test_unsupported_device_is_refused(device: str) -> None:
    with pytest.raises(InvalidArgumentError, match=repr(device)):
        measure_device(device, cache=False)


def test_tf32_is_not_a_tensor_dtype() -> None:
    with pytest.raises(InvalidArgumentError, match="tf32"):
        measure_device("cpu", dtypes=("tf32",), cache=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_without_cuda_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="CUDA"):
        measure_device("cuda", cache=False)


@needs_cuda
@pytest.mark.cuda
def test_quick_cuda_measurement(tmp_path: Path) -> None:
    saved = torch_flags()
    spec = measure_device("cuda", quick=True, cache_dir=tmp_path)
    assert torch_flags() == saved  # TF32, cuDNN benchmark and every other switch restored
    assert spec.kind == "gpu"
    assert spec.name.endswith("(measured)") or spec.name.startswith("local-")
    _assert_valid_measured(spec)
    if torch.cuda.get_device_capability()[0] >= 8:
        assert spec.matrix_peak_flops_per_s["tf32"] >= spec.matrix_peak_flops_per_s["float32"]
    assert spec.l2_cache_bytes is None or spec.l2_cache_bytes > 0


@needs_cuda
@pytest.mark.cuda
def test_cuda_default_device_is_the_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(measure, "measure_ceilings", _fake_ceilings)
    spec = measure_device(cache_dir=tmp_path)
    assert spec.kind == "gpu"
    assert spec.full_name == torch.cuda.get_device_name()


# --- the TF32 switch ----------------------------------------------------------------------------


@pytest.mark.parametrize("before", [False, True])
@pytest.mark.parametrize("inside", [False, True])
def test_tf32_switch_is_restored_even_when_the_body_raises(before: bool, inside: bool) -> None:
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = before
        with tf32_matmul(inside):
            assert torch.backends.cuda.matmul.allow_tf32 is inside
        assert torch.backends.cuda.matmul.allow_tf32 is before
        with pytest.raises(RuntimeError, match="kernel failed"), tf32_matmul(inside):
            assert torch.backends.cuda.matmul.allow_tf32 is inside
            raise RuntimeError("kernel failed")
        assert torch.backends.cuda.matmul.allow_tf32 is before
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("tf32", [False, True])
def test_both_float32_gemms_switch_tf32_and_put_it_back(tf32: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # The float32 (TF32 off) and tf32 (TF32 on) GEMMs on CUDA: a GEMM that fails leaves the switch as it was.
    seen: list[bool] = []

    def failing_gemm(*args: object) -> tuple[float, int]:
        seen.append(torch.backends.cuda.matmul.allow_tf32)
        raise RuntimeError("out of memory")

    monkeypatch.setattr(ceilings, "gemm_flops_per_s", failing_gemm)
    saved = torch.backends.cuda.matmul.allow_tf32
    sizes = ceilings.sizes_for(torch.device("cpu"), quick=True)
    with pytest.raises(RuntimeError, match="out of memory"):
        ceilings._float32_gemm(torch.device("cuda"), sizes, tf32=tf32)
    assert seen == [tf32]
    assert torch.backends.cuda.matmul.allow_tf32 is saved
